//! CSRF tokens: a MAC of the session id, so every form of a session carries the same token and
//! no other session's (nor a forger's) token passes. `SameSite=Strict` cookies already keep
//! cross-site posts out; the token holds even where a browser ignores `SameSite`.

use super::keys::{equal, Keys};

pub fn token(keys: &Keys, session_id: &str) -> String {
    keys.sign_csrf(&[session_id.as_bytes()])
}

pub fn check(keys: &Keys, session_id: &str, candidate: &str) -> bool {
    equal(&token(keys, session_id), candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Secret;

    #[test]
    fn a_token_belongs_to_one_session_and_one_secret() {
        let k = Keys::from_secret(&Secret::new("console-secret-0123456789"));
        let t = token(&k, "session-a");
        assert!(check(&k, "session-a", &t));
        assert!(!check(&k, "session-b", &t));
        assert!(!check(&k, "session-a", ""));
        assert!(!check(&k, "session-a", &t[1..]));
        let other = Keys::from_secret(&Secret::new("another-secret-0123456789"));
        assert!(!check(&other, "session-a", &t));
    }
}
