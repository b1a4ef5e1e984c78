//! `GET /v1/outbox?state=pending|dead&after=<position>&limit=<n>`: undelivered webhook entries,
//! oldest first; `POST /v1/outbox/{position}/retry`: queue a dead letter again (admin only).

use crate::http::api::outbox::{OutboxPage, Requeued};
use crate::http::api::refusals::{AdminOnly, DatabaseRefused};
use crate::http::auth::Admin;
use crate::http::error::ApiError;
use crate::http::page;
use crate::http::request::parse_query;
use crate::http::state::AppState;
use crate::outbox::entries::{self, Filter, RetryError, LIST_LIMIT_MAX};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

/// Default page size: a screenful for an operator.
const LIMIT_DEFAULT: i64 = 100;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = OutboxState)]
pub(crate) enum State {
    Pending,
    Dead,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only pending entries, or only dead letters (default: both).
    state: Option<State>,
    /// Entries after this position (default 0); pass the previous page's `next`.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Entries per page, 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// Undelivered webhook entries, oldest first (admin).
#[utoipa::path(get, path = "/v1/outbox", tag = "operations", params(ListQuery),
    security(("admin" = [])),
    responses(
        (status = 200, description = "A page of entries", body = OutboxPage),
        (status = 400, description = "`invalid_after`, `invalid_limit`, `invalid_query`", body = crate::http::api::error::ErrorResponse),
        AdminOnly, DatabaseRefused,
    ))]
pub async fn list_outbox(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query: ListQuery = parse_query(&req)?;
    let filter = match query.state {
        None => Filter::Undelivered,
        Some(State::Pending) => Filter::Pending,
        Some(State::Dead) => Filter::Dead,
    };
    let (after, limit) = page::checked(query.after, query.limit, LIMIT_DEFAULT, LIST_LIMIT_MAX)?;
    let client = state.pool.get().await?;
    // One entry more than the page: whether it exists says whether more follow.
    let found = entries::list(&client, filter, after, limit + 1).await?;
    let (found, next) = page::cut(found, limit, |e| e.position);
    Ok(HttpResponse::Ok().json(OutboxPage {
        entries: found,
        next,
    }))
}

/// Queues a dead letter again, with fresh attempts (admin).
#[utoipa::path(post, path = "/v1/outbox/{position}/retry", tag = "operations",
    params(("position" = i64, Path, minimum = 1, description = "The entry's ledger position")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Queued again", body = Requeued),
        (status = 400, description = "`invalid_position`", body = crate::http::api::error::ErrorResponse),
        (status = 404, description = "`outbox_entry_not_found`", body = crate::http::api::error::ErrorResponse),
        (status = 409, description = "`not_dead` (still being delivered), `already_delivered`", body = crate::http::api::error::ErrorResponse),
        AdminOnly, DatabaseRefused,
    ))]
pub async fn retry_outbox_entry(
    admin: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = req.match_info().get("position").unwrap_or_default();
    let position =
        raw.parse::<i64>().ok().filter(|p| *p >= 1).ok_or_else(|| {
            ApiError::bad_request("invalid_position", "position must be 1 or more")
        })?;
    let client = state.pool.get().await?;
    match entries::retry(&client, position).await {
        Ok(()) => {
            tracing::info!(position, actor = %admin.caller().actor(), "dead letter queued again");
            Ok(HttpResponse::Ok().json(Requeued {
                position,
                state: "pending".to_owned(),
            }))
        }
        Err(error @ RetryError::NotFound(_)) => Err(ApiError::not_found(
            "outbox_entry_not_found",
            error.to_string(),
        )),
        Err(error @ RetryError::Delivered(_)) => {
            Err(ApiError::conflict("already_delivered", error.to_string()))
        }
        Err(error @ RetryError::NotDead(_)) => {
            Err(ApiError::conflict("not_dead", error.to_string()))
        }
        Err(RetryError::Database(error)) => Err(error.into()),
    }
}
