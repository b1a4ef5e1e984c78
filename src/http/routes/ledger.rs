//! `GET /v1/ledger?after=<position>&limit=<n>`: the raw ledger in position order (admin only).
//!
//! A reader that passes back `next` as `after` sees every event exactly once and in order, even
//! while appends commit (positions are gapless and commit-ordered). `next` is `null` on the page
//! that reaches the ledger's end.

use crate::http::api::ledger::{LedgerEvent, LedgerPage};
use crate::http::api::refusals::{AdminOnly, DatabaseRefused};
use crate::http::auth::Admin;
use crate::http::error::ApiError;
use crate::http::page;
use crate::http::request::parse_query;
use crate::http::state::AppState;
use crate::store;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

/// Default page size, and the largest one: a page is built in memory.
const LIMIT_DEFAULT: i64 = 100;
pub const LIMIT_MAX: i64 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Events after this position (default 0: from the start); pass the previous page's `next`.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Events per page, 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// A page of the raw ledger, in position order (admin).
#[utoipa::path(get, path = "/v1/ledger", tag = "operations", params(PageQuery),
    security(("admin" = [])),
    responses(
        (status = 200, description = "A page of events", body = LedgerPage),
        (status = 400, description = "`invalid_after`, `invalid_limit`, `invalid_query`", body = crate::http::api::error::ErrorResponse),
        AdminOnly, DatabaseRefused,
    ))]
pub async fn read_ledger(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query: PageQuery = parse_query(&req)?;
    let (after, limit) = page::checked(query.after, query.limit, LIMIT_DEFAULT, LIMIT_MAX)?;
    let client = state.pool.get().await?;
    // One row more than the page: whether it exists says whether the ledger goes on.
    let events = store::read_all_after(&client, after, limit + 1).await?;
    let (events, next) = page::cut(events, limit, |e| e.position);
    let events = events.into_iter().map(LedgerEvent::from).collect();
    Ok(HttpResponse::Ok().json(LedgerPage { events, next }))
}
