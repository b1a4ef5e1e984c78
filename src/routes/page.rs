//! The `after` and `limit` of a paged read, checked the same way on every paged route.

use crate::error::ApiError;

/// `after` (default 0: from the start) and `limit` (default `limit_default`), or the error naming
/// the one out of range.
pub fn checked(
    after: Option<i64>,
    limit: Option<i64>,
    limit_default: i64,
    limit_max: i64,
) -> Result<(i64, i64), ApiError> {
    let after = after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request(
            "invalid_after",
            "after must be a position, 0 or more",
        ));
    }
    let limit = limit.unwrap_or(limit_default);
    if !(1..=limit_max).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {limit_max}"),
        ));
    }
    Ok((after, limit))
}
