//! The login-free sign-in of a `verify` link: a fresh ticket on the console's exchange route,
//! once per link.
//!
//! The link itself is single-use: a `verify` that earns a ticket records a digest of what it
//! signs ([`link_digest`]), and the same link again, in any process, earns nothing.

use crate::configuration::Config;
use crate::credentials::{ticket, Credentials};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use projections::ids::InstanceId;
use projections::PackageStatus;
use sha2::{Digest, Sha256};

/// The login-free sign-in link for `instance_id`: a fresh ticket on the console's exchange
/// route.
fn sign_in_url(
    credentials: &Credentials,
    public_url: &str,
    instance_id: &InstanceId,
    now: DateTime<Utc>,
) -> String {
    format!(
        "{public_url}/console/enter?ticket={}",
        ticket::issue(credentials, instance_id, now)
    )
}

/// How much longer than its window a used link is remembered: a process whose clock runs that
/// far behind the database's still finds the link it would take for fresh.
const LINK_MEMORY_MARGIN_S: i64 = 300;

/// What a `verify` link signs that matters: its package and its time. Any two links with the same
/// two are the same sign-in, whatever else they carry or however they are encoded (their token
/// and other parameters cannot differ without the ISV key), so this is the key a link is spent
/// under. Never the token: a copy of the table opens nothing.
pub fn link_digest(instance_id: &InstanceId, time_stamp: DateTime<Utc>) -> Vec<u8> {
    let mut digest = Sha256::new();
    for part in [
        &b"dts-ledger verify link v1"[..],
        instance_id.as_str().as_bytes(),
        &time_stamp.timestamp().to_be_bytes(),
    ] {
        // Length-prefixed, so that no two sets of parts hash alike.
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    digest.finalize().to_vec()
}

/// What a `verify` link whose token and time were checked leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkSignIn {
    /// The sign-in URL with a fresh ticket: the link is spent.
    Ticket(String),
    UnknownPackage,
    /// A released package signs no one in.
    Released,
    /// This link signed someone in already.
    Used,
    /// No secret to sign tickets with.
    NotConfigured,
    /// The package's row does not read (a bug, logged): nobody is signed in on it.
    Unreadable,
}

/// The login-free sign-in of a `verify` link (`instance_id`, `time_stamp`) that passed its token
/// and window checks, `window_s` wide: spends the link, once, in every process.
pub async fn sign_in_by_link(
    client: &impl GenericClient,
    config: &Config,
    credentials: Option<&Credentials>,
    public_url: &str,
    instance_id: &InstanceId,
    time_stamp: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<LinkSignIn, tokio_postgres::Error> {
    let Some(credentials) = credentials else {
        return Ok(LinkSignIn::NotConfigured);
    };
    let found = crate::ledger::rows::read_packages(client, &[instance_id.as_str()]).await?;
    let Some(row) = found.first() else {
        return Ok(LinkSignIn::UnknownPackage);
    };
    match crate::ledger::rows::package_from_row(row) {
        Ok(package) if package.status == PackageStatus::Released => {
            return Ok(LinkSignIn::Released)
        }
        Ok(_) => {}
        Err(error) => {
            tracing::error!(%error, "sign-in refused: the package's row does not read");
            return Ok(LinkSignIn::Unreadable);
        }
    }
    // Links forgotten once their window is over (plus a margin) are refused by their age anyway.
    client
        .execute(
            "DELETE FROM console_links_used WHERE expires_at < now()",
            &[],
        )
        .await?;
    let remembered_until = time_stamp
        + chrono::Duration::seconds(config.verify_window_s as i64 + LINK_MEMORY_MARGIN_S);
    let spent = client
        .execute(
            "INSERT INTO console_links_used (digest, expires_at) VALUES ($1, $2)
             ON CONFLICT (digest) DO NOTHING",
            &[&link_digest(instance_id, time_stamp), &remembered_until],
        )
        .await?;
    if spent == 0 {
        return Ok(LinkSignIn::Used);
    }
    Ok(LinkSignIn::Ticket(sign_in_url(
        credentials,
        public_url,
        instance_id,
        now,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn a_link_is_known_by_its_package_and_its_second() {
        let id = InstanceId::parse("biz-1").unwrap();
        let other = InstanceId::parse("biz-10").unwrap();
        let digest = link_digest(&id, at(1_800_000_000));
        assert_eq!(digest, link_digest(&id, at(1_800_000_000)));
        assert_ne!(digest, link_digest(&id, at(1_800_000_001)));
        assert_ne!(digest, link_digest(&other, at(1_800_000_000)));
        assert_eq!(digest.len(), 32);
    }
}
