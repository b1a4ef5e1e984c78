//! What an applied callback answers: the marketplace's reply for each recorded outcome (with the
//! order credential where the order stays usable), and the failure for each refusal.

use super::params::{format_cst, Action};
use super::reply::{AppInfo, CallbackReply, Created, Done, PackageInfo};
use super::{Context, Failure, Reply};
use crate::domain::orders::{Outcome, Refusal};
use crate::ledger::CommandError;
use actix_web::http::StatusCode;
use projections::events::{Event, OrderCreated};
use projections::ids::InstanceId;

/// What a refused or failed command answers.
pub(super) fn command_failed(action: Action, error: CommandError<Refusal>) -> Failure {
    match error {
        CommandError::Refused(refusal) => {
            let (status, reason) = match &refusal {
                Refusal::UnknownSku(sku) => {
                    tracing::warn!(sku = %sku, action = action.name(), "SKU not in the catalog; add it and the marketplace's retry will succeed");
                    (StatusCode::UNPROCESSABLE_ENTITY, "unknown_sku")
                }
                Refusal::UnknownInstance(_) => (StatusCode::NOT_FOUND, "unknown_instance"),
                Refusal::Released(_) => (StatusCode::CONFLICT, "released"),
                Refusal::Conflict(message) => {
                    tracing::error!(action = action.name(), %message, "conflicting marketplace order");
                    (StatusCode::CONFLICT, "conflict")
                }
                Refusal::Overflow => (StatusCode::UNPROCESSABLE_ENTITY, "overflow"),
                // Only an operator applies a held notice; no callback asks for it.
                Refusal::NoHeldNotice(_) => (StatusCode::CONFLICT, "no_held_notice"),
                // Never reached: the ledger turns a fold error into `CommandError::Failed` (a bug,
                // not a business answer). The variant stays so that decisions can use `?` on the
                // fold; were it reached, it is answered as the bug it would be.
                Refusal::Fold(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            };
            if !matches!(refusal, Refusal::UnknownSku(_) | Refusal::Conflict(_)) {
                tracing::warn!(action = action.name(), %refusal, "marketplace callback refused");
            }
            Failure::new(status, reason, refusal.to_string())
        }
        CommandError::Failed(error) if error.is_unavailable() => {
            tracing::warn!(action = action.name(), %error, "database unavailable");
            Failure::unavailable("the database is unavailable; nothing was recorded, retry later")
        }
        CommandError::Failed(error) => {
            tracing::error!(action = action.name(), %error, "marketplace callback failed");
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; nothing was recorded",
            )
        }
    }
}

pub(super) fn success(
    context: &Context<'_>,
    action: Action,
    outcome: &Outcome,
) -> Result<Reply, Failure> {
    let auth_code = |id: &InstanceId| {
        context
            .credentials
            .map(|credentials| credentials.auth_code(id))
    };
    let ok = |message: String, auth_code: Option<String>| {
        Reply::Json(
            StatusCode::OK,
            CallbackReply::Done(Done {
                success: true,
                message,
                auth_code,
            }),
        )
    };
    Ok(match outcome.event() {
        Some(Event::OrderCreated(e)) => Reply::Json(
            StatusCode::OK,
            CallbackReply::Created(created(context, e, auth_code(&e.instance_id))),
        ),
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
        Some(Event::OrderExpiryHeld(e)) => ok(
            format!(
                "{} not expired: its expiresAt {} (China Standard Time) is still ahead; the \
                 notice is held for an operator to apply if it was a refund",
                e.instance_id,
                format_cst(e.expires_at)
            ),
            None,
        ),
        Some(Event::OrderReleased(e)) => ok(
            format!(
                "{} released: {} bytes forfeited",
                e.instance_id, e.bytes_forfeited
            ),
            None,
        ),
        Some(other) => ok(format!("recorded {}", other.event_type()), None),
        // Every outcome but `Unchanged` carries the event it recorded; the other arm only
        // completes the match, answered as the bug it would be.
        None => match outcome {
            Outcome::Unchanged(message) => ok((*message).to_owned(), None),
            _ => {
                return Err(Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("{} left no outcome", action.name()),
                ))
            }
        },
    })
}

/// `createInstance`'s answer: where the customer uses the package, and what it holds.
fn created(context: &Context<'_>, e: &OrderCreated, auth_code: Option<String>) -> Created {
    let console = format!("{}/console", context.public_url);
    Created {
        instance_id: e.instance_id.as_str().to_owned(),
        app_info: AppInfo {
            front_end_url: console.clone(),
            admin_url: console,
            username: e.jd_pin.as_str().to_owned(),
            auth_url: format!("{}/v1/cloud/order", context.public_url),
            auth_code,
        },
        info: PackageInfo {
            package_name: e.sku_name.clone(),
            bytes_granted: e.bytes_granted.to_string(),
            expired_on: e.expires_at.map(format_cst),
        },
    }
}
