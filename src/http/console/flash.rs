//! The message a form leaves for the page it sends the customer to ("Task t1 now draws from
//! package p2."): a short-lived cookie, signed and bound to the session, read once by the
//! overview. A cookie, not a query parameter, so that nobody can send a customer a link whose
//! page claims a task was destroyed; bound to the session, so that it cannot be carried to
//! another.

use super::customer::Customer;
use super::i18n::Lang;
use super::Console;
use crate::credentials::{self, Credentials};
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::HttpRequest;

pub const COOKIE_NAME: &str = "dts_flash";
/// The message waits this long for the page it goes with: a redirect takes milliseconds, a slow
/// phone on a bad network a few seconds.
const FLASH_S_MAX: i64 = 60;
/// Longest cookie value read: two ids of at most 128 characters, hex-encoded, and a MAC.
const VALUE_CHARS_MAX: usize = 1200;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// A task was moved onto a package (续费).
    Renewed,
    /// A task was destroyed.
    Destroyed,
}

impl Done {
    fn code(self) -> &'static str {
        match self {
            Done::Renewed => "renewed",
            Done::Destroyed => "destroyed",
        }
    }

    fn parse(code: &str) -> Option<Done> {
        match code {
            "renewed" => Some(Done::Renewed),
            "destroyed" => Some(Done::Destroyed),
            _ => None,
        }
    }
}

fn mac(keys: &Credentials, session: &str, done: Done, task: &str, package: &str) -> String {
    keys.sign_flash(&[
        session.as_bytes(),
        done.code().as_bytes(),
        task.as_bytes(),
        package.as_bytes(),
    ])
}

/// The cookie saying `done` happened to `task` (and, for a renewal, onto `package`).
pub(super) fn cookie(
    console: &Console,
    customer: &Customer,
    done: Done,
    task: &str,
    package: &str,
) -> Option<Cookie<'static>> {
    let keys = console.credentials.as_ref()?;
    let signature = mac(keys, customer.session.as_str(), done, task, package);
    let value = format!(
        "{}.{}.{}.{signature}",
        done.code(),
        hex::encode(task),
        hex::encode(package)
    );
    Some(
        console
            .cookie(COOKIE_NAME, value, SameSite::Strict)
            .max_age(CookieDuration::seconds(FLASH_S_MAX))
            .finish(),
    )
}

/// The cookie's removal, sent with the page that showed it.
pub(super) fn removal(console: &Console) -> Cookie<'static> {
    let mut gone = console
        .cookie(COOKIE_NAME, String::new(), SameSite::Strict)
        .finish();
    gone.make_removal();
    gone
}

/// The message of the request's flash cookie, in `lang`, when it is ours and this session's.
pub(super) fn read(
    console: &Console,
    req: &HttpRequest,
    customer: &Customer,
    lang: Lang,
) -> Option<String> {
    let keys = console.credentials.as_ref()?;
    let cookie = req.cookie(COOKIE_NAME)?;
    let value = cookie.value();
    if value.len() > VALUE_CHARS_MAX {
        return None;
    }
    let mut parts = value.split('.');
    let (done, task, package, signature) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let done = Done::parse(done)?;
    let task = String::from_utf8(hex::decode(task).ok()?).ok()?;
    let package = String::from_utf8(hex::decode(package).ok()?).ok()?;
    let expected = mac(keys, customer.session.as_str(), done, &task, &package);
    if !credentials::equal(&expected, signature) {
        return None;
    }
    Some(match done {
        Done::Renewed => lang.tf("renew.done", &[("task", &task), ("package", &package)]),
        Done::Destroyed => lang.tf("destroy.done", &[("task", &task)]),
    })
}
