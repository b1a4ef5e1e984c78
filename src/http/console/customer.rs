//! Who is signed in: the session a sign-in opens, the customer a request's session cookie names
//! (the session renewed on every page), the things that are theirs (a package, a task), and how
//! a signed-in page answers, a refusal included.

use super::error::PageResult;
use super::error::{db_error, html_response, pool_error, refusal, unavailable, PageError};
use super::i18n::{lang_of, Lang};
use super::pages::SignedIn;
use super::session::{self, SessionId};
use super::{csrf, Console};
use crate::credentials::Credentials;
use crate::http::state::RequestId;
use crate::ledger::{rows, CommandError};
use crate::store::Metadata;
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use projections::ids::{JdPin, TaskId};
use projections::{Package, Task};

/// A signed-in customer, with the session that proves it.
pub struct Customer {
    pub jd_pin: JdPin,
    pub session: SessionId,
    /// When the session ends, as renewed by this request.
    pub expires_at: DateTime<Utc>,
    pub csrf: String,
}

impl Customer {
    pub fn who(&self) -> SignedIn<'_> {
        SignedIn {
            jd_pin: self.jd_pin.as_str(),
            csrf: &self.csrf,
        }
    }
}

/// The session cookie, kept by the browser until `expires_at` (the session's end as the
/// database has it), in whole seconds rounded up.
pub fn session_cookie(
    console: &Console,
    value: String,
    expires_at: DateTime<Utc>,
) -> Cookie<'static> {
    let left_ms = (expires_at - Utc::now()).num_milliseconds().max(0);
    console
        .cookie(session::COOKIE_NAME, value, SameSite::Strict)
        .max_age(CookieDuration::seconds((left_ms + 999) / 1000))
        .finish()
}

/// Opens a session for the customer of `package`, whose credential or sign-in link opened it (a
/// rotation of that credential ends it), and sends the browser to `next` (a console page the
/// customer was on when their session ended) or the overview, at a clean URL.
pub async fn open_session(
    console: &Console,
    client: &impl GenericClient,
    keys: &Credentials,
    package: &Package,
    next: &str,
    lang: Lang,
) -> PageResult {
    let id = SessionId::new();
    let now = Utc::now();
    let (expires_at, ends_at) = (now + console.ttl(), now + console.lifetime_max());
    let signed_in = session::SignedIn {
        jd_pin: &package.jd_pin,
        with: &package.instance_id,
    };
    session::open(client, &id, signed_in, expires_at, ends_at)
        .await
        .map_err(db_error(lang))?;
    let value = session::cookie_value(keys, &id);
    Ok(see_other(return_path(next).unwrap_or("/console"))
        .cookie(session_cookie(console, value, expires_at.min(ends_at)))
        .finish())
}

/// The customer of the request's session cookie (and the session renewed), if any.
pub async fn customer(
    console: &Console,
    req: &HttpRequest,
    client: &impl GenericClient,
    lang: Lang,
) -> Result<Option<Customer>, PageError> {
    let (Some(keys), Some(cookie)) = (&console.credentials, req.cookie(session::COOKIE_NAME))
    else {
        return Ok(None);
    };
    let Some(id) = session::parse_cookie(keys, cookie.value()) else {
        return Ok(None);
    };
    let now = Utc::now();
    let found = session::touch(client, &id, now, now + console.ttl())
        .await
        .map_err(db_error(lang))?;
    Ok(found.map(|open| Customer {
        jd_pin: open.jd_pin,
        expires_at: open.expires_at,
        csrf: csrf::token(keys, id.as_str()),
        session: id,
    }))
}

/// Renews the session cookie on a signed-in answer, for another `session_ttl_s` (or until the
/// session's absolute end).
pub fn renew_session(console: &Console, customer: &Customer, response: &mut HttpResponse) {
    if let Some(keys) = &console.credentials {
        let value = session::cookie_value(keys, &customer.session);
        let cookie = session_cookie(console, value, customer.expires_at);
        let _ = response.add_cookie(&cookie);
    }
}

/// The answer of a signed-in page, with the session cookie renewed.
pub fn signed_in_page(
    console: &Console,
    customer: &Customer,
    status: StatusCode,
    body: String,
) -> HttpResponse {
    let mut response = html_response(status, body);
    renew_session(console, customer, &mut response);
    response
}

/// A signed-in page saying what was refused (`status`), with the way back to the overview.
pub fn refused(
    console: &Console,
    customer: &Customer,
    lang: Lang,
    status: StatusCode,
    text: &str,
) -> HttpResponse {
    let body = refusal(lang, &lang.t("refused.title"), text, Some(&customer.who()));
    signed_in_page(console, customer, status, body)
}

/// An id no page of this customer's answers to: unknown, or another customer's (the two alike).
pub fn not_found(console: &Console, customer: &Customer, lang: Lang) -> HttpResponse {
    let text = lang.t("refused.not_found");
    refused(console, customer, lang, StatusCode::NOT_FOUND, &text)
}

/// What a command the ledger refused answers: the rule that refused it, or `503`.
pub fn command_refused<R: std::fmt::Display>(
    console: &Console,
    customer: &Customer,
    lang: Lang,
    error: CommandError<R>,
) -> PageResult {
    match error {
        CommandError::Refused(refusal) => {
            let text = lang.tf("refused.rule", &[("reason", &refusal.to_string())]);
            Ok(refused(
                console,
                customer,
                lang,
                StatusCode::CONFLICT,
                &text,
            ))
        }
        CommandError::Failed(error) => Err(unavailable(lang)(&error)),
    }
}

/// Pages a sign-in may return to: the console's own, never the sign-in's (nor a path a browser
/// would resolve out of the console: a `.` or `..` segment, encoded or not).
pub fn return_path(raw: &str) -> Option<&str> {
    const RETURN_PATH_CHARS_MAX: usize = 1024;
    let rest = raw.strip_prefix("/console/")?;
    let plain = raw.len() <= RETURN_PATH_CHARS_MAX
        && raw
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"\\?#".contains(&b))
        && !raw.contains("//");
    let dots = raw.split('/').any(|segment| {
        let segment = segment.to_ascii_lowercase().replace("%2e", ".");
        segment == "." || segment == ".."
    });
    let sign_in = ["login", "enter", "logout", "lang/"]
        .iter()
        .any(|page| rest.starts_with(page));
    (plain && !dots && !sign_in && !rest.is_empty()).then_some(raw)
}

/// No open session: to the sign-in form, which comes back to this page afterwards. A form posted
/// after its session ended, or a page asked for with a session cookie that opens nothing any
/// more, is told so (`why=expired`: nothing was done; `why=ended`).
pub fn to_sign_in(req: &HttpRequest) -> HttpResponse {
    let mut query = Vec::new();
    if let Some(path) = return_path(req.path()) {
        let encoded =
            percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC);
        query.push(format!("next={encoded}"));
    }
    if req.method() == actix_web::http::Method::POST {
        query.push("why=expired".to_owned());
    } else if req.cookie(session::COOKIE_NAME).is_some() {
        query.push("why=ended".to_owned());
    }
    let location = if query.is_empty() {
        "/console/login".to_owned()
    } else {
        format!("/console/login?{}", query.join("&"))
    };
    see_other(&location).finish()
}

pub fn see_other(location: &str) -> actix_web::HttpResponseBuilder {
    let mut builder = HttpResponse::SeeOther();
    builder.insert_header((header::LOCATION, location.to_owned()));
    builder
}

/// What the ledger records of a customer's change: the request, the console, the customer.
pub fn metadata(req: &HttpRequest, customer: &Customer) -> Metadata {
    let actor = format!("customer:{}", customer.jd_pin.as_str());
    RequestId::of(req).metadata("console", actor)
}

/// A signed-in form's post: from one of our pages, with the session's token.
pub fn csrf_ok(console: &Console, req: &HttpRequest, customer: &Customer, candidate: &str) -> bool {
    csrf::same_origin(req, &console.origin)
        && console
            .credentials
            .as_ref()
            .is_some_and(|keys| csrf::check(keys, customer.session.as_str(), candidate))
}

pub fn csrf_refused(console: &Console, customer: &Customer, lang: Lang) -> HttpResponse {
    let text = lang.t("refused.csrf");
    refused(console, customer, lang, StatusCode::FORBIDDEN, &text)
}

/// A thing a customer may own, named by the id in a console path.
pub trait Owned: Sized {
    /// Theirs; `None` for an unknown id and another customer's alike (so ids of others cannot
    /// be probed).
    async fn find(
        client: &impl GenericClient,
        customer: &Customer,
        raw: &str,
        lang: Lang,
    ) -> Result<Option<Self>, PageError>;
}

/// The package `raw` names, whoever holds it; `None` when there is none.
pub async fn package(
    client: &impl GenericClient,
    raw: &str,
    lang: Lang,
) -> Result<Option<Package>, PageError> {
    let found = rows::read_packages(client, &[raw])
        .await
        .map_err(db_error(lang))?;
    found
        .first()
        .map(|row| rows::package_from_row(row).map_err(|e| unavailable(lang)(&e)))
        .transpose()
}

impl Owned for Package {
    async fn find(
        client: &impl GenericClient,
        customer: &Customer,
        raw: &str,
        lang: Lang,
    ) -> Result<Option<Package>, PageError> {
        let package = package(client, raw, lang).await?;
        Ok(package.filter(|package| package.jd_pin == customer.jd_pin))
    }
}

impl Owned for Task {
    /// A task is theirs when its package is.
    async fn find(
        client: &impl GenericClient,
        customer: &Customer,
        raw: &str,
        lang: Lang,
    ) -> Result<Option<Task>, PageError> {
        let Ok(task_id) = TaskId::parse(raw.to_owned()) else {
            return Ok(None);
        };
        let found = rows::read_tasks(client, &[task_id.as_str()])
            .await
            .map_err(db_error(lang))?;
        let Some(row) = found.first() else {
            return Ok(None);
        };
        let task = rows::task_from_row(row).map_err(|e| unavailable(lang)(&e))?;
        let owner = Package::find(client, customer, task.instance_id.as_str(), lang).await?;
        Ok(owner.map(|_| task))
    }
}

/// One of the signed-in customer's things, with what a page about it needs.
pub struct Own<T> {
    pub lang: Lang,
    pub client: deadpool_postgres::Object,
    pub customer: Customer,
    pub item: T,
}

impl<T> Own<T> {
    /// The page about it (`200`), with the session renewed.
    pub fn show(&self, console: &Console, body: String) -> HttpResponse {
        signed_in_page(console, &self.customer, StatusCode::OK, body)
    }
}

/// A page about one of the signed-in customer's things, `raw` its id in the path: `page` answers
/// with what it needs. Without a session, to the sign-in; a thing not theirs is not found.
pub async fn own_page<T: Owned>(
    console: &Console,
    req: &HttpRequest,
    raw: &str,
    page: impl AsyncFnOnce(Own<T>) -> PageResult,
) -> PageResult {
    let lang = lang_of(req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let Some(customer) = customer(console, req, &client, lang).await? else {
        return Ok(to_sign_in(req));
    };
    match T::find(&client, &customer, raw, lang).await? {
        Some(item) => {
            let own = Own {
                lang,
                client,
                customer,
                item,
            };
            page(own).await
        }
        None => Ok(not_found(console, &customer, lang)),
    }
}

/// A form posted about one of the signed-in customer's things, as [`own_page`], which `then`
/// carries out only when it was posted from one of our pages with the session's token.
pub async fn own_post<T: Owned>(
    console: &Console,
    req: &HttpRequest,
    raw: &str,
    csrf: &str,
    then: impl AsyncFnOnce(Own<T>) -> PageResult,
) -> PageResult {
    own_page(console, req, raw, async |own: Own<T>| {
        if !csrf_ok(console, req, &own.customer, csrf) {
            return Ok(csrf_refused(console, &own.customer, own.lang));
        }
        then(own).await
    })
    .await
}
