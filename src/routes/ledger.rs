//! `GET /v1/ledger?after=<position>&limit=<n>`: the raw ledger in position order (admin only).
//!
//! A reader that passes back `next` as `after` sees every event exactly once and in order, even
//! while appends commit (positions are gapless and commit-ordered).

use crate::auth;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

/// Default page size, and the largest one: a page is built in memory.
const LIMIT_DEFAULT: i64 = 100;
const LIMIT_MAX: i64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    after: Option<i64>,
    limit: Option<i64>,
}

pub async fn read_ledger(
    req: HttpRequest,
    state: web::Data<AppState>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    auth::require_admin(&req, &state)?;
    let after = page.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request(
            "invalid_after",
            "after must be a position, 0 or more",
        ));
    }
    let limit = page.limit.unwrap_or(LIMIT_DEFAULT);
    if !(1..=LIMIT_MAX).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be 1 to {LIMIT_MAX}"),
        ));
    }
    let client = state.pool.get().await?;
    let events = store::read_all_after(&client, after, limit).await?;
    let next = events.last().map_or(after, |e| e.position);
    let events: Vec<_> = events
        .into_iter()
        .map(|e| {
            json!({
                "position": e.position,
                "streamId": e.stream_id,
                "version": e.version,
                "type": e.event_type,
                "eventVersion": e.event_version,
                "data": e.payload,
                "metadata": e.metadata,
                "recordedAt": e.recorded_at,
                "prevHash": hex::encode(&e.prev_hash),
                "hash": hex::encode(&e.hash),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"events": events, "next": next})))
}
