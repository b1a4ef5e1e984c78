//! The console's signing keys, each derived from the console secret for one purpose, so a value
//! signed for one use (a ticket) can never pass as another (a session or a CSRF token).

use crate::configuration::{Config, Secret};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a MAC kept in a ticket, cookie or token: 128 bits cannot be guessed.
pub const MAC_BYTES: usize = 16;

#[derive(Clone)]
pub struct Keys {
    ticket: [u8; 32],
    session: [u8; 32],
    csrf: [u8; 32],
    flash: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

impl Keys {
    /// From `[console] secret`, else from the marketplace key (as order credentials are);
    /// `None` when neither is set: nobody can sign in then.
    pub fn from_config(config: &Config) -> Option<Keys> {
        let root = match (&config.console_secret, &config.marketplace_key) {
            (Some(secret), _) => mac(secret.expose().as_bytes(), &[b"dts-ledger console v1"]),
            (None, Some(key)) => mac(
                &mac(key.expose().as_bytes(), &[b"dts-ledger console secret v1"]),
                &[b"dts-ledger console v1"],
            ),
            (None, None) => return None,
        };
        Some(Keys::from_root(&root))
    }

    pub fn from_secret(secret: &Secret) -> Keys {
        Keys::from_root(&mac(
            secret.expose().as_bytes(),
            &[b"dts-ledger console v1"],
        ))
    }

    fn from_root(root: &[u8]) -> Keys {
        Keys {
            ticket: mac(root, &[b"ticket"]),
            session: mac(root, &[b"session"]),
            csrf: mac(root, &[b"csrf"]),
            flash: mac(root, &[b"flash"]),
        }
    }

    pub fn sign_ticket(&self, parts: &[&[u8]]) -> String {
        short_mac(&self.ticket, parts)
    }

    pub fn sign_session(&self, parts: &[&[u8]]) -> String {
        short_mac(&self.session, parts)
    }

    pub fn sign_csrf(&self, parts: &[&[u8]]) -> String {
        short_mac(&self.csrf, parts)
    }

    pub fn sign_flash(&self, parts: &[&[u8]]) -> String {
        short_mac(&self.flash, parts)
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        // Length-prefixed, so that ("ab", "c") and ("a", "bc") sign differently.
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn short_mac(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(&mac(key, parts)[..MAC_BYTES])
}

/// Constant-time equality of two tokens.
pub fn equal(expected: &str, candidate: &str) -> bool {
    expected.len() == candidate.len() && bool::from(expected.as_bytes().ct_eq(candidate.as_bytes()))
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}
