//! The checks a callback passes before anything is looked up, in order: the query decodes, the
//! token is right (before anything else is looked at, so an unauthenticated caller learns
//! nothing), the signed string reads as one set of parameters, and the action and every
//! parameter it uses parse into a command.

use super::params::{self, Action, Callback};
use super::{failure, query, token, Failure, Reply};
use crate::configuration::Secret;
use actix_web::http::StatusCode;

/// The action named in a query that could not be decoded, to pick the failure shape.
fn loose_action(query: &str) -> Option<Action> {
    query
        .split('&')
        .find_map(|segment| segment.strip_prefix("action="))
        .and_then(|value| Action::parse(value.as_bytes()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marketplace::reply::{CallbackReply, Done};
    use projections::ids::InstanceId;

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
