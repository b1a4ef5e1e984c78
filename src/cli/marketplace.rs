//! `dts-ledger marketplace`: the marketplace's side of the callback, for operators and newcomers:
//! sign parameters exactly as the marketplace does and send them to a running service; and
//! `dts-ledger marketplace refused`, the callbacks this service refused after their token held.
//!
//! It is the same token rule the service checks ([`crate::marketplace::token`]), applied to the
//! same decoded bytes, so a callback that this module signs is one the marketplace could have sent.
//! Operators use it to re-drive a callback by hand (after fixing the SKU catalog, say); newcomers
//! use it to buy a package on their own machine.

use super::output::{self, client, CannotRun, ListFormat, Listing};
use super::{Invocation, Run};
use crate::configuration::{Config, Secret};
use crate::database::Role;
use crate::ledger::orders::LIST_LIMIT_MAX;
use crate::marketplace::params::{format_cst, Action};
use crate::marketplace::query::Pairs;
use crate::marketplace::{refusals, token};
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use deadpool_postgres::Pool;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Sign a marketplace callback as the marketplace does (with the configured key), send it to a
/// running service and print the reply; `verify` prints a console sign-in link instead;
/// `refused` lists the callbacks refused and not resolved since.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Marketplace {
    #[command(subcommand)]
    list: Option<MarketplaceList>,
    /// createInstance, renewInstance, upgradeInstance, dilateInstance, expiredInstance,
    /// releaseInstance or verify.
    #[arg(required = true)]
    action: Option<String>,
    /// A callback parameter, e.g. --param skuId=FW_GOODS-500232-1 (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Shorthand for --param instanceId=ID.
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    /// The running service.
    #[arg(long, env = "LEDGER_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

#[derive(Debug, Subcommand)]
enum MarketplaceList {
    /// Callbacks refused after their token held and not resolved by a later success (a paid
    /// order not provisioned yet, say), oldest first.
    Refused {
        #[command(flatten)]
        listing: Listing,
    },
}

impl Run for Marketplace {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        match self.list {
            Some(MarketplaceList::Refused { listing }) => {
                let settings = cli.database(&config)?;
                cli.on_database(&settings, Role::Reader, async |pool| {
                    refused(pool, listing).await
                })
                .await
            }
            None => sign_and_send(self, &config).await,
        }
    }
}

/// `dts-ledger marketplace ACTION`: exit 0 when the service did it, 1 when it refused, 2 when it
/// could not be asked.
async fn sign_and_send(args: Marketplace, config: &Config) -> anyhow::Result<ExitCode> {
    let key = config.marketplace_key.as_ref().context(
        "no marketplace key to sign with: set [marketplace] key in the --config file (or \
         LEDGER_MARKETPLACE_KEY); `dts-ledger init` writes a configuration with one",
    )?;
    let action = args.action.context("a marketplace action is required")?;
    if action == "verify" {
        let instance = args
            .instance
            .as_deref()
            .context("verify needs --instance ID")?;
        let link = Callback::sign_in(instance, chrono::Utc::now()).url(&args.url, key);
        println!("{link}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut callback = Callback::parse(&action, &args.params)?;
    if let Some(instance) = &args.instance {
        callback.set("instanceId", instance)?;
    }
    // The error names the service, never the signed URL (see [`send`]).
    let reply = send(&callback, &args.url, key)
        .await
        .with_context(|| format!("cannot reach the service at {}", args.url))?;
    eprintln!("{} answered {}", callback.action(), reply.status);
    println!("{}", reply.body);
    Ok(if reply.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(output::FAILED)
    })
}

/// `dts-ledger marketplace refused`.
pub async fn refused(pool: &Pool, listing: Listing) -> Result<ExitCode, CannotRun> {
    let limit = listing.limit(LIST_LIMIT_MAX)?;
    let client = client(pool).await?;
    let (refused, total) = refusals::unresolved(&client, limit).await?;
    let mut out = std::io::stdout().lock();
    match listing.format {
        ListFormat::Json => {
            let page = crate::http::api::orders::RefusedPage { refused, total };
            writeln!(out, "{}", serde_json::to_string_pretty(&page)?)?;
        }
        ListFormat::Table => {
            writeln!(
                out,
                "{:<16}  {:<24}  {:<18}  {:>6}  {:>6}  {:<20}  {:<20}  message",
                "action", "subject", "reason", "status", "calls", "first", "last"
            )?;
            for r in &refused {
                writeln!(
                    out,
                    "{:<16}  {:<24}  {:<18}  {:>6}  {:>6}  {:<20}  {:<20}  {}",
                    r.action,
                    r.subject,
                    r.reason,
                    r.status,
                    r.calls,
                    r.first_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    r.last_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    r.message,
                )?;
            }
            if total > refused.len() as i64 {
                writeln!(out, "... {} more (--limit)", total - refused.len() as i64)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

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
    #[error("unknown action {0:?}: use one of {actions}", actions = Action::ALL.map(Action::name).join(", "))]
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
        if Action::parse(action.as_bytes()).is_none() {
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
                ("timeStamp".to_owned(), format_cst(now)),
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
            ClientError::UnknownAction("buyInstance".into()).to_string(),
            "unknown action \"buyInstance\": use one of createInstance, renewInstance, \
             upgradeInstance, dilateInstance, expiredInstance, releaseInstance, verify"
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
