//! Console sessions: a random id in a signed, HttpOnly cookie; the database keeps a hash of the
//! id, the customer (`jdPin`) and two ends, so every `serve` process sees the same sessions, a
//! use renews one and a logout ends it everywhere. The sliding end (`expires_at`) moves with every
//! use; the absolute one (`ends_at`) never does, and the sliding one never passes it.

use crate::credentials::{equal, random_hex, Credentials};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use projections::ids::{InstanceId, JdPin};
use sha2::{Digest, Sha256};

pub const COOKIE_NAME: &str = "dts_console";
/// Bytes of randomness in a session id: 128 bits cannot be guessed.
const SESSION_ID_BYTES: usize = 16;
/// Longest cookie value looked at: an id and a MAC, both hex, and a dot.
const COOKIE_BYTES_MAX: usize = 2 * SESSION_ID_BYTES + 1 + 2 * crate::credentials::MAC_BYTES;

/// A session id, as proven by its cookie's signature (not yet known to be open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn new() -> SessionId {
        SessionId(random_hex(SESSION_ID_BYTES))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database keeps of the id: its SHA-256.
    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }
}

impl Default for SessionId {
    fn default() -> Self {
        SessionId::new()
    }
}

pub fn cookie_value(keys: &Credentials, id: &SessionId) -> String {
    format!("{}.{}", id.0, keys.sign_session(&[id.0.as_bytes()]))
}

/// The session id of a cookie value, when we signed it.
pub fn parse_cookie(keys: &Credentials, value: &str) -> Option<SessionId> {
    if value.len() > COOKIE_BYTES_MAX {
        return None;
    }
    let (id, mac) = value.split_once('.')?;
    equal(&keys.sign_session(&[id.as_bytes()]), mac).then(|| SessionId(id.to_owned()))
}

/// Who a session is for, and the package whose credential or sign-in link opened it.
#[derive(Debug, Clone, Copy)]
pub struct SignedIn<'a> {
    pub jd_pin: &'a JdPin,
    pub with: &'a InstanceId,
}

/// Opens a session until `expires_at`, renewable until `ends_at`.
pub async fn open(
    client: &impl GenericClient,
    id: &SessionId,
    signed_in: SignedIn<'_>,
    expires_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    // Closed-by-expiry sessions are forgotten as new ones open, so the table stays small.
    client
        .execute("DELETE FROM console_sessions WHERE expires_at < now()", &[])
        .await?;
    client
        .execute(
            "INSERT INTO console_sessions (id_hash, jd_pin, expires_at, ends_at, signed_in_with)
             VALUES ($1, $2, least($3::timestamptz, $4::timestamptz), $4, $5)",
            &[
                &id.hash(),
                &signed_in.jd_pin.as_str(),
                &expires_at,
                &ends_at,
                &signed_in.with.as_str(),
            ],
        )
        .await
        .map(drop)
}

/// An open session's customer, and when the session ends now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub jd_pin: JdPin,
    pub expires_at: DateTime<Utc>,
}

/// The customer of an open session, whose expiry moves to `expires_at` (renewed while used) or
/// to its absolute end, whichever comes first; `None` when the session is unknown, ended or
/// expired.
pub async fn touch(
    client: &impl GenericClient,
    id: &SessionId,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<Option<Open>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "UPDATE console_sessions SET expires_at = least($3, ends_at)
              WHERE id_hash = $1 AND expires_at > $2 RETURNING jd_pin, expires_at",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&id.hash(), &now, &expires_at])
        .await?;
    Ok(row.and_then(|row| {
        Some(Open {
            jd_pin: JdPin::parse(row.get::<_, String>(0)).ok()?,
            expires_at: row.get(1),
        })
    }))
}

/// Ends a session (logout).
pub async fn close(
    client: &impl GenericClient,
    id: &SessionId,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM console_sessions WHERE id_hash = $1",
            &[&id.hash()],
        )
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Secret;

    #[test]
    fn only_signed_cookies_name_a_session() {
        let k = Credentials::new(Some(&Secret::new("console-secret-0123456789")), None).unwrap();
        let id = SessionId::new();
        let value = cookie_value(&k, &id);
        assert_eq!(parse_cookie(&k, &value), Some(id.clone()));
        assert_ne!(SessionId::new(), id);
        let other =
            Credentials::new(Some(&Secret::new("another-secret-0123456789")), None).unwrap();
        assert_eq!(parse_cookie(&other, &value), None);
        let (raw, mac) = value.split_once('.').unwrap();
        let guessed = format!("{}0.{mac}", &raw[1..]);
        assert_eq!(parse_cookie(&k, &guessed), None);
        assert_eq!(parse_cookie(&k, raw), None);
        assert_eq!(parse_cookie(&k, &format!("{value}0")), None);
    }
}
