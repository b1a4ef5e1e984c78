//! `GET /v1/outbox?state=pending|dead&after=<position>&limit=<n>`: undelivered webhook entries,
//! oldest first; `POST /v1/outbox/{position}/retry`: queue a dead letter again (admin only).

use crate::api::outbox::{OutboxPage, Requeued};
use crate::auth;
use crate::error::ApiError;
use crate::outbox::entries::{self, Filter, RetryError, LIST_LIMIT_MAX};
use crate::routes::page;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

/// Default page size: a screenful for an operator.
const LIMIT_DEFAULT: i64 = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Pending,
    Dead,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<State>,
    after: Option<i64>,
    limit: Option<i64>,
}

pub async fn list_outbox(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auth::require_admin(&req, &state.tokens())?;
    // Read after the token is checked, so a stranger learns nothing from the answer.
    let query = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?
        .into_inner();
    let filter = match query.state {
        None => Filter::Undelivered,
        Some(State::Pending) => Filter::Pending,
        Some(State::Dead) => Filter::Dead,
    };
    let (after, limit) = page::checked(query.after, query.limit, LIMIT_DEFAULT, LIST_LIMIT_MAX)?;
    let client = state.pool.get().await?;
    let found = entries::list(&client, filter, after, limit).await?;
    let next = found.last().map_or(after, |e| e.position);
    Ok(HttpResponse::Ok().json(OutboxPage {
        entries: found,
        next,
    }))
}

pub async fn retry_outbox_entry(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::require_admin(&req, &state.tokens())?;
    let raw = req.match_info().get("position").unwrap_or_default();
    let position =
        raw.parse::<i64>().ok().filter(|p| *p >= 1).ok_or_else(|| {
            ApiError::bad_request("invalid_position", "position must be 1 or more")
        })?;
    let client = state.pool.get().await?;
    match entries::retry(&client, position).await {
        Ok(()) => {
            tracing::info!(position, actor = %caller.actor(), "dead letter queued again");
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
