//! Schemas that carry a parser's limit. utoipa's attributes take literal numbers only, so a limit
//! the document states in a schema is built here from the constant its parser checks; a test
//! (`tests/api/openapi.rs`) holds the limits the document's text states to the same constants.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

/// An integer (`int32` or `int64`) from `minimum` to `maximum`.
pub fn integer(format: KnownFormat, minimum: i64, maximum: i64) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(format)))
            .maximum(Some(maximum as f64))
            .minimum(Some(minimum as f64))
            .build(),
    ))
}

/// A page's `limit`: 1 to `maximum` rows.
pub fn page_limit(maximum: i64) -> RefOr<Schema> {
    integer(KnownFormat::Int64, 1, maximum)
}

/// A string of at most `chars_max` characters.
pub fn text(chars_max: usize) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(chars_max))
            .build(),
    ))
}
