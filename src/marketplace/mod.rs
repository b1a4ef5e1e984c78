//! The JD Cloud marketplace's order callbacks (`GET /v1/cloud/order`, DESIGN §3–4).
//!
//! Order of checks: the query is decoded, the token is checked (before anything else is looked at,
//! so an unauthenticated caller learns nothing), then every parameter the action uses is parsed
//! into a command, which is applied to the ledger. Every failure answers the action's failure
//! shape (`instanceId: "0"` for `createInstance`, `success: false` otherwise): the marketplace
//! retries those, and retries are safe because every action is idempotent.

pub mod client;
pub mod credentials;
pub mod params;
pub mod query;
pub mod token;

use crate::domain::orders::{Outcome, Refusal};
use crate::ledger::{self, CommandError};
use crate::startup::AppState;
use crate::store::Metadata;
use actix_web::http::StatusCode;
use chrono::Utc;
use params::{format_cst, Action, Callback};
use projections::events::Event;
use projections::ids::InstanceId;
use serde_json::{json, Value};

/// What a callback answers.
#[derive(Debug)]
pub enum Reply {
    Json(StatusCode, Value),
    /// `verify`: the browser is sent on to the console.
    Redirect(String),
}

fn failure(action: Option<Action>, status: StatusCode, message: impl Into<String>) -> Reply {
    let message = message.into();
    let body = if action == Some(Action::CreateInstance) {
        json!({"instanceId": "0", "message": message})
    } else {
        json!({"success": false, "message": message})
    };
    Reply::Json(status, body)
}

/// The action named in a query that could not be decoded, to pick the failure shape.
fn loose_action(query: &str) -> Option<Action> {
    query
        .split('&')
        .find_map(|segment| segment.strip_prefix("action="))
        .and_then(|value| Action::parse(value.as_bytes()))
}

pub async fn handle(state: &AppState, raw_query: &str, request_id: &str) -> Reply {
    let pairs = match query::parse(raw_query) {
        Ok(pairs) => pairs,
        Err(error) => {
            let action = loose_action(raw_query);
            tracing::warn!(%error, action = action.map(Action::name), "marketplace callback refused");
            let status = match error {
                // A repeated name makes the signed string ambiguous: treated like a bad token.
                query::QueryError::Duplicate(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            return failure(action, status, error.to_string());
        }
    };
    let action = query::get(&pairs, "action").and_then(Action::parse);
    let Some(key) = &state.config.marketplace_key else {
        tracing::warn!(
            action = action.map(Action::name),
            "marketplace callback refused: no marketplace key is configured"
        );
        return failure(
            action,
            StatusCode::FORBIDDEN,
            "callbacks are refused: no marketplace key is configured",
        );
    };
    if !token::is_valid(&pairs, key) {
        tracing::warn!(
            action = action.map(Action::name),
            "marketplace callback refused: missing or wrong token"
        );
        return failure(action, StatusCode::FORBIDDEN, "missing or wrong token");
    }
    let Some(action) = action else {
        let named = query::get(&pairs, "action")
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        return failure(
            None,
            StatusCode::BAD_REQUEST,
            format!("unknown or missing action {named:?}"),
        );
    };
    let callback = match params::parse(action, &pairs) {
        Ok(callback) => callback,
        Err(error) => {
            tracing::warn!(action = action.name(), %error, "marketplace callback refused");
            return failure(Some(action), StatusCode::BAD_REQUEST, error.to_string());
        }
    };
    if let Callback::Create(_, details)
    | Callback::Upgrade(_, details)
    | Callback::Dilate(_, details) = &callback
    {
        // The parameter's name only: its value may be personal data.
        for invalid in &details.invalid {
            tracing::warn!(
                action = action.name(),
                parameter = invalid.name,
                problem = invalid.problem,
                "optional parameter failed its check; kept as received and flagged in the order \
                 details, the order goes on"
            );
        }
    }
    execute(state, action, callback, request_id).await
}

async fn execute(state: &AppState, action: Action, callback: Callback, request_id: &str) -> Reply {
    let metadata = Metadata {
        request_id: request_id.to_owned(),
        source: "marketplace",
        actor: "marketplace".to_owned(),
    };
    let pool = &state.ledger;
    let catalog = &state.config.catalog;
    let result = match &callback {
        Callback::Create(command, details) => {
            ledger::orders::create(pool, catalog, command, details, &metadata).await
        }
        Callback::Renew(command) => ledger::orders::renew(pool, catalog, command, &metadata).await,
        Callback::Upgrade(command, details) => {
            ledger::orders::upgrade(pool, catalog, command, details, &metadata).await
        }
        Callback::Dilate(command, details) => {
            ledger::orders::dilate(pool, catalog, command, details, &metadata).await
        }
        Callback::Expire(instance_id) => ledger::orders::expire(pool, instance_id, &metadata).await,
        Callback::Release(instance_id) => {
            ledger::orders::release(pool, instance_id, &metadata).await
        }
        Callback::Verify {
            instance_id,
            time_stamp,
        } => return verify(state, instance_id, *time_stamp).await,
    };
    match result {
        Ok(outcome) => success(state, action, &outcome),
        Err(CommandError::Refused(refusal)) => {
            let status = match &refusal {
                Refusal::UnknownSku(sku) => {
                    tracing::warn!(sku = %sku, action = action.name(), "SKU not in the catalog; add it and the marketplace's retry will succeed");
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                Refusal::UnknownInstance(_) => StatusCode::NOT_FOUND,
                Refusal::Released(_) => StatusCode::CONFLICT,
                Refusal::Conflict(message) => {
                    tracing::error!(action = action.name(), %message, "conflicting marketplace order");
                    StatusCode::CONFLICT
                }
                Refusal::Overflow | Refusal::Fold(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            if !matches!(refusal, Refusal::UnknownSku(_) | Refusal::Conflict(_)) {
                tracing::warn!(action = action.name(), %refusal, "marketplace callback refused");
            }
            failure(Some(action), status, refusal.to_string())
        }
        Err(CommandError::Failed(error)) if error.is_unavailable() => {
            tracing::warn!(action = action.name(), %error, "database unavailable");
            failure(
                Some(action),
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; nothing was recorded, retry later",
            )
        }
        Err(CommandError::Failed(error)) => {
            tracing::error!(action = action.name(), %error, "marketplace callback failed");
            failure(
                Some(action),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; nothing was recorded",
            )
        }
    }
}

fn success(state: &AppState, action: Action, outcome: &Outcome) -> Reply {
    let auth_code = |id: &InstanceId| {
        state
            .credentials
            .as_ref()
            .map(|credentials| credentials.auth_code(id))
    };
    let ok = |message: String, code: Option<String>| {
        let mut body = json!({"success": true, "message": message});
        if let Some(code) = code {
            body["authCode"] = Value::String(code);
        }
        Reply::Json(StatusCode::OK, body)
    };
    match outcome.event() {
        Some(Event::OrderCreated(e)) => {
            let console = format!("{}/console", state.public_url);
            let mut info = json!({
                "packageName": e.sku_name,
                "bytesGranted": e.bytes_granted.to_string(),
            });
            if let Some(at) = e.expires_at {
                info["expiredOn"] = Value::String(format_cst(at));
            }
            Reply::Json(
                StatusCode::OK,
                json!({
                    "instanceId": e.instance_id,
                    "appInfo": {
                        "frontEndUrl": console,
                        "adminUrl": console,
                        "username": e.jd_pin,
                        "authUrl": format!("{}/v1/cloud/order", state.public_url),
                        "authCode": auth_code(&e.instance_id),
                    },
                    "info": info,
                }),
            )
        }
        Some(Event::OrderRenewed(e)) => ok(
            format!(
                "renewed {}: {} bytes granted, expires {} (China Standard Time)",
                e.instance_id,
                e.bytes_granted,
                format_cst(e.expires_at)
            ),
            auth_code(&e.instance_id),
        ),
        Some(Event::OrderUpgraded(e)) => ok(
            format!(
                "upgraded {} to {}: {} bytes granted",
                e.instance_id, e.sku_id, e.bytes_granted
            ),
            auth_code(&e.instance_id),
        ),
        Some(Event::OrderDilated(e)) => ok(
            format!(
                "expanded {} by {} unit(s): {} bytes granted",
                e.instance_id, e.units, e.bytes_granted
            ),
            auth_code(&e.instance_id),
        ),
        Some(Event::OrderExpired(e)) => ok(format!("{} expired", e.instance_id), None),
        Some(Event::OrderReleased(e)) => ok(
            format!(
                "{} released: {} bytes forfeited",
                e.instance_id, e.bytes_forfeited
            ),
            None,
        ),
        Some(other) => ok(format!("recorded {}", other.event_type()), None),
        None => match outcome {
            Outcome::Unchanged(message) => ok((*message).to_owned(), None),
            _ => failure(
                Some(action),
                StatusCode::INTERNAL_SERVER_ERROR,
                "no outcome",
            ),
        },
    }
}

/// `verify`: the login-free sign-in. A fresh, signed timestamp lets the customer into the console
/// of that one package, through a short-lived session.
async fn verify(
    state: &AppState,
    instance_id: &InstanceId,
    time_stamp: chrono::DateTime<Utc>,
) -> Reply {
    let action = Some(Action::Verify);
    let now = Utc::now();
    let window = state.config.verify_window_s as i64;
    if (now - time_stamp).num_seconds().abs() > window {
        tracing::warn!(instance_id = %instance_id, "sign-in refused: timeStamp outside the window");
        return failure(
            action,
            StatusCode::FORBIDDEN,
            format!("timeStamp is more than {window} seconds away from the server clock"),
        );
    }
    let known = match state.pool.get().await {
        Ok(client) => ledger::rows::read_packages(&client, &[instance_id.as_str()]).await,
        Err(error) => {
            tracing::warn!(%error, "database unavailable");
            return failure(
                action,
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            );
        }
    };
    match known {
        Ok(rows) if rows.is_empty() => failure(
            action,
            StatusCode::NOT_FOUND,
            format!("instanceId {instance_id} is not known"),
        ),
        Ok(_) => {
            match crate::console::sign_in_url(&state.config, &state.public_url, instance_id, now) {
                Some(url) => Reply::Redirect(url),
                None => failure(action, StatusCode::FORBIDDEN, "sign-in is not configured"),
            }
        }
        Err(error) => {
            tracing::warn!(%error, "sign-in failed: database error");
            failure(
                action,
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
            )
        }
    }
}
