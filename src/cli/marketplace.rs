//! The marketplace's side of the callback, for operators and newcomers: sign parameters exactly as
//! the marketplace does and send them to a running service (`dts-ledger marketplace …`).
//!
//! It is the same token rule the service checks ([`crate::marketplace::token`]), applied to the same decoded
//! bytes, so a callback that this module signs is one the marketplace could have sent. Operators use
//! it to re-drive a callback by hand (after fixing the SKU catalog, say); newcomers use it to buy a
//! package on their own machine.

use crate::configuration::Secret;
use crate::marketplace::query::Pairs;
use crate::marketplace::token;
use chrono::{DateTime, FixedOffset, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::time::Duration;

/// The actions the marketplace calls, in the protocol's spelling.
pub const ACTIONS: [&str; 7] = [
    "createInstance",
    "renewInstance",
    "upgradeInstance",
    "dilateInstance",
    "expiredInstance",
    "releaseInstance",
    "verify",
];

/// The path the marketplace calls on the service.
pub const CALLBACK_PATH: &str = "/v1/cloud/order";

/// How long the command waits for the service. The marketplace itself gives up after about 10 s
/// (DESIGN §3); a little more here, so that an operator sees a slow answer instead of a guess.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// Characters sent as they are; every other byte is `%XX`-escaped (a space too, never `+`, so the
/// query means the same to any decoder).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    #[error("unknown action {0:?}: use one of {actions}", actions = ACTIONS.join(", "))]
    UnknownAction(String),
    #[error("--param {0:?} is not NAME=VALUE")]
    NotAPair(String),
    #[error("parameter {0} is given twice")]
    Twice(String),
    #[error("parameter token is computed from the key and may not be given")]
    TokenGiven,
}

/// One callback: the action and its parameters, in the order given.
#[derive(Debug, Clone)]
pub struct Callback {
    params: Vec<(String, String)>,
}

impl Callback {
    /// A callback of `action` with `NAME=VALUE` parameters as typed on the command line.
    pub fn parse(action: &str, params: &[String]) -> Result<Callback, ClientError> {
        if !ACTIONS.contains(&action) {
            return Err(ClientError::UnknownAction(action.to_owned()));
        }
        let mut callback = Callback {
            params: vec![("action".to_owned(), action.to_owned())],
        };
        for param in params {
            let (name, value) = param
                .split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| ClientError::NotAPair(param.clone()))?;
            callback.set(name, value)?;
        }
        Ok(callback)
    }

    /// The login-free sign-in (免登) of `instance_id`, stamped `now`.
    pub fn sign_in(instance_id: &str, now: DateTime<Utc>) -> Callback {
        Callback {
            params: vec![
                ("action".to_owned(), "verify".to_owned()),
                ("instanceId".to_owned(), instance_id.to_owned()),
                ("timeStamp".to_owned(), china_time(now)),
            ],
        }
    }

    /// Adds a parameter; a name given twice is refused, as the service would refuse it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ClientError> {
        if name == "token" {
            return Err(ClientError::TokenGiven);
        }
        if self.get(name).is_some() {
            return Err(ClientError::Twice(name.to_owned()));
        }
        self.params.push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn action(&self) -> &str {
        self.get("action").expect("every callback has an action")
    }

    /// The query string with its token, as the marketplace sends it.
    pub fn signed_query(&self, key: &Secret) -> String {
        let pairs: Pairs = self
            .params
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let token = token::expected(&pairs, key);
        let mut query: Vec<String> = self
            .params
            .iter()
            .map(|(n, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(n, QUERY_VALUE),
                    utf8_percent_encode(v, QUERY_VALUE)
                )
            })
            .collect();
        query.push(format!("token={token}"));
        query.join("&")
    }

    /// The full URL of this callback on the service at `base_url`.
    pub fn url(&self, base_url: &str, key: &Secret) -> String {
        format!(
            "{}{CALLBACK_PATH}?{}",
            base_url.trim_end_matches('/'),
            self.signed_query(key)
        )
    }
}

/// `yyyy-MM-dd HH:mm:ss` in China Standard Time, the marketplace's time format.
pub fn china_time(at: DateTime<Utc>) -> String {
    let cst = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    at.with_timezone(&cst)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// What the service answered.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// Whether the service did what was asked: `createInstance` answers an `instanceId` other than
    /// `"0"`, the other actions `"success": true`.
    pub fn succeeded(&self) -> bool {
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&self.body) else {
            return false;
        };
        match body.get("instanceId").and_then(|id| id.as_str()) {
            Some(id) => id != "0",
            None => body.get("success").and_then(|s| s.as_bool()) == Some(true),
        }
    }
}

/// Sends `callback` to the service at `base_url`, as the marketplace does (`GET`, no redirects
/// followed: a `verify` answers with one).
///
/// An error never carries the URL: its query is signed, and a signed callback is a credential
/// (a `createInstance` replayed from it answers the package's `authCode`). The caller names
/// `base_url`.
pub async fn send(
    callback: &Callback,
    base_url: &str,
    key: &Secret,
) -> Result<Reply, reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(REPLY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let sent = async {
        let response = client.get(callback.url(base_url, key)).send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok(Reply { status, body })
    };
    sent.await.map_err(reqwest::Error::without_url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marketplace::query::parse;

    fn key() -> Secret {
        Secret::new("isv-key")
    }

    #[test]
    fn a_signed_query_passes_the_services_own_token_check() {
        let callback = Callback::parse(
            "createInstance",
            &[
                "jdPin=张三 & co".to_owned(),
                "orderBizId=1001".to_owned(),
                "extraInfo={\"a\":\"b=c\"}".to_owned(),
                "mobile=".to_owned(),
            ],
        )
        .unwrap();
        let query = callback.signed_query(&key());
        let pairs = parse(&query).unwrap();
        assert!(token::is_valid(&pairs, &key()));
        assert!(!token::is_valid(&pairs, &Secret::new("other-key")));
        let value = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name.as_bytes())
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(value("jdPin").as_deref(), Some("张三 & co"));
        assert_eq!(value("extraInfo").as_deref(), Some("{\"a\":\"b=c\"}"));
        assert_eq!(value("mobile").as_deref(), Some(""));
        assert_eq!(value("action").as_deref(), Some("createInstance"));
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_reason() {
        assert_eq!(
            Callback::parse("buyInstance", &[]).unwrap_err(),
            ClientError::UnknownAction("buyInstance".into())
        );
        assert_eq!(
            Callback::parse("renewInstance", &["orderId".into()]).unwrap_err(),
            ClientError::NotAPair("orderId".into())
        );
        assert_eq!(
            Callback::parse("renewInstance", &["=1".into()]).unwrap_err(),
            ClientError::NotAPair("=1".into())
        );
        assert_eq!(
            Callback::parse("renewInstance", &["a=1".into(), "a=2".into()]).unwrap_err(),
            ClientError::Twice("a".into())
        );
        assert_eq!(
            Callback::parse("renewInstance", &["action=verify".into()]).unwrap_err(),
            ClientError::Twice("action".into())
        );
        assert_eq!(
            Callback::parse("renewInstance", &["token=abc".into()]).unwrap_err(),
            ClientError::TokenGiven
        );
    }

    #[test]
    fn sign_in_links_carry_china_time() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T16:30:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let callback = Callback::sign_in("1001", at);
        assert_eq!(callback.get("timeStamp"), Some("2026-11-27 00:30:05"));
        let url = callback.url("http://127.0.0.1:8080/", &key());
        assert!(url.starts_with("http://127.0.0.1:8080/v1/cloud/order?action=verify&"));
        assert!(url.contains("timeStamp=2026-11-27%2000%3A30%3A05"));
    }

    #[test]
    fn replies_say_whether_the_service_did_it() {
        let reply = |body: &str| Reply {
            status: 200,
            body: body.to_owned(),
        };
        assert!(reply(r#"{"instanceId":"1001","appInfo":{}}"#).succeeded());
        assert!(!reply(r#"{"instanceId":"0","message":"x"}"#).succeeded());
        assert!(reply(r#"{"success":true,"message":"ok"}"#).succeeded());
        assert!(!reply(r#"{"success":false,"message":"no"}"#).succeeded());
        assert!(!reply("not json").succeeded());
    }
}
