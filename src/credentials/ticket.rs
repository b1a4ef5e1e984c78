//! Sign-in tickets: what the marketplace's login-free link (`verify`) hands the browser, and the
//! console exchanges for a session.
//!
//! `<instance id, hex>.<expiry, unix s>.<nonce>.<MAC>`. The MAC proves we issued it; the expiry
//! keeps it short-lived; the nonce, recorded when the ticket is exchanged, makes it single-use
//! across every `serve` process sharing the database.

use super::{equal, random_hex, Credentials};
use chrono::{DateTime, Utc};
use projections::ids::InstanceId;

/// How long a ticket may wait to be exchanged. The browser follows the redirect at once; 60 s
/// absorbs a slow phone network and some clock skew between processes, and is too short for a
/// ticket copied out of a log or a screenshot to be of use.
pub const TICKET_TTL_S: i64 = 60;
/// Bytes of randomness in a nonce: 128 bits never collide by chance.
const NONCE_BYTES: usize = 16;
/// Longest ticket accepted: an instance id (at most [`projections::ids::ID_BYTES_MAX`] bytes, as
/// hex) and three short parts.
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

pub fn issue(credentials: &Credentials, instance_id: &InstanceId, now: DateTime<Utc>) -> String {
    let id = hex::encode(instance_id.as_str());
    let expiry = (now.timestamp() + TICKET_TTL_S).to_string();
    let nonce = random_hex(NONCE_BYTES);
    let mac = credentials.sign_ticket(&[id.as_bytes(), expiry.as_bytes(), nonce.as_bytes()]);
    format!("{id}.{expiry}.{nonce}.{mac}")
}

pub fn open(
    credentials: &Credentials,
    ticket: &str,
    now: DateTime<Utc>,
) -> Result<Opened, TicketError> {
    if ticket.len() > TICKET_BYTES_MAX {
        return Err(TicketError::Malformed);
    }
    let parts: Vec<&str> = ticket.split('.').collect();
    let [id, expiry, nonce, mac] = parts[..] else {
        return Err(TicketError::Malformed);
    };
    let expected = credentials.sign_ticket(&[id.as_bytes(), expiry.as_bytes(), nonce.as_bytes()]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Secret;

    fn keys(secret: &str) -> Credentials {
        Credentials::new(Some(&Secret::new(secret)), None).expect("a console secret")
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
