//! The refusals many routes share, documented once each: who may call (by the role's extractor
//! of `crate::http::auth`), what a JSON body may be, and a database that cannot answer. A route
//! lists the sets it answers with among its own responses (`responses(..., AdminOnly)`).

use crate::http::body::JSON_BODY_BYTES_MAX;
use std::collections::BTreeMap;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::IntoResponses;

/// A response of `description` with the API's error body.
pub fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorResponse")))
                    .build(),
            )
            .build(),
    )
}

fn responses(entries: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    entries
        .iter()
        .map(|(status, description)| (status.to_string(), error_response(description)))
        .collect()
}

const UNAUTHORIZED: &str = "`unauthorized`: no token, or an unknown one";

/// An admin route's refusals of its caller.
pub struct AdminOnly;

impl IntoResponses for AdminOnly {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[
            (401, UNAUTHORIZED),
            (403, "`forbidden`: not an admin token"),
        ])
    }
}

/// A route of the admin and the reporters: its refusals of its caller.
pub struct StaffOnly;

impl IntoResponses for StaffOnly {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[(401, UNAUTHORIZED), (403, "`forbidden`")])
    }
}

/// A route of one order, for its credential's holder and the admin: its refusals of its caller.
pub struct OrderHolderOnly;

impl IntoResponses for OrderHolderOnly {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[
            (
                401,
                "`unauthorized`: no token, an unknown one, another order's authCode or a rotated \
                 one",
            ),
            (403, "`forbidden`: a reporter token"),
        ])
    }
}

/// A control-plane route's refusals of its JSON body's size and type.
pub struct JsonBodyRefused;

impl IntoResponses for JsonBodyRefused {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let too_large = format!(
            "`payload_too_large` (over {} KiB)",
            JSON_BODY_BYTES_MAX / 1024
        );
        responses(&[
            (413, &too_large),
            (415, "`unsupported_media_type`, `unsupported_encoding`"),
        ])
    }
}

/// The database cannot answer (`database_unavailable`), or takes no writes
/// (`database_read_only`): retry.
pub struct DatabaseRefused;

impl IntoResponses for DatabaseRefused {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[(503, "`database_unavailable`, `database_read_only`")])
    }
}
