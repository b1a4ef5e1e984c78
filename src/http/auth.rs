//! Bearer tokens of the HTTP API.
//!
//! Operators and finance hold the admin token (`LEDGER_ADMIN_TOKEN`); DTS agents and the control
//! plane hold reporter tokens (`LEDGER_REPORTER_TOKENS`), which open tasks and traffic only; a
//! customer's order credential (`authCode`) opens that one order. Tokens are compared in constant
//! time and never logged: events name the caller by role ("reporter#2").

use crate::configuration::Secret;
use crate::credentials::{equal, Credentials};
use crate::http::error::ApiError;
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

/// What callers are checked against: the few secrets a route's guard needs, not the whole
/// application, so the rules can be tested on their own.
#[derive(Clone, Copy)]
pub struct Tokens<'a> {
    pub admin: Option<&'a Secret>,
    pub reporters: &'a [Secret],
    /// Derives each order's `authCode`; `None` when no secret is configured.
    pub credentials: Option<&'a Credentials>,
}

/// The admin or a reporter, by token.
fn staff(tokens: &Tokens, token: &str) -> Option<Caller> {
    if tokens
        .admin
        .is_some_and(|admin| equal(admin.expose(), token))
    {
        return Some(Caller::Admin);
    }
    // Every token is compared, so the time taken does not say which one matched.
    let mut found = None;
    for (index, reporter) in tokens.reporters.iter().enumerate() {
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
pub fn require_admin(req: &HttpRequest, tokens: &Tokens) -> Result<Caller, ApiError> {
    match bearer(req).and_then(|token| staff(tokens, token)) {
        Some(Caller::Admin) => Ok(Caller::Admin),
        Some(_) => Err(reporter_forbidden()),
        None => Err(ApiError::unauthorized()),
    }
}

/// Task and traffic routes: the admin or a reporter.
pub fn require_reporter(req: &HttpRequest, tokens: &Tokens) -> Result<Caller, ApiError> {
    bearer(req)
        .and_then(|token| staff(tokens, token))
        .ok_or_else(ApiError::unauthorized)
}

/// One order's routes: the admin token, or that order's `authCode` of its current credential
/// generation, which `generation` reads from the ledger (only when the bearer is no staff token;
/// a package that does not exist is generation 0, and its code is wrong anyway).
pub async fn require_order(
    req: &HttpRequest,
    tokens: &Tokens<'_>,
    instance_id: &InstanceId,
    generation: impl AsyncFnOnce() -> Result<u32, ApiError>,
) -> Result<Caller, ApiError> {
    let token = bearer(req).ok_or_else(ApiError::unauthorized)?;
    match staff(tokens, token) {
        Some(Caller::Admin) => return Ok(Caller::Admin),
        Some(_) => return Err(reporter_forbidden()),
        None => {}
    }
    let Some(credentials) = tokens.credentials else {
        return Err(ApiError::unauthorized());
    };
    let generation = generation().await?;
    if credentials.is_auth_code(instance_id, generation, token) {
        Ok(Caller::Order(instance_id.clone()))
    } else {
        Err(ApiError::unauthorized())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::test::TestRequest;

    fn secrets() -> (Secret, Vec<Secret>, Credentials) {
        let admin = Secret::new("admin-token");
        let reporters = vec![Secret::new("reporter-one"), Secret::new("reporter-two")];
        let credentials = Credentials::new(Some(&Secret::new("console-secret")), None)
            .expect("a console secret gives credentials");
        (admin, reporters, credentials)
    }

    fn bearing(token: &str) -> HttpRequest {
        TestRequest::default()
            .insert_header((AUTHORIZATION, format!("Bearer {token}")))
            .to_http_request()
    }

    fn status(result: Result<Caller, ApiError>) -> StatusCode {
        result.expect_err("refused").status
    }

    #[test]
    fn admin_routes_open_to_the_admin_and_forbid_reporters() {
        let (admin, reporters, credentials) = secrets();
        let tokens = Tokens {
            admin: Some(&admin),
            reporters: &reporters,
            credentials: Some(&credentials),
        };
        assert_eq!(
            require_admin(&bearing("admin-token"), &tokens).expect("admin"),
            Caller::Admin
        );
        assert_eq!(
            status(require_admin(&bearing("reporter-one"), &tokens)),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(require_admin(&bearing("stranger"), &tokens)),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(require_admin(
                &TestRequest::default().to_http_request(),
                &tokens
            )),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn reporter_routes_name_the_reporter_by_its_place_in_the_configuration() {
        let (admin, reporters, _) = secrets();
        let tokens = Tokens {
            admin: Some(&admin),
            reporters: &reporters,
            credentials: None,
        };
        let caller = require_reporter(&bearing("reporter-two"), &tokens).expect("reporter");
        assert_eq!(caller, Caller::Reporter(2));
        assert_eq!(caller.actor(), "reporter#2");
        assert_eq!(
            require_reporter(&bearing("admin-token"), &tokens).expect("admin"),
            Caller::Admin
        );
        assert_eq!(
            status(require_reporter(&bearing("reporter-three"), &tokens)),
            StatusCode::UNAUTHORIZED
        );
    }

    #[actix_web::test]
    async fn an_auth_code_of_the_current_generation_opens_its_own_order_only() {
        let (admin, reporters, credentials) = secrets();
        let tokens = Tokens {
            admin: Some(&admin),
            reporters: &reporters,
            credentials: Some(&credentials),
        };
        let own = InstanceId::parse("dts-1").expect("id");
        let other = InstanceId::parse("dts-2").expect("id");
        let code = credentials.auth_code(&own);
        let at = |generation: u32| async move || Ok(generation);
        assert_eq!(
            require_order(&bearing(&code), &tokens, &own, at(0))
                .await
                .expect("its customer"),
            Caller::Order(own.clone())
        );
        assert_eq!(
            status(require_order(&bearing(&code), &tokens, &other, at(0)).await),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(require_order(&bearing(&code), &tokens, &own, at(1)).await),
            StatusCode::UNAUTHORIZED,
            "a rotated credential's old code"
        );
        let rotated = credentials.auth_code_at(&own, 1);
        assert!(require_order(&bearing(&rotated), &tokens, &own, at(1))
            .await
            .is_ok());
        assert_eq!(
            status(require_order(&bearing("reporter-one"), &tokens, &own, at(0)).await),
            StatusCode::FORBIDDEN
        );
        let without_credentials = Tokens {
            credentials: None,
            ..tokens
        };
        assert_eq!(
            status(require_order(&bearing(&code), &without_credentials, &own, at(0)).await),
            StatusCode::UNAUTHORIZED
        );
    }
}
