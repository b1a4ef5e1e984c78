//! Every value derived from the service's secrets, in one place, below both edges: the order
//! credential (`authCode`) the marketplace's replies carry and the API and the console accept,
//! and the console's MACs (sign-in tickets, session cookies, CSRF tokens, flash messages).
//!
//! One secret roots them all: `[console] secret`, or, when only the ISV key is configured, the
//! ISV key itself through `HMAC(key, "dts-ledger console secret v1")` (so a deployment with the
//! ISV key alone still issues stable credentials). The application builds one [`Credentials`] at
//! start and every part of it uses that one; nothing is stored, so neither the ledger nor any
//! table holds a credential.
//!
//! - `authCode = HMAC-SHA256(secret, "authCode\0" ‖ instanceId)`, its first 128 bits in hex: a
//!   retried `createInstance` gets the same credential. After the package's n-th rotation
//!   (`OrderCredentialRotated`, generation n ≥ 1) it is
//!   `HMAC-SHA256(secret, "authCode\0" ‖ instanceId ‖ "\0" ‖ n)` (n in decimal), and only the
//!   code of the current generation opens anything.
//! - The console's keys, one per purpose, so that a value signed for one use (a ticket) can never
//!   pass as another (a session or a CSRF token): `root = HMAC(secret, ⟨"dts-ledger console
//!   v1"⟩)`, `key(purpose) = HMAC(root, ⟨purpose⟩)`, and a value's MAC is `HMAC(key, ⟨part⟩…)`
//!   cut to 128 bits, where ⟨…⟩ writes each part after its length (8 bytes, big-endian).
//!
//! The two encodings are the ones the values were first issued with (the ISV-key fallback even
//! derives its secret once in each): changing either would change every customer's `authCode`
//! or end every console session, so both stay, side by side in [`mac`], and a test pins the
//! bytes.

pub mod ticket;

use crate::configuration::{Config, Secret};
use hmac::{Hmac, Mac};
use projections::ids::InstanceId;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a MAC kept in an `authCode`, a ticket, a cookie or a token: 128 bits cannot be
/// guessed.
pub const MAC_BYTES: usize = 16;

/// How a MAC's parts are written into it.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    /// One after the other: the `authCode` and the derived secret, whose parts are fixed.
    Concatenated,
    /// Each after its length, so that ("ab", "c") and ("a", "bc") sign differently: the
    /// console's values, whose parts come from outside.
    LengthPrefixed,
}

/// HMAC-SHA256 of `parts` under `key`, written as `encoding` says.
fn mac(key: &[u8], encoding: Encoding, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        if let Encoding::LengthPrefixed = encoding {
            mac.update(&(part.len() as u64).to_be_bytes());
        }
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The console's key for each purpose.
#[derive(Clone)]
struct ConsoleKeys {
    ticket: [u8; 32],
    session: [u8; 32],
    csrf: [u8; 32],
    flash: [u8; 32],
}

/// Every secret-derived value of the service.
#[derive(Clone)]
pub struct Credentials {
    /// Keys the order credentials.
    order: Secret,
    console: ConsoleKeys,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

impl Credentials {
    /// From the configuration's secrets; `None` when neither is set: no credential is issued
    /// then, and nobody can sign in to the console.
    pub fn from_config(config: &Config) -> Option<Credentials> {
        Credentials::new(
            config.console_secret.as_ref(),
            config.marketplace_key.as_ref(),
        )
    }

    /// The console secret, or one derived from the marketplace key. `None` when neither is set.
    pub fn new(
        console_secret: Option<&Secret>,
        marketplace_key: Option<&Secret>,
    ) -> Option<Credentials> {
        const CONSOLE_ROOT: &[u8] = b"dts-ledger console v1";
        let (order, root) = match (console_secret, marketplace_key) {
            (Some(secret), _) => (
                secret.clone(),
                mac(
                    secret.expose().as_bytes(),
                    Encoding::LengthPrefixed,
                    &[CONSOLE_ROOT],
                ),
            ),
            (None, Some(key)) => {
                const DERIVED: &[u8] = b"dts-ledger console secret v1";
                let key = key.expose().as_bytes();
                // As first issued: the order credentials are keyed by the hex of the derived
                // secret written one way, the console's keys by the bytes of it written the
                // other.
                (
                    Secret::new(hex::encode(mac(key, Encoding::Concatenated, &[DERIVED]))),
                    mac(
                        &mac(key, Encoding::LengthPrefixed, &[DERIVED]),
                        Encoding::LengthPrefixed,
                        &[CONSOLE_ROOT],
                    ),
                )
            }
            (None, None) => return None,
        };
        let purpose = |name: &[u8]| mac(&root, Encoding::LengthPrefixed, &[name]);
        Some(Credentials {
            order,
            console: ConsoleKeys {
                ticket: purpose(b"ticket"),
                session: purpose(b"session"),
                csrf: purpose(b"csrf"),
                flash: purpose(b"flash"),
            },
        })
    }

    /// The purchase's credential (generation 0): what every marketplace reply carries.
    pub fn auth_code(&self, instance_id: &InstanceId) -> String {
        self.auth_code_at(instance_id, 0)
    }

    /// The credential of `generation` (0: the purchase's; n: after the n-th rotation).
    pub fn auth_code_at(&self, instance_id: &InstanceId, generation: u32) -> String {
        let key = self.order.expose().as_bytes();
        let id = instance_id.as_str().as_bytes();
        let mac = match generation {
            0 => mac(key, Encoding::Concatenated, &[b"authCode\0", id]),
            n => mac(
                key,
                Encoding::Concatenated,
                &[b"authCode\0", id, b"\0", n.to_string().as_bytes()],
            ),
        };
        hex::encode(&mac[..MAC_BYTES])
    }

    /// Whether `candidate` is the package's credential of its current `generation`.
    pub fn is_auth_code(&self, instance_id: &InstanceId, generation: u32, candidate: &str) -> bool {
        equal(&self.auth_code_at(instance_id, generation), candidate)
    }

    /// The MAC of a console sign-in ticket's parts.
    pub fn sign_ticket(&self, parts: &[&[u8]]) -> String {
        short_mac(&self.console.ticket, parts)
    }

    /// The MAC of a console session cookie's parts.
    pub fn sign_session(&self, parts: &[&[u8]]) -> String {
        short_mac(&self.console.session, parts)
    }

    /// The MAC of a console form's CSRF token parts.
    pub fn sign_csrf(&self, parts: &[&[u8]]) -> String {
        short_mac(&self.console.csrf, parts)
    }

    /// The MAC of a console flash message's parts.
    pub fn sign_flash(&self, parts: &[&[u8]]) -> String {
        short_mac(&self.console.flash, parts)
    }
}

fn short_mac(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(&mac(key, Encoding::LengthPrefixed, parts)[..MAC_BYTES])
}

/// Constant-time equality of two tokens.
pub fn equal(expected: &str, candidate: &str) -> bool {
    expected.len() == candidate.len() && bool::from(expected.as_bytes().ct_eq(candidate.as_bytes()))
}

/// `n` random bytes as lowercase hex: nonces, session ids.
pub fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
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

    /// The values as first issued: a change of derivation would change every customer's
    /// `authCode` and end every console session, so the bytes are pinned.
    #[test]
    fn every_derivation_keeps_the_bytes_it_was_first_issued_with() {
        let configured = Credentials::new(Some(&Secret::new("console-secret-0123456789")), None)
            .expect("a console secret");
        let derived = Credentials::new(None, Some(&Secret::new("isv-key"))).expect("an ISV key");
        let pinned = [
            configured.auth_code(&id("dts-1")),
            configured.auth_code_at(&id("dts-1"), 3),
            configured.sign_ticket(&[b"a", b"b"]),
            configured.sign_session(&[b"a"]),
            configured.sign_csrf(&[b"a"]),
            configured.sign_flash(&[b"a"]),
            derived.auth_code(&id("dts-1")),
            derived.sign_session(&[b"a"]),
        ];
        assert_eq!(pinned, PINNED.map(str::to_owned));
    }

    const PINNED: [&str; 8] = [
        "4c50e97b5ba2091439d9f414fa644bb5",
        "bef031d24bf8eae9ff39b14ceff62474",
        "7aebc50191ae8921d378e8962cfb2210",
        "135f6641bfdfbe2fdd96aa7a3e782ec0",
        "6ae7dd41c7945b13a6b9b4604f83129c",
        "b85bcf84f362c9d50befca466adc5fd7",
        "f946f962024713b149e4ac2ff9b98738",
        "ac3d7ea9a4d76f30c990a7d15786ee9d",
    ];
}
