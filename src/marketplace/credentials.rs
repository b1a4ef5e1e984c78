//! Order credentials (`authCode`), derived rather than stored.
//!
//! `authCode = HMAC-SHA256(secret, "authCode\0" ‖ instanceId)`, truncated to 128 bits: a retried
//! `createInstance` gets the same credential, and neither the ledger nor any table holds it. Once
//! the package's credential was rotated (`OrderCredentialRotated`, generation n ≥ 1), its code is
//! `HMAC-SHA256(secret, "authCode\0" ‖ instanceId ‖ "\0" ‖ n)` (n in decimal), and only the code of
//! the current generation opens anything.

use crate::configuration::Secret;
use hmac::{Hmac, Mac};
use projections::ids::InstanceId;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in an `authCode`: 128 bits cannot be guessed.
const MAC_BYTES: usize = 16;

#[derive(Clone)]
pub struct Credentials {
    secret: Secret,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

impl Credentials {
    /// The configured console secret, or one derived from the marketplace key (so a deployment
    /// with only the ISV key still issues stable credentials). `None` when neither is set.
    pub fn new(console_secret: Option<&Secret>, marketplace_key: Option<&Secret>) -> Option<Self> {
        let secret = match (console_secret, marketplace_key) {
            (Some(secret), _) => secret.clone(),
            (None, Some(key)) => Secret::new(hex::encode(mac(
                key.expose().as_bytes(),
                &[b"dts-ledger console secret v1"],
            ))),
            (None, None) => return None,
        };
        Some(Credentials { secret })
    }

    /// The purchase's credential (generation 0): what every marketplace reply carries.
    pub fn auth_code(&self, instance_id: &InstanceId) -> String {
        self.auth_code_at(instance_id, 0)
    }

    /// The credential of `generation` (0: the purchase's; n: after the n-th rotation).
    pub fn auth_code_at(&self, instance_id: &InstanceId, generation: u32) -> String {
        let key = self.secret.expose().as_bytes();
        let id = instance_id.as_str().as_bytes();
        let mac = match generation {
            0 => mac(key, &[b"authCode\0", id]),
            n => mac(key, &[b"authCode\0", id, b"\0", n.to_string().as_bytes()]),
        };
        hex::encode(&mac[..MAC_BYTES])
    }

    /// Whether `candidate` is the package's credential of its current `generation`.
    pub fn is_auth_code(&self, instance_id: &InstanceId, generation: u32, candidate: &str) -> bool {
        equal(&self.auth_code_at(instance_id, generation), candidate)
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of two tokens.
pub fn equal(expected: &str, candidate: &str) -> bool {
    expected.len() == candidate.len() && bool::from(expected.as_bytes().ct_eq(candidate.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> InstanceId {
        InstanceId::parse(s).unwrap()
    }

    #[test]
    fn auth_codes_are_stable_per_instance_and_secret() {
        let a = Credentials::new(Some(&Secret::new("console-secret-0123456789")), None).unwrap();
        let b = Credentials::new(None, Some(&Secret::new("isv-key"))).unwrap();
        assert_eq!(a.auth_code(&id("x")), a.auth_code(&id("x")));
        assert_eq!(a.auth_code(&id("x")).len(), 32);
        assert_ne!(a.auth_code(&id("x")), a.auth_code(&id("y")));
        assert_ne!(a.auth_code(&id("x")), b.auth_code(&id("x")));
        assert!(a.is_auth_code(&id("x"), 0, &a.auth_code(&id("x"))));
        assert!(!a.is_auth_code(&id("y"), 0, &a.auth_code(&id("x"))));
        // A rotation makes a new code and retires the old one.
        let rotated = a.auth_code_at(&id("x"), 1);
        assert_ne!(rotated, a.auth_code(&id("x")));
        assert!(a.is_auth_code(&id("x"), 1, &rotated));
        assert!(!a.is_auth_code(&id("x"), 1, &a.auth_code(&id("x"))));
        assert!(!a.is_auth_code(&id("x"), 2, &rotated));
        assert!(Credentials::new(None, None).is_none());
    }
}
