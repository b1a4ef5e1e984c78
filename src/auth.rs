//! Bearer tokens of the HTTP API.
//!
//! Operators and finance hold the admin token (`LEDGER_ADMIN_TOKEN`); a customer's order
//! credential (`authCode`) opens that one order. Tokens are compared in constant time and never
//! logged.

use crate::error::ApiError;
use crate::marketplace::credentials::equal;
use crate::startup::AppState;
use actix_web::http::header::AUTHORIZATION;
use actix_web::HttpRequest;
use projections::ids::InstanceId;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    /// The holder of one order's credential.
    Order(InstanceId),
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

fn is_admin(state: &AppState, token: &str) -> bool {
    state
        .config
        .admin_token
        .as_ref()
        .is_some_and(|admin| equal(admin.expose(), token))
}

/// Admin routes: a missing or unknown token is 401.
pub fn require_admin(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    match bearer(req) {
        Some(token) if is_admin(state, token) => Ok(Caller::Admin),
        _ => Err(ApiError::unauthorized()),
    }
}

/// One order's routes: the admin token, or that order's `authCode`.
pub fn require_order(
    req: &HttpRequest,
    state: &AppState,
    instance_id: &InstanceId,
) -> Result<Caller, ApiError> {
    let token = bearer(req).ok_or_else(ApiError::unauthorized)?;
    if is_admin(state, token) {
        return Ok(Caller::Admin);
    }
    match &state.credentials {
        Some(credentials) if credentials.is_auth_code(instance_id, token) => {
            Ok(Caller::Order(instance_id.clone()))
        }
        _ => Err(ApiError::unauthorized()),
    }
}
