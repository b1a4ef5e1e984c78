//! Bearer tokens of the HTTP API, and the extractors that hold every route to its role.
//!
//! Operators and finance hold the admin token (`LEDGER_ADMIN_TOKEN`); DTS agents and the control
//! plane hold reporter tokens (`LEDGER_REPORTER_TOKENS`), which open tasks and traffic only; a
//! customer's order credential (`authCode`) opens that one order. Tokens are compared in constant
//! time and never logged: events name the caller by role ("reporter#2").
//!
//! A route that needs a token takes its role's extractor ([`Admin`], [`Staff`], [`OrderCaller`])
//! as its FIRST argument, and after it only arguments that cannot be refused (the state, the
//! request, its id, the raw payload, the path's raw segment); it parses its path ids, query and
//! body itself, with [`crate::http::request`] and [`crate::http::body`]. actix builds a handler's
//! arguments in order and answers the first one refused, but it polls them side by side: an
//! argument that could be refused while the caller's credential is still being read would answer
//! first. So a caller without a valid token always gets `401` (a reporter on an admin route
//! `403`), never a `400` that says something about the route, and no body is read for it.

use crate::configuration::Secret;
use crate::credentials::{equal, Credentials};
use crate::http::error::ApiError;
use crate::http::request::parse_instance_id;
use crate::http::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use projections::ids::InstanceId;
use std::future::{ready, Ready};

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
struct Tokens<'a> {
    admin: Option<&'a Secret>,
    reporters: &'a [Secret],
    /// Derives each order's `authCode`; `None` when no secret is configured.
    credentials: Option<&'a Credentials>,
}

impl<'a> Tokens<'a> {
    /// The application's tokens and order credentials.
    fn of(state: &'a AppState) -> Tokens<'a> {
        Tokens {
            admin: state.config.admin_token.as_ref(),
            reporters: &state.config.reporter_tokens,
            credentials: state.credentials.as_ref(),
        }
    }
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
fn require_admin(req: &HttpRequest, tokens: &Tokens) -> Result<Admin, ApiError> {
    match bearer(req).and_then(|token| staff(tokens, token)) {
        Some(Caller::Admin) => Ok(Admin),
        Some(_) => Err(reporter_forbidden()),
        None => Err(ApiError::unauthorized()),
    }
}

/// Task and traffic routes: the admin or a reporter.
fn require_reporter(req: &HttpRequest, tokens: &Tokens) -> Result<Staff, ApiError> {
    bearer(req)
        .and_then(|token| staff(tokens, token))
        .map(Staff)
        .ok_or_else(ApiError::unauthorized)
}

/// One order's routes, the order named by `raw_id` (the path's segment, unparsed): the admin
/// token, or that order's `authCode` of its current credential generation, which `generation`
/// reads from the ledger (only when the bearer is no staff token; a package that does not exist
/// is generation 0, and its code is wrong anyway). The id is parsed once the caller is known:
/// the admin is told it is malformed (`400`), a bearer of no staff token is not (`401`: no
/// order's code opens an id that names no order).
async fn require_order(
    req: &HttpRequest,
    tokens: &Tokens<'_>,
    raw_id: &str,
    generation: impl AsyncFnOnce(&InstanceId) -> Result<u32, ApiError>,
) -> Result<OrderCaller, ApiError> {
    let token = bearer(req).ok_or_else(ApiError::unauthorized)?;
    match staff(tokens, token) {
        Some(Caller::Admin) => {
            return Ok(OrderCaller {
                caller: Caller::Admin,
                instance_id: parse_instance_id(raw_id)?,
            })
        }
        Some(_) => return Err(reporter_forbidden()),
        None => {}
    }
    let (Some(credentials), Ok(instance_id)) = (tokens.credentials, InstanceId::parse(raw_id))
    else {
        return Err(ApiError::unauthorized());
    };
    let generation = generation(&instance_id).await?;
    if credentials.is_auth_code(&instance_id, generation, token) {
        Ok(OrderCaller {
            caller: Caller::Order(instance_id.clone()),
            instance_id,
        })
    } else {
        Err(ApiError::unauthorized())
    }
}

/// The admin, by the admin token: the first argument of every admin route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin;

impl Admin {
    pub fn caller(&self) -> Caller {
        Caller::Admin
    }
}

/// The admin or a reporter, by token: the first argument of the task and traffic routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff(pub Caller);

/// The admin or the holder of one order's credential: the first argument of that order's
/// routes, with the order its path names (`{instance_id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCaller {
    pub caller: Caller,
    pub instance_id: InstanceId,
}

/// The application's state, which every API route is registered with.
fn state_of(req: &HttpRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .expect("the API's routes are registered with the application's state")
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(require_admin(req, &Tokens::of(&state_of(req))))
    }
}

impl FromRequest for Staff {
    type Error = ApiError;
    type Future = Ready<Result<Staff, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(require_reporter(req, &Tokens::of(&state_of(req))))
    }
}

impl FromRequest for OrderCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<OrderCaller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (req, state) = (req.clone(), state_of(req));
        Box::pin(async move {
            // The matched segment is still percent-encoded where it holds `/`, `%` or `+`;
            // decoded in full, as `web::Path` decodes it for the routes that take it so.
            let segment = req.match_info().get("instance_id").unwrap_or_default();
            let raw_id = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
            require_order(&req, &Tokens::of(&state), &raw_id, async |instance_id| {
                let client = state.pool.get().await?;
                Ok(crate::ledger::orders::credential_generation(&client, instance_id).await?)
            })
            .await
        })
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

    fn status<T: std::fmt::Debug>(result: Result<T, ApiError>) -> StatusCode {
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
            require_admin(&bearing("admin-token"), &tokens)
                .expect("admin")
                .caller(),
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
        let Staff(caller) = require_reporter(&bearing("reporter-two"), &tokens).expect("reporter");
        assert_eq!(caller, Caller::Reporter(2));
        assert_eq!(caller.actor(), "reporter#2");
        assert_eq!(
            require_reporter(&bearing("admin-token"), &tokens).expect("admin"),
            Staff(Caller::Admin)
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
        let code = credentials.auth_code(&own);
        let at = |generation: u32| async move |_: &InstanceId| Ok(generation);
        assert_eq!(
            require_order(&bearing(&code), &tokens, "dts-1", at(0))
                .await
                .expect("its customer"),
            OrderCaller {
                caller: Caller::Order(own.clone()),
                instance_id: own.clone()
            }
        );
        assert_eq!(
            status(require_order(&bearing(&code), &tokens, "dts-2", at(0)).await),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(require_order(&bearing(&code), &tokens, "dts-1", at(1)).await),
            StatusCode::UNAUTHORIZED,
            "a rotated credential's old code"
        );
        let rotated = credentials.auth_code_at(&own, 1);
        assert!(require_order(&bearing(&rotated), &tokens, "dts-1", at(1))
            .await
            .is_ok());
        assert_eq!(
            status(require_order(&bearing("reporter-one"), &tokens, "dts-1", at(0)).await),
            StatusCode::FORBIDDEN
        );
        let without_credentials = Tokens {
            credentials: None,
            ..tokens
        };
        assert_eq!(
            status(require_order(&bearing(&code), &without_credentials, "dts-1", at(0)).await),
            StatusCode::UNAUTHORIZED
        );
    }

    #[actix_web::test]
    async fn a_malformed_order_id_is_told_to_the_admin_only() {
        let (admin, reporters, credentials) = secrets();
        let tokens = Tokens {
            admin: Some(&admin),
            reporters: &reporters,
            credentials: Some(&credentials),
        };
        let never = async |_: &InstanceId| -> Result<u32, ApiError> {
            panic!("no credential is read for an id that names no order")
        };
        let too_long = "x".repeat(300);
        let malformed = too_long.as_str();
        let admin_answer = require_order(&bearing("admin-token"), &tokens, malformed, never).await;
        assert_eq!(
            admin_answer.expect_err("malformed").code,
            "invalid_instance_id"
        );
        let code = credentials.auth_code(&InstanceId::parse("dts-1").expect("id"));
        for caller in [bearing(&code), TestRequest::default().to_http_request()] {
            assert_eq!(
                status(require_order(&caller, &tokens, malformed, never).await),
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            status(require_order(&bearing("reporter-one"), &tokens, malformed, never).await),
            StatusCode::FORBIDDEN
        );
    }
}
