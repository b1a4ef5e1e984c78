//! The JD Cloud marketplace's order callbacks (`GET /v1/cloud/order`, DESIGN §3–4).
//!
//! Order of checks: the query is decoded, the token is checked (before anything else is looked at,
//! so an unauthenticated caller learns nothing), then every parameter the action uses is parsed
//! into a command, which is applied to the ledger. Every failure answers the action's failure
//! shape (`instanceId: "0"` for `createInstance`, `success: false` otherwise): the marketplace
//! retries those, and retries are safe because every action is idempotent.

pub mod params;
pub mod query;
pub mod refusals;
pub mod reply;
pub mod sign_in;
pub mod token;

use crate::configuration::{Config, Secret};
use crate::credentials::Credentials;
use crate::domain::orders::{Outcome, Refusal};
use crate::ledger::{self, CommandError, Ledger};
use crate::store::Metadata;
use actix_web::http::StatusCode;
use chrono::Utc;
use deadpool_postgres::Pool;
use params::{format_cst, Action, Callback};
use projections::events::{Event, OrderCreated};
use projections::ids::InstanceId;
use reply::{AppInfo, CallbackReply, CreateFailed, Created, Done, PackageInfo};

/// What a callback answers.
#[derive(Debug)]
pub enum Reply {
    Json(StatusCode, CallbackReply),
    /// `verify`: the browser is sent on to the console.
    Redirect(String),
}

/// What the callbacks need of the application, and no more.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub ledger: &'a Ledger,
    pub pool: &'a Pool,
    pub config: &'a Config,
    /// Derives the `authCode` of an order; `None` when no secret is configured.
    pub credentials: Option<&'a Credentials>,
    /// The base URL customers reach this service at, without a trailing slash.
    pub public_url: &'a str,
}

/// Why a callback was not done: its status, a stable reason code (kept for reconciliation, see
/// [`refusals`]) and the message the marketplace is given.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl Failure {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            reason,
            message: message.into(),
        }
    }

    /// Unavailable: nothing was recorded, and the marketplace's retry succeeds.
    fn unavailable(message: &str) -> Failure {
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

fn failure(action: Option<Action>, status: StatusCode, message: impl Into<String>) -> Reply {
    let message = message.into();
    let body = if action == Some(Action::CreateInstance) {
        CallbackReply::CreateFailed(CreateFailed {
            instance_id: "0".to_owned(),
            message,
        })
    } else {
        CallbackReply::Done(Done {
            success: false,
            message,
            auth_code: None,
        })
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

pub async fn handle(context: &Context<'_>, raw_query: &str, request_id: &str) -> Reply {
    let (action, reply) = match admit(context.config.marketplace_key.as_ref(), raw_query) {
        Ok(admitted) => {
            let action = admitted.action;
            let done = execute(context, action, admitted.callback, request_id).await;
            let reply = reconcile(context, action.name().as_bytes(), &admitted.subject, done).await;
            (Some(action), reply)
        }
        Err(refused) => {
            let action = refused.action;
            let reply = match refused.authenticated {
                Some((name, subject)) => {
                    reconcile(context, &name, &subject, Err(refused.failure)).await
                }
                None => failure(action, refused.failure.status, refused.failure.message),
            };
            (action, reply)
        }
    };
    count(action, reply)
}

fn count(action: Option<Action>, reply: Reply) -> Reply {
    metrics::counter!(
        crate::metrics::MARKETPLACE_CALLBACKS,
        "action" => action.map_or("unknown", Action::name),
        "outcome" => reply.outcome()
    )
    .increment(1);
    reply
}

/// Keeps a refusal for operators, or resolves the earlier ones of the same action and package
/// when the call succeeded ([`refusals`]). Neither ever changes the answer: the refusal table is
/// bookkeeping beside the ledger, and a failure to write it is logged, not answered.
async fn reconcile(
    context: &Context<'_>,
    action: &[u8],
    subject: &[u8],
    done: Result<Reply, Failure>,
) -> Reply {
    let shape = Action::parse(action);
    match done {
        Ok(reply) => {
            let name = String::from_utf8_lossy(action);
            match refusals::resolve(context.pool, &name, subject).await {
                Ok(true) => tracing::info!(
                    action = %name,
                    subject = %refusals::printable(subject, 128),
                    "a refused marketplace callback succeeded on retry; resolved"
                ),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "could not resolve a refused callback"),
            }
            reply
        }
        Err(refused) => {
            let recorded = refusals::record(
                context.pool,
                action,
                subject,
                refused.reason,
                refused.status.as_u16(),
                &refused.message,
            )
            .await;
            if let Err(error) = recorded {
                // The database is down (the usual cause), or the table is: the refusal is still
                // answered, counted and logged.
                tracing::warn!(%error, reason = refused.reason, "could not keep a refused callback");
            }
            failure(shape, refused.status, refused.message)
        }
    }
}

impl Reply {
    /// How the callback ended, for metrics: `ok`, `refused` (the caller's or the catalog's
    /// problem, answered 4xx), `unavailable` (503, the marketplace retries) or `failed`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Reply::Redirect(_) => "ok",
            Reply::Json(status, _) if status.is_success() => "ok",
            Reply::Json(status, _) if *status == StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            Reply::Json(status, _) if status.is_server_error() => "failed",
            Reply::Json(..) => "refused",
        }
    }
}

/// A callback refused before anything was looked up.
#[derive(Debug)]
pub struct Refused {
    /// The action, when it could be read: it picks the failure shape.
    pub action: Option<Action>,
    pub failure: Failure,
    /// The action as received and the package it names (`instanceId`, or `orderBizId` for a
    /// purchase), once the token held: such a refusal is kept for reconciliation.
    pub authenticated: Option<(Vec<u8>, Vec<u8>)>,
}

impl Refused {
    fn new(
        action: Option<Action>,
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Refused {
        Refused {
            action,
            failure: Failure::new(status, reason, message),
            authenticated: None,
        }
    }

    /// Marks a refusal made after the token held.
    fn signed(mut self, pairs: &query::Pairs) -> Refused {
        let action = query::get(pairs, "action").unwrap_or_default().to_vec();
        self.authenticated = Some((action, subject(self.action, pairs).to_vec()));
        self
    }

    /// The action's failure shape.
    pub fn reply(self) -> Reply {
        failure(self.action, self.failure.status, self.failure.message)
    }
}

/// The package a callback is about, as received: the `orderBizId` of a purchase (it becomes the
/// package's `instanceId`), the `instanceId` otherwise; empty when absent.
fn subject(action: Option<Action>, pairs: &query::Pairs) -> &[u8] {
    let name = match action {
        Some(Action::CreateInstance) => "orderBizId",
        _ => "instanceId",
    };
    query::get(pairs, name).unwrap_or_default()
}

/// A callback whose token held and whose parameters parsed.
#[derive(Debug)]
pub struct Admitted {
    pub action: Action,
    pub callback: Callback,
    /// See [`subject`].
    pub subject: Vec<u8>,
}

/// The checks before anything is looked up: the query decodes, the token is right, and the action
/// and its parameters parse.
pub fn admit(key: Option<&Secret>, raw_query: &str) -> Result<Admitted, Refused> {
    let pairs = match query::parse(raw_query) {
        Ok(pairs) => pairs,
        Err(error) => {
            let action = loose_action(raw_query);
            tracing::warn!(%error, action = action.map(Action::name), "marketplace callback refused");
            let (status, reason) = match error {
                // A repeated name makes the signed string ambiguous: treated like a bad token.
                query::QueryError::Duplicate(_) => (StatusCode::FORBIDDEN, "bad_token"),
                _ => (StatusCode::BAD_REQUEST, "malformed_query"),
            };
            return Err(Refused::new(action, status, reason, error.to_string()));
        }
    };
    let action = query::get(&pairs, "action").and_then(Action::parse);
    let Some(key) = key else {
        tracing::warn!(
            action = action.map(Action::name),
            "marketplace callback refused: no marketplace key is configured"
        );
        return Err(Refused::new(
            action,
            StatusCode::FORBIDDEN,
            "no_key",
            "callbacks are refused: no marketplace key is configured",
        ));
    };
    if !token::is_valid(&pairs, key) {
        tracing::warn!(
            action = action.map(Action::name),
            "marketplace callback refused: missing or wrong token"
        );
        return Err(Refused::new(
            action,
            StatusCode::FORBIDDEN,
            "bad_token",
            "missing or wrong token",
        ));
    }
    if let Some(reading) = token::ambiguity(&pairs) {
        // The token holds, but for a string that also signs another callback: whoever can type
        // into a signed field and has seen one callback could be using it as someone else's.
        tracing::error!(
            action = action.map(Action::name),
            %reading,
            "marketplace callback refused: its signed string reads as more than one set of \
             parameters"
        );
        metrics::counter!(crate::metrics::MARKETPLACE_AMBIGUOUS).increment(1);
        return Err(Refused::new(
            action,
            StatusCode::FORBIDDEN,
            "ambiguous",
            format!("refused: the signed parameters are ambiguous ({reading})"),
        )
        .signed(&pairs));
    }
    let Some(action) = action else {
        let named = query::get(&pairs, "action")
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        return Err(Refused::new(
            None,
            StatusCode::BAD_REQUEST,
            "unknown_action",
            format!("unknown or missing action {named:?}"),
        )
        .signed(&pairs));
    };
    let callback = match params::parse(action, &pairs) {
        Ok(callback) => callback,
        Err(error) => {
            tracing::warn!(action = action.name(), %error, "marketplace callback refused");
            return Err(Refused::new(
                Some(action),
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                error.to_string(),
            )
            .signed(&pairs));
        }
    };
    warn_invalid_details(action, &callback);
    Ok(Admitted {
        action,
        callback,
        subject: subject(Some(action), &pairs).to_vec(),
    })
}

/// Optional parameters that failed their checks do not stop an order; they are flagged in its
/// details, and logged here.
fn warn_invalid_details(action: Action, callback: &Callback) {
    if let Callback::Create(_, details)
    | Callback::Upgrade(_, details)
    | Callback::Dilate(_, details) = callback
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
}

async fn execute(
    context: &Context<'_>,
    action: Action,
    callback: Callback,
    request_id: &str,
) -> Result<Reply, Failure> {
    let metadata = Metadata {
        request_id: request_id.to_owned(),
        source: "marketplace",
        actor: "marketplace".to_owned(),
    };
    let pool = context.ledger;
    let catalog = &context.config.catalog;
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
        } => return verify(context, instance_id, *time_stamp).await,
    };
    match result {
        Ok(outcome) => {
            if let Outcome::Recorded(Event::OrderExpiryHeld(held)) = &outcome {
                tracing::warn!(
                    instance_id = %held.instance_id,
                    "expiry notice held: the package's expiresAt is still ahead; if the order \
                     was refunded, apply it with `dts-ledger orders expire`"
                );
                metrics::counter!(crate::metrics::EXPIRY_NOTICES_HELD).increment(1);
            }
            success(context, action, &outcome)
        }
        Err(error) => Err(command_failed(action, error)),
    }
}

/// What a refused or failed command answers.
fn command_failed(action: Action, error: CommandError<Refusal>) -> Failure {
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

fn success(context: &Context<'_>, action: Action, outcome: &Outcome) -> Result<Reply, Failure> {
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

/// `verify`: the login-free sign-in. A fresh, signed timestamp lets the customer into the console
/// of that one package, through a short-lived session.
async fn verify(
    context: &Context<'_>,
    instance_id: &InstanceId,
    time_stamp: chrono::DateTime<Utc>,
) -> Result<Reply, Failure> {
    let now = Utc::now();
    let window = context.config.verify_window_s as i64;
    if (now - time_stamp).num_seconds().abs() > window {
        tracing::warn!(instance_id = %instance_id, "sign-in refused: timeStamp outside the window");
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "stale_timestamp",
            format!("timeStamp is more than {window} seconds away from the server clock"),
        ));
    }
    // Spent once, in every process: a replayed link earns no ticket. The
    // marketplace's own retry of a `verify` is a browser following the link it opened once.
    let signed_in = match context.pool.get().await {
        Ok(client) => {
            sign_in::sign_in_by_link(
                &client,
                context.config,
                context.credentials,
                context.public_url,
                instance_id,
                time_stamp,
                now,
            )
            .await
        }
        Err(error) => {
            tracing::warn!(%error, "database unavailable");
            return Err(Failure::unavailable("the database is unavailable"));
        }
    };
    use sign_in::LinkSignIn;
    match signed_in {
        Ok(LinkSignIn::Ticket(url)) => Ok(Reply::Redirect(url)),
        Ok(LinkSignIn::UnknownPackage) => Err(Failure::new(
            StatusCode::NOT_FOUND,
            "unknown_instance",
            format!("instanceId {instance_id} is not known"),
        )),
        Ok(LinkSignIn::Released) => Err(Failure::new(
            StatusCode::CONFLICT,
            "released",
            format!("{instance_id} was released: it signs no one in"),
        )),
        Ok(LinkSignIn::Used) => {
            tracing::warn!(instance_id = %instance_id, "sign-in refused: the link was used already");
            Err(Failure::new(
                StatusCode::FORBIDDEN,
                "link_used",
                "this sign-in link was used already: a link signs in once",
            ))
        }
        Ok(LinkSignIn::NotConfigured) => Err(Failure::new(
            StatusCode::FORBIDDEN,
            "sign_in_unconfigured",
            "sign-in is not configured",
        )),
        Ok(LinkSignIn::Unreadable) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; nobody was signed in",
        )),
        Err(error) => {
            tracing::warn!(%error, "sign-in failed: database error");
            Err(Failure::unavailable("the database is unavailable"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new("isv-key")
    }

    /// `query` with the token the marketplace would sign it with.
    fn signed(query: &str) -> String {
        let pairs = query::parse(query).expect("a well-formed query");
        format!("{query}&token={}", token::expected(&pairs, &key()))
    }

    fn refused(key: Option<&Secret>, query: &str) -> (StatusCode, CallbackReply) {
        match admit(key, query).expect_err("refused").reply() {
            Reply::Json(status, body) => (status, body),
            Reply::Redirect(to) => panic!("a refusal redirected to {to}"),
        }
    }

    #[test]
    fn a_wrong_token_on_create_answers_instance_id_zero() {
        let (status, body) = refused(
            Some(&key()),
            "action=createInstance&orderBizId=1&token=0123456789abcdef0123456789abcdef",
        );
        assert_eq!(status, StatusCode::FORBIDDEN);
        let CallbackReply::CreateFailed(failed) = body else {
            panic!("not the createInstance failure shape: {body:?}");
        };
        assert_eq!(failed.instance_id, "0");
        assert_eq!(failed.message, "missing or wrong token");
    }

    #[test]
    fn a_missing_token_on_other_actions_answers_success_false() {
        let (status, body) = refused(Some(&key()), "action=expiredInstance&instanceId=dts-1");
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            CallbackReply::Done(Done {
                success: false,
                message: "missing or wrong token".to_owned(),
                auth_code: None,
            })
        );
    }

    #[test]
    fn without_a_key_every_callback_is_refused() {
        let (status, body) = refused(None, &signed("action=expiredInstance&instanceId=dts-1"));
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(matches!(
            body,
            CallbackReply::Done(Done { success: false, .. })
        ));
    }

    #[test]
    fn a_signed_callback_is_admitted_with_its_parameters() {
        let admitted = admit(
            Some(&key()),
            &signed("action=expiredInstance&instanceId=dts-1"),
        )
        .expect("admitted");
        assert_eq!(admitted.action, Action::ExpiredInstance);
        assert_eq!(
            admitted.callback,
            Callback::Expire(InstanceId::parse("dts-1").expect("id"))
        );
        assert_eq!(admitted.subject, b"dts-1");
    }
}
