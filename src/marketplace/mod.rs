//! The JD Cloud marketplace's order callbacks (`GET /v1/cloud/order`, DESIGN §3–4).
//!
//! Order of checks: the query is decoded, the token is checked (before anything else is looked at,
//! so an unauthenticated caller learns nothing), then every parameter the action uses is parsed
//! into a command, which is applied to the ledger. Every failure answers the action's failure
//! shape (`instanceId: "0"` for `createInstance`, `success: false` otherwise): the marketplace
//! retries those, and retries are safe because every action is idempotent.
//!
//! - [`query`] decodes the query as it was signed, [`token`] checks its token, `admit` runs the
//!   checks before anything is looked up and [`params`] turns the parameters into a command;
//! - this file applies the command, keeps refusals for reconciliation ([`refusals`]) and answers
//!   each refusal in the action's failure shape; for `verify` it checks the `timeStamp` window,
//!   then says what each outcome of the sign-in answers;
//! - `answer` says what an order command answers, its outcome or its refusal, in the shapes of
//!   [`reply`];
//! - [`sign_in`] is the login-free sign-in behind a `verify` whose window held: the link spent
//!   once, in every process, for a ticket to the package's console.

mod admit;
mod answer;
pub mod params;
pub mod query;
pub mod refusals;
pub mod reply;
pub mod sign_in;
pub mod token;

use crate::configuration::Config;
use crate::credentials::Credentials;
use crate::domain::orders::Outcome;
use crate::ledger::{self, Ledger};
use crate::store::Metadata;
use actix_web::http::StatusCode;
use admit::admit;
use answer::{command_failed, success};
use chrono::Utc;
use deadpool_postgres::Pool;
use params::{Action, Callback};
use projections::events::Event;
use projections::ids::InstanceId;
use reply::{CallbackReply, CreateFailed, Done};

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

pub async fn handle(context: &Context<'_>, raw_query: &str, request_id: &str) -> Reply {
    let (action, reply) = match admit(context.config.marketplace_key.as_ref(), raw_query) {
        Ok(admitted) => {
            let action = admitted.action;
            let done = execute(context, action, admitted.callback, request_id).await;
            let reply = reconcile(context, action.name().as_bytes(), &admitted.subject, done).await;
            (Some(action), reply)
        }
        Err(mut refused) => {
            let action = refused.action;
            let reply = match refused.authenticated.take() {
                Some((name, subject)) => {
                    reconcile(context, &name, &subject, Err(refused.failure)).await
                }
                None => refused.reply(),
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
    let ledger = context.ledger;
    let catalog = &context.config.catalog;
    let result = match &callback {
        Callback::Create(command, details) => {
            ledger::orders::create(ledger, catalog, command, details, &metadata).await
        }
        Callback::Renew(command) => {
            ledger::orders::renew(ledger, catalog, command, &metadata).await
        }
        Callback::Upgrade(command, details) => {
            ledger::orders::upgrade(ledger, catalog, command, details, &metadata).await
        }
        Callback::Dilate(command, details) => {
            ledger::orders::dilate(ledger, catalog, command, details, &metadata).await
        }
        Callback::Expire(instance_id) => {
            ledger::orders::expire(ledger, instance_id, &metadata).await
        }
        Callback::Release(instance_id) => {
            ledger::orders::release(ledger, instance_id, &metadata).await
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
