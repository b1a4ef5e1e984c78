//! Bearer tokens of the HTTP API.
//!
//! Operators and finance hold the admin token (`LEDGER_ADMIN_TOKEN`); DTS agents and the control
//! plane hold reporter tokens (`LEDGER_REPORTER_TOKENS`), which open tasks and traffic only; a
//! customer's order credential (`authCode`) opens that one order. Tokens are compared in constant
//! time and never logged: events name the caller by role ("reporter#2").

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
    /// The holder of reporter token number `n` (1-based, in configuration order).
    Reporter(usize),
    /// The holder of one order's credential.
    Order(InstanceId),
}

impl Caller {
    /// How the caller is named in event metadata.
    pub fn actor(&self) -> String {
        match self {
            Caller::Admin => "admin".to_owned(),
            Caller::Reporter(n) => format!("reporter#{n}"),
            Caller::Order(instance_id) => format!("customer:{instance_id}"),
        }
    }
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

/// The admin or a reporter, by token.
fn staff(state: &AppState, token: &str) -> Option<Caller> {
    let config = &state.config;
    if config
        .admin_token
        .as_ref()
        .is_some_and(|admin| equal(admin.expose(), token))
    {
        return Some(Caller::Admin);
    }
    // Every token is compared, so the time taken does not say which one matched.
    let mut found = None;
    for (index, reporter) in config.reporter_tokens.iter().enumerate() {
        if equal(reporter.expose(), token) {
            found = Some(Caller::Reporter(index + 1));
        }
    }
    found
}

fn reporter_forbidden() -> ApiError {
    ApiError::forbidden("a reporter token does not open this route")
}

/// Admin routes: a reporter token is 403, anything else but the admin token 401.
pub fn require_admin(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    match bearer(req).and_then(|token| staff(state, token)) {
        Some(Caller::Admin) => Ok(Caller::Admin),
        Some(_) => Err(reporter_forbidden()),
        None => Err(ApiError::unauthorized()),
    }
}

/// Task and traffic routes: the admin or a reporter.
pub fn require_reporter(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    bearer(req)
        .and_then(|token| staff(state, token))
        .ok_or_else(ApiError::unauthorized)
}

/// One order's routes: the admin token, or that order's `authCode`.
pub fn require_order(
    req: &HttpRequest,
    state: &AppState,
    instance_id: &InstanceId,
) -> Result<Caller, ApiError> {
    let token = bearer(req).ok_or_else(ApiError::unauthorized)?;
    match staff(state, token) {
        Some(Caller::Admin) => return Ok(Caller::Admin),
        Some(_) => return Err(reporter_forbidden()),
        None => {}
    }
    match &state.credentials {
        Some(credentials) if credentials.is_auth_code(instance_id, token) => {
            Ok(Caller::Order(instance_id.clone()))
        }
        _ => Err(ApiError::unauthorized()),
    }
}
