//! Sign-in tickets: what the marketplace's login-free link (`verify`) hands the browser.
//!
//! `<instance id, hex>.<expiry, unix s>.<nonce>.<MAC>`. The MAC proves we issued it; the expiry
//! keeps it short-lived; the nonce, recorded when the ticket is exchanged, makes it single-use
//! across every `serve` process sharing the database.
//!
//! The link itself is single-use too: a `verify` that earns a ticket records a digest of what it
//! signs ([`link_digest`]), and the same link again, in any process, earns nothing.

use super::keys::{equal, random_hex, Keys};
use crate::configuration::Config;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use projections::ids::InstanceId;
use projections::PackageStatus;
use sha2::{Digest, Sha256};

/// How long a ticket may wait to be exchanged. The browser follows the redirect at once; 60 s
/// absorbs a slow phone network and some clock skew between processes, and is too short for a
/// ticket copied out of a log or a screenshot to be of use.
pub const TICKET_TTL_S: i64 = 60;
/// Bytes of randomness in a nonce: 128 bits never collide by chance.
const NONCE_BYTES: usize = 16;
/// Longest ticket accepted: an instance id (at most [`projections::ids::ID_BYTES_MAX`] bytes, as hex) and three
/// short parts.
pub const TICKET_BYTES_MAX: usize = 2 * projections::ids::ID_BYTES_MAX + 64 + 32 + 32 + 3;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is malformed")]
    Malformed,
    #[error("the ticket's signature is wrong")]
    Forged,
    #[error("the ticket has expired")]
    Expired,
    #[error("the ticket was used already")]
    Used,
    #[error("the ticket's package was released")]
    Released,
}

/// A ticket whose signature and expiry hold; not yet known to be unused.
#[derive(Debug)]
pub struct Opened {
    pub instance_id: InstanceId,
    pub nonce: String,
    pub expires_at: DateTime<Utc>,
}

pub fn issue(keys: &Keys, instance_id: &InstanceId, now: DateTime<Utc>) -> String {
    let id = hex::encode(instance_id.as_str());
    let expiry = (now.timestamp() + TICKET_TTL_S).to_string();
    let nonce = random_hex(NONCE_BYTES);
    let mac = keys.sign_ticket(&[id.as_bytes(), expiry.as_bytes(), nonce.as_bytes()]);
    format!("{id}.{expiry}.{nonce}.{mac}")
}

pub fn open(keys: &Keys, ticket: &str, now: DateTime<Utc>) -> Result<Opened, TicketError> {
    if ticket.len() > TICKET_BYTES_MAX {
        return Err(TicketError::Malformed);
    }
    let parts: Vec<&str> = ticket.split('.').collect();
    let [id, expiry, nonce, mac] = parts[..] else {
        return Err(TicketError::Malformed);
    };
    let expected = keys.sign_ticket(&[id.as_bytes(), expiry.as_bytes(), nonce.as_bytes()]);
    if !equal(&expected, mac) {
        return Err(TicketError::Forged);
    }
    let expiry: i64 = expiry.parse().map_err(|_| TicketError::Malformed)?;
    if now.timestamp() >= expiry {
        return Err(TicketError::Expired);
    }
    let id = hex::decode(id).map_err(|_| TicketError::Malformed)?;
    let id = String::from_utf8(id).map_err(|_| TicketError::Malformed)?;
    Ok(Opened {
        instance_id: InstanceId::parse(id).map_err(|_| TicketError::Malformed)?,
        nonce: nonce.to_owned(),
        expires_at: DateTime::from_timestamp(expiry, 0).ok_or(TicketError::Malformed)?,
    })
}

/// Records the ticket's nonce as used; `Err(Used)` when some process did so before.
pub async fn consume(
    client: &impl GenericClient,
    opened: &Opened,
) -> Result<Result<(), TicketError>, tokio_postgres::Error> {
    // Forgetting used nonces once their tickets expired keeps the table small; an expired ticket
    // is refused by its expiry anyway.
    client
        .execute(
            "DELETE FROM console_tickets_used WHERE expires_at < now() - interval '1 minute'",
            &[],
        )
        .await?;
    let inserted = client
        .execute(
            "INSERT INTO console_tickets_used (nonce, expires_at) VALUES ($1, $2)
             ON CONFLICT (nonce) DO NOTHING",
            &[&opened.nonce, &opened.expires_at],
        )
        .await?;
    Ok(if inserted == 1 {
        Ok(())
    } else {
        Err(TicketError::Used)
    })
}

/// The login-free sign-in link for `instance_id`: a fresh ticket on the console's exchange
/// route. `None` when no secret is configured.
pub fn sign_in_url(
    config: &Config,
    public_url: &str,
    instance_id: &InstanceId,
    now: DateTime<Utc>,
) -> Option<String> {
    let keys = Keys::from_config(config)?;
    Some(format!(
        "{public_url}/console/enter?ticket={}",
        issue(&keys, instance_id, now)
    ))
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
    public_url: &str,
    instance_id: &InstanceId,
    time_stamp: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<LinkSignIn, tokio_postgres::Error> {
    if Keys::from_config(config).is_none() {
        return Ok(LinkSignIn::NotConfigured);
    }
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
    Ok(sign_in_url(config, public_url, instance_id, now)
        .map_or(LinkSignIn::NotConfigured, LinkSignIn::Ticket))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Secret;

    fn keys(secret: &str) -> Keys {
        Keys::from_secret(&Secret::new(secret))
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn a_ticket_opens_within_its_lifetime_only() {
        let k = keys("console-secret-0123456789");
        let id = InstanceId::parse("biz-1").unwrap();
        let ticket = issue(&k, &id, at(1_800_000_000));
        let opened = open(&k, &ticket, at(1_800_000_000 + TICKET_TTL_S - 1)).unwrap();
        assert_eq!(opened.instance_id, id);
        assert_eq!(opened.nonce.len(), 2 * NONCE_BYTES);
        assert_eq!(
            open(&k, &ticket, at(1_800_000_000 + TICKET_TTL_S)).unwrap_err(),
            TicketError::Expired
        );
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

    #[test]
    fn a_ticket_cannot_be_forged_or_altered() {
        let k = keys("console-secret-0123456789");
        let id = InstanceId::parse("biz-1").unwrap();
        let now = at(1_800_000_000);
        let ticket = issue(&k, &id, now);
        let other = keys("another-secret-0123456789");
        assert_eq!(open(&other, &ticket, now).unwrap_err(), TicketError::Forged);
        let later = ticket.replacen("1800000060", "1900000060", 1);
        assert_eq!(open(&k, &later, now).unwrap_err(), TicketError::Forged);
        let mut parts: Vec<&str> = ticket.split('.').collect();
        let victim = hex::encode("biz-2");
        parts[0] = &victim;
        assert_eq!(
            open(&k, &parts.join("."), now).unwrap_err(),
            TicketError::Forged
        );
        assert_eq!(open(&k, "a.b.c", now).unwrap_err(), TicketError::Malformed);
        assert_eq!(
            open(&k, &"x".repeat(TICKET_BYTES_MAX + 1), now).unwrap_err(),
            TicketError::Malformed
        );
        assert_ne!(issue(&k, &id, now), issue(&k, &id, now), "nonces differ");
    }
}
