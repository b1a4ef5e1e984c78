//! What operators reconcile with the marketplace (admin only):
//!
//! - `GET /v1/marketplace/refused`: callbacks refused after their token held and not resolved by
//!   a later success (a paid order not provisioned yet, say);
//! - `GET /v1/expiry-notices`: expiry notices held while a package's `expiresAt` was ahead, not
//!   settled since;
//! - `POST /v1/orders/{instanceId}/expire` `{"reason": "refund"}`: apply a held notice.

use crate::domain::orders::{Outcome, Refusal};
use crate::http::api::orders::{
    ExpireRequest, HeldNoticesPage, OrderExpiredByOperator, RefusedPage,
};
use crate::http::api::refusals::{AdminOnly, DatabaseRefused, JsonBodyRefused};
use crate::http::auth::Admin;
use crate::http::body::{self, Encodings, JSON_BODY_BYTES_MAX};
use crate::http::error::ApiError;
use crate::http::page;
use crate::http::request::{parse_instance_id, parse_query};
use crate::http::state::{AppState, RequestId};
use crate::ledger::orders::{self, LIST_LIMIT_MAX};
use crate::ledger::CommandError;
use crate::marketplace::refusals;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use projections::events::Event;
use serde::Deserialize;

/// Default page size: a screenful for an operator.
const LIMIT_DEFAULT: i64 = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RefusedQuery {
    /// Refusals per answer, 1 to 1000 (default 100), oldest first; `total` counts them all.
    limit: Option<i64>,
}

/// Callbacks refused after their token held and not resolved since, oldest first (admin).
///
/// Each is kept until a later call of the same action for the same package succeeds. A refusal
/// before the token held is never kept (a caller without the key writes nothing); it is counted
/// in `/metrics`.
#[utoipa::path(get, path = "/v1/marketplace/refused", tag = "operations", params(RefusedQuery),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The unresolved refusals", body = RefusedPage),
        (status = 400, description = "`invalid_limit`, `invalid_query`", body = crate::http::api::error::ErrorResponse),
        AdminOnly, DatabaseRefused,
    ))]
pub async fn list_refused(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query: RefusedQuery = parse_query(&req)?;
    let (_, limit) = page::checked(None, query.limit, LIMIT_DEFAULT, LIST_LIMIT_MAX)?;
    let client = state.pool.get().await?;
    let (refused, total) = refusals::unresolved(&client, limit).await?;
    Ok(HttpResponse::Ok().json(RefusedPage { refused, total }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct NoticesQuery {
    /// Notices after this ledger position (default 0); pass the previous page's `next`.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Notices per page, 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// Held expiry notices not settled since, oldest first (admin).
///
/// The marketplace sends `expiredInstance` after a refund as well as at the end of a term. While
/// a package's `expiresAt` is ahead such a notice does not expire it (a stale notice never undoes
/// a paid renewal); it is held, and listed here until the package expires or is released.
#[utoipa::path(get, path = "/v1/expiry-notices", tag = "operations", params(NoticesQuery),
    security(("admin" = [])),
    responses(
        (status = 200, description = "A page of held notices", body = HeldNoticesPage),
        (status = 400, description = "`invalid_after`, `invalid_limit`, `invalid_query`", body = crate::http::api::error::ErrorResponse),
        AdminOnly, DatabaseRefused,
    ))]
pub async fn list_held_notices(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query: NoticesQuery = parse_query(&req)?;
    let (after, limit) = page::checked(query.after, query.limit, LIMIT_DEFAULT, LIST_LIMIT_MAX)?;
    let client = state.pool.get().await?;
    let found = orders::held_notices(&client, after, limit + 1).await?;
    let (notices, next) = page::cut(found, limit, |n| n.position);
    Ok(HttpResponse::Ok().json(HeldNoticesPage { notices, next }))
}

/// Applies a package's held expiry notice (admin): the package expires now and its running
/// tasks stop (`order_expired`), in the ledger (`OrderExpired` version 2, `source: operator`).
///
/// Only a package with a notice held since it last expired can be expired this way. Again on an
/// expired package: `200`, nothing new.
#[utoipa::path(post, path = "/v1/orders/{instanceId}/expire", tag = "operations",
    params(("instanceId" = String, Path, description = "The package")),
    request_body = ExpireRequest,
    security(("admin" = [])),
    responses(
        (status = 200, description = "Expired (or already expired)", body = OrderExpiredByOperator),
        (status = 400, description = "`invalid_instance_id`, `invalid_json` (a reason other than `refund`)", body = crate::http::api::error::ErrorResponse),
        (status = 404, description = "`order_not_found`", body = crate::http::api::error::ErrorResponse),
        (status = 409, description = "`no_held_notice`: nothing to apply; `order_released`", body = crate::http::api::error::ErrorResponse),
        AdminOnly, JsonBodyRefused, DatabaseRefused,
    ))]
pub async fn expire_order(
    admin: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = admin.caller();
    let instance_id = parse_instance_id(&path)?;
    let body: ExpireRequest =
        body::read_json(&req, payload, JSON_BODY_BYTES_MAX, Encodings::Identity).await?;
    let metadata = RequestId::of(&req).metadata("operator", caller.actor());
    let outcome =
        orders::apply_held_expiry(&state.ledger, &instance_id, body.reason, &metadata).await;
    let expired_now = match outcome.map_err(apply_refused)? {
        Outcome::Recorded(Event::OrderExpired(_)) => {
            tracing::warn!(instance_id = %instance_id, actor = %caller.actor(), "held expiry notice applied by an operator");
            true
        }
        _ => false,
    };
    Ok(HttpResponse::Ok().json(OrderExpiredByOperator {
        instance_id: instance_id.as_str().to_owned(),
        status: "expired".to_owned(),
        reason: body.reason,
        expired_now,
    }))
}

/// What an operator's change to one order (an expiry, a credential rotation) answers when it is
/// refused or fails.
pub fn apply_refused(error: CommandError<Refusal>) -> ApiError {
    match error {
        CommandError::Refused(refusal) => {
            let (status, code) = match &refusal {
                Refusal::UnknownInstance(_) => (StatusCode::NOT_FOUND, "order_not_found"),
                Refusal::NoHeldNotice(_) => (StatusCode::CONFLICT, "no_held_notice"),
                Refusal::Released(_) => (StatusCode::CONFLICT, "order_released"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            };
            ApiError::new(status, code, refusal.to_string())
        }
        CommandError::Failed(error) if error.is_read_only() => ApiError::read_only(),
        CommandError::Failed(error) if error.is_unavailable() => ApiError::unavailable(),
        CommandError::Failed(error) => ApiError::internal(&error),
    }
}
