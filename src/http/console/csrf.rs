//! CSRF defences. A signed-in form carries a MAC of the session id, so every form of a session
//! carries the same token and no other session's (nor a forger's) token passes. The sign-in form,
//! before any session, carries a MAC of a random value its own cookie holds (`dts_login`): the
//! token passes only with that cookie, which no other site can read or send (`SameSite=Strict`).
//! And every post must not come from another site as far as the browser says (`Sec-Fetch-Site`,
//! else `Origin`), which also holds where a browser ignores `SameSite` or a sibling host could
//! set cookies for ours.

use crate::credentials::{equal, random_hex, Credentials};
use actix_web::http::header::{self, HeaderName};
use actix_web::HttpRequest;

/// The sign-in form's own cookie.
pub const LOGIN_COOKIE: &str = "dts_login";
/// Bytes of randomness in the sign-in cookie: 128 bits cannot be guessed.
const LOGIN_NONCE_BYTES: usize = 16;

pub fn token(keys: &Credentials, session_id: &str) -> String {
    keys.sign_csrf(&[session_id.as_bytes()])
}

pub fn check(keys: &Credentials, session_id: &str, candidate: &str) -> bool {
    equal(&token(keys, session_id), candidate)
}

/// A new value for the sign-in form's cookie.
pub fn login_nonce() -> String {
    random_hex(LOGIN_NONCE_BYTES)
}

/// Whether a cookie value is one [`login_nonce`] could have made (anything else is replaced).
pub fn is_login_nonce(value: &str) -> bool {
    value.len() == 2 * LOGIN_NONCE_BYTES && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The sign-in form's token for the nonce in its cookie. Two parts, so it never equals a
/// session's token (one part).
pub fn login_token(keys: &Credentials, nonce: &str) -> String {
    keys.sign_csrf(&[b"login", nonce.as_bytes()])
}

pub fn check_login(keys: &Credentials, nonce: &str, candidate: &str) -> bool {
    is_login_nonce(nonce) && equal(&login_token(keys, nonce), candidate)
}

/// Whether a post may have come from our own page, by what the browser says of it. Browsers
/// send `Sec-Fetch-Site`: only `same-origin` (one of our pages) and `none` (typed or bookmarked)
/// pass; `same-site` does not, since another host of the site is not ours. Older browsers send
/// `Origin` on posts: it must be `public_url`'s origin or the host the request was sent to
/// (`"null"`, an opaque origin, never is). A client that sends neither (not a browser, so not a
/// victim of a forged post) passes, and the tokens still apply.
pub fn same_origin(req: &HttpRequest, public_origin: &str) -> bool {
    let headers = req.headers();
    let text = |name: &HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    if let Some(site) = text(&HeaderName::from_static("sec-fetch-site")) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = text(&header::ORIGIN) else {
        return true;
    };
    if origin == public_origin {
        return true;
    }
    let host = text(&header::HOST).unwrap_or("");
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    !host.is_empty() && authority == Some(host)
}

/// The origin (`scheme://host[:port]`) of a base URL.
pub fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            format!("{scheme}://{authority}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Secret;
    use actix_web::test::TestRequest;

    #[test]
    fn a_token_belongs_to_one_session_and_one_secret() {
        let k = Credentials::new(Some(&Secret::new("console-secret-0123456789")), None).unwrap();
        let t = token(&k, "session-a");
        assert!(check(&k, "session-a", &t));
        assert!(!check(&k, "session-b", &t));
        assert!(!check(&k, "session-a", ""));
        assert!(!check(&k, "session-a", &t[1..]));
        let other =
            Credentials::new(Some(&Secret::new("another-secret-0123456789")), None).unwrap();
        assert!(!check(&other, "session-a", &t));
    }

    #[test]
    fn a_sign_in_token_passes_only_with_its_cookie() {
        let k = Credentials::new(Some(&Secret::new("console-secret-0123456789")), None).unwrap();
        let (nonce, other) = (login_nonce(), login_nonce());
        let t = login_token(&k, &nonce);
        assert!(check_login(&k, &nonce, &t));
        assert!(!check_login(&k, &other, &t));
        assert!(!check_login(&k, "", &login_token(&k, "")));
        assert!(!check(&k, &nonce, &t), "not a session's token");
    }

    #[test]
    fn only_our_own_pages_may_post() {
        let ours = "https://dts.example.com";
        let post = |headers: &[(&str, &str)]| {
            let mut req = TestRequest::post().insert_header(("host", "dts.internal:8080"));
            for (name, value) in headers {
                req = req.insert_header((*name, *value));
            }
            same_origin(&req.to_http_request(), ours)
        };
        assert!(post(&[]));
        assert!(post(&[("sec-fetch-site", "same-origin")]));
        assert!(post(&[("sec-fetch-site", "none")]));
        assert!(!post(&[("sec-fetch-site", "same-site")]));
        assert!(!post(&[("sec-fetch-site", "cross-site"), ("origin", ours)]));
        assert!(post(&[("origin", ours)]));
        assert!(post(&[("origin", "http://dts.internal:8080")]));
        assert!(!post(&[("origin", "https://evil.example")]));
        assert!(!post(&[("origin", "https://dts.example.com.evil.example")]));
        assert!(!post(&[("origin", "null")]));
        assert_eq!(origin_of("https://dts.example.com/base?x"), ours);
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
