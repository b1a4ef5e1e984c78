//! `GET /v1/ledger?after=<position>&limit=<n>`: the raw ledger in position order (admin only).
//!
//! A reader that passes back `next` as `after` sees every event exactly once and in order, even
//! while appends commit (positions are gapless and commit-ordered).

use crate::api::ledger::{LedgerEvent, LedgerPage};
use crate::auth;
use crate::error::ApiError;
use crate::routes::page;
use crate::state::AppState;
use crate::store;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

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
    auth::require_admin(&req, &state.tokens())?;
    let (after, limit) = page::checked(page.after, page.limit, LIMIT_DEFAULT, LIMIT_MAX)?;
    let client = state.pool.get().await?;
    let events = store::read_all_after(&client, after, limit).await?;
    let next = events.last().map_or(after, |e| e.position);
    let events = events.into_iter().map(LedgerEvent::from).collect();
    Ok(HttpResponse::Ok().json(LedgerPage { events, next }))
}
