//! The `after` and `limit` of a paged read, checked the same way on every paged route.

use crate::http::error::ApiError;

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

/// One page from the `limit + 1` rows a paged read fetched: the first `limit` of them, and the
/// `next` cursor — the position of the page's last row when more rows follow, `None` when this
/// page reaches the end (a client's "while next" loop then ends; one that follows new rows asks
/// again later with the last position it saw).
pub fn cut<T>(mut rows: Vec<T>, limit: i64, position: impl Fn(&T) -> i64) -> (Vec<T>, Option<i64>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(position);
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_says_next_only_when_more_rows_follow() {
        assert_eq!(cut(vec![1, 2, 3], 2, |n| *n), (vec![1, 2], Some(2)));
        assert_eq!(cut(vec![1, 2], 2, |n| *n), (vec![1, 2], None));
        assert_eq!(cut(Vec::<i64>::new(), 2, |n| *n), (vec![], None));
    }
}
