//! The customer console (DESIGN §12): what a DTS customer sees and does after signing in, served
//! as HTML by the service itself under `/console`.
//!
//! Sign-in comes from the marketplace's login-free link (a single-use ticket, exchanged for a
//! session cookie) or from the order credential. A session names a customer (`jdPin`), who sees
//! every package of that account and the tasks drawing from them, and nothing else.

pub mod chart;
mod credential;
pub mod csrf;
mod flash;
pub mod format;
pub mod i18n;
pub mod login;
pub mod pages;
pub mod session;
pub mod statement;
pub mod ticket;
pub mod usage;

use crate::configuration::Config;
use crate::credentials::{self, Credentials};
use crate::http::state::{AppState, RequestId};
use crate::ledger::{self, rows, CommandError, Ledger};
use crate::store::Metadata;
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::dev::HttpServiceFactory;
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{middleware, web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use i18n::Lang;
use maud::html;
use pages::SignedIn;
use projections::ids::{InstanceId, JdPin, TaskId};
use projections::{Package, PackageStatus, Task};
use serde::Deserialize;
use session::SessionId;
use std::sync::Arc;

/// Packages shown on one overview: far more than any customer holds (the marketplace sells a
/// handful per account), and a bound on what one page load reads.
pub const PACKAGES_SHOWN_MAX: i64 = 1000;
/// Live tasks shown on one overview, for the same reason.
pub const TASKS_SHOWN_MAX: i64 = 5000;
/// How long the language switch is remembered.
const LANG_COOKIE_DAYS: i64 = 365;

/// The policy every console answer carries: nothing but our own stylesheet and forms; no script,
/// no frames, no third-party resource of any kind.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the console needs of the application.
pub struct Console {
    pool: Pool,
    ledger: Ledger,
    config: Arc<Config>,
    /// Derives and checks order credentials: the application's own.
    credentials: Option<Credentials>,
    /// Cookies only travel over TLS when customers reach us over https.
    secure_cookies: bool,
    /// `public_url`'s origin: a post from it comes from one of our own pages.
    origin: String,
    /// The share of the pool sign-ins may hold at once ([`login::concurrent_max`]): one gate for
    /// every worker thread of the process, as they share one pool.
    sign_ins: tokio::sync::Semaphore,
}

/// The console's state, made once per process and shared by its workers.
pub fn state(state: &AppState) -> web::Data<Console> {
    web::Data::new(Console {
        pool: state.pool.clone(),
        ledger: state.ledger.clone(),
        config: state.config.clone(),
        credentials: state.credentials.clone(),
        secure_cookies: state.public_url.starts_with("https://"),
        origin: csrf::origin_of(&state.public_url),
        sign_ins: tokio::sync::Semaphore::new(login::concurrent_max(state.config.pool_size)),
    })
}

/// The `/console` routes.
pub fn scope(console: web::Data<Console>) -> impl HttpServiceFactory + 'static {
    console_routes(web::scope("/console"))
        .default_service(web::to(no_such_page))
        .app_data(console)
        .app_data(
            web::FormConfig::default()
                .limit(FORM_BYTES_MAX)
                .error_handler(form_refused),
        )
        .app_data(web::QueryConfig::default().error_handler(query_refused))
        // An overview of hundreds of tasks is mostly repeated markup: gzip shrinks it twentyfold.
        .wrap(middleware::Compress::default())
        .wrap(
            middleware::DefaultHeaders::new()
                .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .add((header::X_FRAME_OPTIONS, "DENY"))
                // A sign-in ticket is in the first URL; no other site may see it as a referrer.
                .add((header::REFERRER_POLICY, "no-referrer"))
                .add((header::CACHE_CONTROL, "no-store")),
        )
}

crate::http::routes::route_table! {
    /// Pages and forms, each at its path under `/console`.
    fn console_routes(scope: actix_web::Scope), under "/console", listed in CONSOLE_ROUTES,
        other methods method_not_allowed;
    GET "" => overview;
    GET "/" => overview;
    GET "/console.css" => stylesheet;
    GET "/enter" => enter;
    GET "/login" => login_form;
    POST "/login" => login_submit;
    POST "/logout" => logout;
    GET "/lang/{code}" => switch_language;
    GET "/packages/{instance_id}" => package_page;
    GET "/packages/{instance_id}/statement.csv" => statement_csv;
    GET "/tasks/{task_id}/renew" => renew_form;
    POST "/tasks/{task_id}/renew" => renew_submit;
    GET "/tasks/{task_id}/destroy" => destroy_form;
    POST "/tasks/{task_id}/destroy" => destroy_submit;
    GET "/packages/{instance_id}/credential" => credential::form;
    POST "/packages/{instance_id}/credential" => credential::submit;
}

/// Largest form accepted: the console's forms carry a few short fields.
const FORM_BYTES_MAX: usize = 4 * 1024;

/// A console answer that could not be given: shown as a page.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    body: String,
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "console page {}", self.status)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        html_response(self.status, self.body.clone())
    }
}

type PageResult = Result<HttpResponse, PageError>;

/// A form post that is not one of our forms (no form body, too large, fields missing): a page
/// in the request's language, with the status saying why, never the framework's plain text.
fn form_refused(error: actix_web::error::UrlencodedError, req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::UrlencodedError;
    let (status, text) = match &error {
        UrlencodedError::ContentType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "form.type"),
        UrlencodedError::Overflow { .. } | UrlencodedError::UnknownLength => {
            (StatusCode::PAYLOAD_TOO_LARGE, "form.large")
        }
        _ => (StatusCode::BAD_REQUEST, "form.bad"),
    };
    refused_page(error, req, status, text)
}

/// A console URL whose query cannot be read (`?days=x`).
fn query_refused(
    error: actix_web::error::QueryPayloadError,
    req: &HttpRequest,
) -> actix_web::Error {
    refused_page(error, req, StatusCode::BAD_REQUEST, "form.query")
}

fn refused_page(
    error: impl std::fmt::Debug + std::fmt::Display + 'static,
    req: &HttpRequest,
    status: StatusCode,
    text: &str,
) -> actix_web::Error {
    let lang = lang_of(req);
    tracing::info!(%error, %status, "console: request refused before its handler");
    let body = pages::message(
        lang,
        &lang.t("form.title"),
        &lang.t(text),
        None,
        html! { p { a href="/console" { (lang.t("common.cancel")) } } },
    );
    actix_web::error::InternalError::from_response(error, html_response(status, body)).into()
}

fn html_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

fn unavailable(lang: Lang) -> impl FnOnce(&dyn std::error::Error) -> PageError {
    move |error| {
        let cause = error.source().map(ToString::to_string);
        tracing::warn!(%error, ?cause, "console: database unavailable");
        PageError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: pages::message(
                lang,
                &lang.t("refused.title"),
                &lang.t("error.unavailable"),
                None,
                html! {},
            ),
        }
    }
}

fn db_error(lang: Lang) -> impl Fn(tokio_postgres::Error) -> PageError {
    move |error| unavailable(lang)(&error)
}

fn pool_error(lang: Lang) -> impl Fn(deadpool_postgres::PoolError) -> PageError {
    move |error| unavailable(lang)(&error)
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
fn to_sign_in(req: &HttpRequest) -> HttpResponse {
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

fn see_other(location: &str) -> actix_web::HttpResponseBuilder {
    let mut builder = HttpResponse::SeeOther();
    builder.insert_header((header::LOCATION, location.to_owned()));
    builder
}

fn lang_of(req: &HttpRequest) -> Lang {
    let cookie = req.cookie(i18n::LANG_COOKIE);
    let accept = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Lang::choose(cookie.as_ref().map(|c| c.value()), accept)
}

impl Console {
    /// The session cookie, kept by the browser until `expires_at` (the session's end as the
    /// database has it), in whole seconds rounded up.
    fn session_cookie(&self, value: String, expires_at: DateTime<Utc>) -> Cookie<'static> {
        let left_ms = (expires_at - Utc::now()).num_milliseconds().max(0);
        Cookie::build(session::COOKIE_NAME, value)
            .path("/console")
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(SameSite::Strict)
            .max_age(CookieDuration::seconds((left_ms + 999) / 1000))
            .finish()
    }

    fn ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.config.session_ttl_s as i64)
    }

    fn lifetime_max(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.config.session_max_s as i64)
    }

    fn sku_name(&self, package: &Package) -> String {
        self.config.catalog.get(&package.sku_id).map_or_else(
            || package.sku_id.as_str().to_owned(),
            |sku| sku.name.clone(),
        )
    }

    fn renew_link(&self, instance_id: &InstanceId) -> Option<String> {
        let base = self.config.renew_url.as_ref()?;
        let separator = if base.contains('?') { '&' } else { '?' };
        let id = percent_encoding::utf8_percent_encode(
            instance_id.as_str(),
            percent_encoding::NON_ALPHANUMERIC,
        );
        Some(format!("{base}{separator}instanceId={id}"))
    }
}

/// A signed-in customer, with the session that proves it.
struct Customer {
    jd_pin: JdPin,
    session: SessionId,
    /// When the session ends, as renewed by this request.
    expires_at: DateTime<Utc>,
    csrf: String,
}

impl Customer {
    fn who(&self) -> SignedIn<'_> {
        SignedIn {
            jd_pin: self.jd_pin.as_str(),
            csrf: &self.csrf,
        }
    }
}

/// The customer of the request's session cookie (and the session renewed), if any.
async fn customer(
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

/// The answer of a signed-in page, with the session cookie renewed for another `session_ttl_s`
/// (or until the session's absolute end).
fn signed_in_page(
    console: &Console,
    customer: &Customer,
    status: StatusCode,
    body: String,
) -> HttpResponse {
    let mut response = html_response(status, body);
    if let Some(keys) = &console.credentials {
        let value = session::cookie_value(keys, &customer.session);
        let cookie = console.session_cookie(value, customer.expires_at);
        let _ = response.add_cookie(&cookie);
    }
    response
}

/// A method a console path does not take (a bookmarked `/console/logout`, say): a page saying so,
/// with the path's methods in `Allow`.
async fn method_not_allowed(req: HttpRequest, allow: String) -> HttpResponse {
    let lang = lang_of(&req);
    let mut response = html_response(
        StatusCode::METHOD_NOT_ALLOWED,
        pages::message(
            lang,
            &lang.t("refused.title"),
            &lang.t("error.method"),
            None,
            html! { p { a href="/console" { (lang.t("common.cancel")) } } },
        ),
    );
    if let Ok(allow) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// The page a browser gets for a marketplace sign-in link (`verify`) that signs no one in: what
/// happened and how to come back, by the callback's status (its JSON is for the marketplace).
pub fn sign_in_link_refused(req: &HttpRequest, status: StatusCode) -> HttpResponse {
    let lang = lang_of(req);
    let text = match status {
        StatusCode::NOT_FOUND => "link.unknown",
        StatusCode::CONFLICT => "link.released",
        StatusCode::FORBIDDEN => "link.refused",
        StatusCode::SERVICE_UNAVAILABLE => "error.unavailable",
        _ => "link.bad",
    };
    let mut response = html_response(
        status,
        pages::message(
            lang,
            &lang.t("link.title"),
            &lang.t(text),
            None,
            html! { p { a #to-login href="/console/login" { (lang.t("ticket.login")) } } },
        ),
    );
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A console address that is no page (a mistyped or outdated link): a page saying so, in the
/// request's language, not the API's JSON.
async fn no_such_page(req: HttpRequest) -> HttpResponse {
    let lang = lang_of(&req);
    html_response(
        StatusCode::NOT_FOUND,
        pages::message(
            lang,
            &lang.t("notfound.title"),
            &lang.t("notfound.body"),
            None,
            html! { p { a #to-overview href="/console" { (lang.t("common.cancel")) } } },
        ),
    )
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("console.css"))
}

/// The packages of a customer, oldest first.
async fn packages_of(
    client: &impl GenericClient,
    jd_pin: &JdPin,
    lang: Lang,
) -> Result<Vec<Package>, PageError> {
    let sql = format!(
        "SELECT {} FROM packages WHERE jd_pin = $1 ORDER BY created_at, instance_id LIMIT $2",
        rows::PACKAGE_COLUMNS
    );
    let statement = client.prepare_cached(&sql).await.map_err(db_error(lang))?;
    let found = client
        .query(&statement, &[&jd_pin.as_str(), &PACKAGES_SHOWN_MAX])
        .await
        .map_err(db_error(lang))?;
    found
        .iter()
        .map(|row| rows::package_from_row(row).map_err(|e| unavailable(lang)(&e)))
        .collect()
}

/// The live tasks of these packages, by id.
async fn tasks_of(
    client: &impl GenericClient,
    packages: &[Package],
    lang: Lang,
) -> Result<Vec<Task>, PageError> {
    let ids: Vec<&str> = packages.iter().map(|p| p.instance_id.as_str()).collect();
    let sql = format!(
        "SELECT {} FROM tasks WHERE instance_id = ANY($1::text[])
            AND state <> 'destroyed' ORDER BY task_id LIMIT $2",
        rows::TASK_COLUMNS
    );
    let statement = client.prepare_cached(&sql).await.map_err(db_error(lang))?;
    let found = client
        .query(&statement, &[&ids, &TASKS_SHOWN_MAX])
        .await
        .map_err(db_error(lang))?;
    found
        .iter()
        .map(|row| rows::task_from_row(row).map_err(|e| unavailable(lang)(&e)))
        .collect()
}

/// The runways of these packages, in one statement.
async fn runways_of(
    client: &impl GenericClient,
    packages: &[Package],
    now: DateTime<Utc>,
    lang: Lang,
) -> Result<std::collections::HashMap<InstanceId, crate::usage::Runway>, PageError> {
    let ids: Vec<InstanceId> = packages.iter().map(|p| p.instance_id.clone()).collect();
    crate::usage::runways(client, &ids, now)
        .await
        .map_err(db_error(lang))
}

async fn overview(console: web::Data<Console>, req: HttpRequest) -> PageResult {
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let Some(customer) = customer(&console, &req, &client, lang).await? else {
        return Ok(to_sign_in(&req));
    };
    let packages = packages_of(&client, &customer.jd_pin, lang).await?;
    let tasks = tasks_of(&client, &packages, lang).await?;
    let now = Utc::now();
    let runways = runways_of(&client, &packages, now, lang).await?;
    let names: Vec<String> = packages.iter().map(|p| console.sku_name(p)).collect();
    let views: Vec<pages::PackageView<'_>> = packages
        .iter()
        .zip(&names)
        .map(|(package, name)| pages::PackageView {
            package,
            sku_name: name,
            renew_link: console.renew_link(&package.instance_id),
            expiry_warning_days: console.config.expiry_warning_days,
            runway: runways.get(&package.instance_id),
        })
        .collect();
    let flash = flash::read(&console, &req, &customer, lang);
    let body = pages::overview(lang, &customer.who(), &views, &tasks, flash.as_deref(), now);
    let mut response = signed_in_page(&console, &customer, StatusCode::OK, body);
    if req.cookie(flash::COOKIE_NAME).is_some() {
        let _ = response.add_cookie(&flash::removal(&console));
    }
    Ok(response)
}

/// Opens a session for the customer of `package`, whose credential or sign-in link opened it (a
/// rotation of that credential ends it), and sends the browser to `next` (a console page the
/// customer was on when their session ended) or the overview, at a clean URL.
async fn open_session(
    console: &Console,
    client: &impl GenericClient,
    keys: &Credentials,
    package: &projections::Package,
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
        .cookie(console.session_cookie(value, expires_at.min(ends_at)))
        .finish())
}

#[derive(Deserialize)]
struct EnterQuery {
    /// Optional so that a link cut short gets the page saying how to come back, not an error.
    ticket: Option<String>,
}

/// `GET /console/enter?ticket=…`: where the login-free link lands.
async fn enter(
    console: web::Data<Console>,
    req: HttpRequest,
    query: web::Query<EnterQuery>,
) -> PageResult {
    let lang = lang_of(&req);
    let refused = |reason: &credentials::ticket::TicketError| {
        tracing::info!(%reason, "console: sign-in ticket refused");
        html_response(
            StatusCode::FORBIDDEN,
            pages::message(
                lang,
                &lang.t("ticket.title"),
                &lang.t("ticket.body"),
                None,
                html! { p { a #to-login href="/console/login" { (lang.t("ticket.login")) } } },
            ),
        )
    };
    let Some(keys) = &console.credentials else {
        return Ok(refused(&credentials::ticket::TicketError::Forged));
    };
    let opened =
        match credentials::ticket::open(keys, query.ticket.as_deref().unwrap_or(""), Utc::now()) {
            Ok(opened) => opened,
            Err(reason) => return Ok(refused(&reason)),
        };
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let found = rows::read_packages(&client, &[opened.instance_id.as_str()])
        .await
        .map_err(db_error(lang))?;
    let Some(row) = found.first() else {
        return Ok(refused(&credentials::ticket::TicketError::Forged));
    };
    let package = rows::package_from_row(row).map_err(|e| unavailable(lang)(&e))?;
    // A ticket issued before its package was released opens nothing after.
    if package.status == PackageStatus::Released {
        return Ok(refused(&credentials::ticket::TicketError::Released));
    }
    if let Err(reason) = ticket::consume(&client, &opened)
        .await
        .map_err(db_error(lang))?
    {
        return Ok(refused(&reason));
    }
    open_session(&console, &client, keys, &package, "", lang).await
}

#[derive(Deserialize)]
struct LoginQuery {
    /// The console page to come back to after signing in.
    next: Option<String>,
    /// Why the form is shown: `expired` (a form posted after its session ended), `ended` (a page
    /// asked for after it ended), `signed_out`.
    why: Option<String>,
}

async fn login_form(
    console: web::Data<Console>,
    req: HttpRequest,
    query: web::Query<LoginQuery>,
) -> PageResult {
    let lang = lang_of(&req);
    let error = console
        .credentials
        .is_none()
        .then(|| lang.t("login.unavailable"));
    let notice = match query.why.as_deref() {
        Some("expired") => Some(lang.t("login.expired")),
        Some("ended") => Some(lang.t("login.ended")),
        Some("signed_out") => Some(lang.t("flash.signed_out")),
        _ => None,
    };
    let view = pages::LoginView {
        error: error.as_deref(),
        notice: notice.as_deref(),
        typed_id: "",
        next: query.next.as_deref().and_then(return_path).unwrap_or(""),
    };
    Ok(login_page(&console, &req, lang, StatusCode::OK, &view))
}

/// The sign-in form with its CSRF token, and the cookie the token goes with: the browser's own
/// when it has one (so that two open forms both work), else a new one.
fn login_page(
    console: &Console,
    req: &HttpRequest,
    lang: Lang,
    status: StatusCode,
    view: &pages::LoginView<'_>,
) -> HttpResponse {
    let Some(keys) = &console.credentials else {
        let unavailable = lang.t("login.unavailable");
        let view = pages::LoginView {
            error: Some(&unavailable),
            ..*view
        };
        return html_response(status, pages::login(lang, &view, ""));
    };
    let held = req
        .cookie(csrf::LOGIN_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|value| csrf::is_login_nonce(value));
    let nonce = held.clone().unwrap_or_else(csrf::login_nonce);
    let token = csrf::login_token(keys, &nonce);
    let mut response = html_response(status, pages::login(lang, view, &token));
    if held.is_none() {
        // A browser session's cookie, like the form it belongs to.
        let cookie = Cookie::build(csrf::LOGIN_COOKIE, nonce)
            .path("/console")
            .http_only(true)
            .secure(console.secure_cookies)
            .same_site(SameSite::Strict)
            .finish();
        let _ = response.add_cookie(&cookie);
    }
    response
}

#[derive(Deserialize)]
struct LoginForm {
    /// Defaulted so that a post without it gets the page saying what to do, not an error.
    #[serde(default)]
    csrf: String,
    #[serde(rename = "instanceId")]
    instance_id: String,
    #[serde(rename = "authCode")]
    auth_code: String,
    /// The page to come back to: the form's hidden field (checked by [`return_path`]).
    #[serde(default)]
    next: String,
}

/// How a sign-in with the order credential ended.
enum SignIn {
    Opened(HttpResponse),
    /// Refused, with the status and the catalog key of the message.
    Refused(StatusCode, &'static str),
}

/// `POST /console/login`: the order credential. Everything that is not a right pair is answered
/// the same way, after the same delay, during which nothing is held.
async fn login_submit(
    console: web::Data<Console>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> PageResult {
    let lang = lang_of(&req);
    let typed_id: String = form
        .instance_id
        .trim()
        .chars()
        .take(login::FIELD_CHARS_MAX)
        .collect();
    let next = return_path(&form.next).unwrap_or("");
    let Some(keys) = &console.credentials else {
        let unavailable = lang.t("login.unavailable");
        let status = StatusCode::FORBIDDEN;
        return Ok(login_page(
            &console,
            &req,
            lang,
            status,
            &pages::LoginView {
                error: Some(&unavailable),
                notice: None,
                typed_id: &typed_id,
                next,
            },
        ));
    };
    // Another site cannot sign a visitor in to an account of its choosing (login CSRF): only a
    // post of our own form, with the token that goes with its cookie, is looked at.
    let nonce = req
        .cookie(csrf::LOGIN_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if !csrf::same_origin(&req, &console.origin) || !csrf::check_login(keys, &nonce, &form.csrf) {
        tracing::info!("console: sign-in refused: not posted from this site's own form");
        let forged = lang.t("login.forged");
        let status = StatusCode::FORBIDDEN;
        return Ok(login_page(
            &console,
            &req,
            lang,
            status,
            &pages::LoginView {
                error: Some(&forged),
                notice: None,
                typed_id: &typed_id,
                next,
            },
        ));
    }
    // The peer address, not a forwarded header anyone can write; behind a proxy every customer
    // shares the proxy's address and its (larger) limit.
    let address = req
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
    let attempt = login::Attempt::new(&address, &typed_id);
    // Sign-ins are the database work anyone may ask for: they get a bounded share of the pool,
    // and one that finds it taken is refused at once rather than queued for a connection.
    let outcome = match console.sign_ins.try_acquire() {
        Ok(_permit) => {
            let auth_code = &form.auth_code;
            check_credential(
                &console,
                keys,
                &attempt,
                (&typed_id, auth_code),
                &address,
                next,
                lang,
            )
            .await?
        }
        Err(_) => {
            tracing::warn!(%address, "console: sign-in refused: sign-ins hold their share of the pool");
            SignIn::Refused(StatusCode::SERVICE_UNAVAILABLE, "login.busy")
        }
    };
    // The connection and the permit are back: the delay costs the pool nothing.
    match outcome {
        SignIn::Opened(response) => Ok(response),
        SignIn::Refused(status, message) => {
            tokio::time::sleep(std::time::Duration::from_millis(login::FAILURE_DELAY_MS)).await;
            let mut page = login_page(
                &console,
                &req,
                lang,
                status,
                &pages::LoginView {
                    error: Some(&lang.t(message)),
                    notice: None,
                    typed_id: &typed_id,
                    next,
                },
            );
            if status == StatusCode::SERVICE_UNAVAILABLE {
                page.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            Ok(page)
        }
    }
}

/// Counts the attempt, checks the pair, and opens a session for a right one.
async fn check_credential(
    console: &Console,
    keys: &Credentials,
    attempt: &login::Attempt,
    (typed_id, auth_code): (&str, &str),
    address: &str,
    next: &str,
    lang: Lang,
) -> Result<SignIn, PageError> {
    let mut client = console.pool.get().await.map_err(pool_error(lang))?;
    let verdict = login::admit(&mut client, attempt, Utc::now())
        .await
        .map_err(db_error(lang))?;
    if verdict != login::Verdict::Try {
        tracing::warn!(%address, ?verdict, "console: sign-in refused untried, too many failures");
        return Ok(SignIn::Refused(
            StatusCode::TOO_MANY_REQUESTS,
            "login.throttled",
        ));
    }
    let Some(package) = credential_holder(console, &client, typed_id, auth_code, lang).await?
    else {
        tracing::info!(%address, "console: wrong order credential");
        return Ok(SignIn::Refused(StatusCode::UNAUTHORIZED, "login.wrong"));
    };
    login::forgive(&client, attempt)
        .await
        .map_err(db_error(lang))?;
    if package.status == PackageStatus::Released {
        tracing::info!(instance_id = %package.instance_id, "console: sign-in refused: the package was released");
        return Ok(SignIn::Refused(StatusCode::FORBIDDEN, "login.released"));
    }
    let opened = open_session(console, &client, keys, &package, next, lang).await?;
    Ok(SignIn::Opened(opened))
}

/// The package `typed_id` names when `auth_code` is its order credential; `None` for every wrong
/// pair alike.
async fn credential_holder(
    console: &Console,
    client: &deadpool_postgres::Object,
    typed_id: &str,
    auth_code: &str,
    lang: Lang,
) -> Result<Option<projections::Package>, PageError> {
    let instance_id = InstanceId::parse(typed_id.to_owned()).ok();
    let right = match (&instance_id, &console.credentials) {
        (Some(id), Some(credentials)) if auth_code.chars().count() <= login::FIELD_CHARS_MAX => {
            // Only the code of the credential's current generation opens the account.
            let generation = crate::ledger::orders::credential_generation(client, id)
                .await
                .map_err(|e| unavailable(lang)(&e))?;
            credentials.is_auth_code(id, generation, auth_code.trim())
        }
        _ => false,
    };
    let (Some(id), true) = (&instance_id, right) else {
        return Ok(None);
    };
    let found = rows::read_packages(client, &[id.as_str()])
        .await
        .map_err(db_error(lang))?;
    match found.first() {
        Some(row) => Ok(Some(
            rows::package_from_row(row).map_err(|e| unavailable(lang)(&e))?,
        )),
        None => Ok(None),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// A signed-in form's post: from one of our pages, with the session's token.
fn csrf_ok(console: &Console, req: &HttpRequest, customer: &Customer, candidate: &str) -> bool {
    csrf::same_origin(req, &console.origin)
        && console
            .credentials
            .as_ref()
            .is_some_and(|keys| csrf::check(keys, customer.session.as_str(), candidate))
}

fn csrf_refused(console: &Console, customer: &Customer, lang: Lang) -> HttpResponse {
    signed_in_page(
        console,
        customer,
        StatusCode::FORBIDDEN,
        pages::message(
            lang,
            &lang.t("refused.title"),
            &lang.t("refused.csrf"),
            Some(&customer.who()),
            html! { p { a href="/console" { (lang.t("common.cancel")) } } },
        ),
    )
}

async fn logout(
    console: web::Data<Console>,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> PageResult {
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let Some(customer) = customer(&console, &req, &client, lang).await? else {
        // Already ended: what the customer asked for is so.
        return Ok(see_other("/console/login?why=signed_out").finish());
    };
    if !csrf_ok(&console, &req, &customer, &form.csrf) {
        return Ok(csrf_refused(&console, &customer, lang));
    }
    session::close(&client, &customer.session)
        .await
        .map_err(db_error(lang))?;
    let mut gone = console.session_cookie(String::new(), Utc::now());
    gone.make_removal();
    Ok(see_other("/console/login?why=signed_out")
        .cookie(gone)
        .finish())
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// `GET /console/lang/{code}`: remembers the language and goes back (only to our own pages).
async fn switch_language(
    console: web::Data<Console>,
    path: web::Path<String>,
    query: web::Query<NextQuery>,
) -> HttpResponse {
    let Some(lang) = Lang::parse(&path) else {
        return see_other("/console").finish();
    };
    let back = match query.next.as_deref() {
        Some("login") => "/console/login",
        _ => "/console",
    };
    let cookie = Cookie::build(i18n::LANG_COOKIE, lang.code())
        .path("/console")
        .http_only(true)
        .secure(console.secure_cookies)
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::days(LANG_COOKIE_DAYS))
        .finish();
    see_other(back).cookie(cookie).finish()
}

/// A task of the signed-in customer, with its package; `None` for an unknown task or another
/// customer's (the two are answered alike, so ids of others cannot be probed).
async fn own_task(
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
    let owner = own_package(client, customer, task.instance_id.as_str(), lang).await?;
    Ok(owner.map(|_| task))
}

async fn own_package(
    client: &impl GenericClient,
    customer: &Customer,
    raw: &str,
    lang: Lang,
) -> Result<Option<Package>, PageError> {
    let found = rows::read_packages(client, &[raw])
        .await
        .map_err(db_error(lang))?;
    let Some(row) = found.first() else {
        return Ok(None);
    };
    let package = rows::package_from_row(row).map_err(|e| unavailable(lang)(&e))?;
    Ok((package.jd_pin == customer.jd_pin).then_some(package))
}

fn not_found(console: &Console, customer: &Customer, lang: Lang) -> HttpResponse {
    signed_in_page(
        console,
        customer,
        StatusCode::NOT_FOUND,
        pages::message(
            lang,
            &lang.t("refused.title"),
            &lang.t("refused.not_found"),
            Some(&customer.who()),
            html! { p { a href="/console" { (lang.t("common.cancel")) } } },
        ),
    )
}

/// The version a form carries: the version of the task's own stream, which moves with every
/// change of its binding or state (created, rebound, stopped, resumed, destroyed) but not with
/// its traffic (which goes to the package's stream), so a running task's forms do not go stale
/// with every report. One step back along the stream index.
async fn version_of(
    client: &impl GenericClient,
    task: &Task,
    lang: Lang,
) -> Result<String, PageError> {
    let statement = client
        .prepare_cached(
            "SELECT version FROM events
              WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1
              ORDER BY version DESC LIMIT 1",
        )
        .await
        .map_err(db_error(lang))?;
    let row = client
        .query_opt(
            &statement,
            &[&projections::events::task_stream(&task.task_id)],
        )
        .await
        .map_err(db_error(lang))?;
    Ok(row.map_or(0, |row| row.get::<_, i64>(0)).to_string())
}

/// The signed-in customer and their task, or the answer to give instead.
async fn task_page_context(
    console: &Console,
    req: &HttpRequest,
    client: &impl GenericClient,
    raw_task: &str,
    lang: Lang,
) -> Result<Result<(Customer, Task), HttpResponse>, PageError> {
    let Some(customer) = customer(console, req, client, lang).await? else {
        return Ok(Err(to_sign_in(req)));
    };
    match own_task(client, &customer, raw_task, lang).await? {
        Some(task) => Ok(Ok((customer, task))),
        None => Ok(Err(not_found(console, &customer, lang))),
    }
}

async fn renew_form(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let (customer, task) = match task_page_context(&console, &req, &client, &path, lang).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let packages = packages_of(&client, &customer.jd_pin, lang).await?;
    let now = Utc::now();
    let usable: Vec<&Package> = packages
        .iter()
        .filter(|p| p.instance_id != task.instance_id && p.is_usable_at(now))
        .collect();
    let owned: Vec<Package> = usable.iter().map(|p| (*p).clone()).collect();
    let on_them = tasks_of(&client, &owned, lang).await?;
    let runways = runways_of(&client, &owned, now, lang).await?;
    let names: Vec<String> = usable.iter().map(|p| console.sku_name(p)).collect();
    let candidates: Vec<pages::Candidate<'_>> = usable
        .iter()
        .zip(&names)
        .map(|(p, name)| pages::Candidate {
            package: p,
            sku_name: name,
            tasks: on_them
                .iter()
                .filter(|t| t.instance_id == p.instance_id)
                .map(|t| t.task_id.as_str())
                .collect(),
            runway: runways.get(&p.instance_id),
        })
        .collect();
    let more = pages::MoreTraffic {
        buy: console.config.buy_url.clone(),
        renew_current: console.renew_link(&task.instance_id),
    };
    let version = version_of(&client, &task, lang).await?;
    let body = pages::renew(
        lang,
        &customer.who(),
        &task,
        &version,
        &candidates,
        &more,
        now,
    );
    Ok(signed_in_page(&console, &customer, StatusCode::OK, body))
}

#[derive(Deserialize)]
struct RenewForm {
    csrf: String,
    version: String,
    to: String,
}

fn metadata(req: &HttpRequest, customer: &Customer) -> Metadata {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |id| id.0.clone());
    Metadata {
        request_id,
        source: "console",
        actor: format!("customer:{}", customer.jd_pin.as_str()),
    }
}

fn stale(console: &Console, customer: &Customer, task: &Task, lang: Lang) -> HttpResponse {
    signed_in_page(
        console,
        customer,
        StatusCode::CONFLICT,
        pages::stale(lang, &customer.who(), task),
    )
}

fn command_refused<R: std::fmt::Display>(
    console: &Console,
    customer: &Customer,
    lang: Lang,
    error: CommandError<R>,
) -> PageResult {
    match error {
        CommandError::Refused(refusal) => Ok(signed_in_page(
            console,
            customer,
            StatusCode::CONFLICT,
            pages::message(
                lang,
                &lang.t("refused.title"),
                &lang.tf("refused.rule", &[("reason", &refusal.to_string())]),
                Some(&customer.who()),
                html! { p { a href="/console" { (lang.t("common.cancel")) } } },
            ),
        )),
        CommandError::Failed(error) => Err(unavailable(lang)(&error)),
    }
}

async fn renew_submit(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<RenewForm>,
) -> PageResult {
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let (customer, task) = match task_page_context(&console, &req, &client, &path, lang).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    if !csrf_ok(&console, &req, &customer, &form.csrf) {
        return Ok(csrf_refused(&console, &customer, lang));
    }
    if form.version != version_of(&client, &task, lang).await? {
        return Ok(stale(&console, &customer, &task, lang));
    }
    let Some(target) = own_package(&client, &customer, &form.to, lang).await? else {
        tracing::warn!("console: renew onto a package that is not the customer's refused");
        return Ok(not_found(&console, &customer, lang));
    };
    drop(client);
    match ledger::tasks::rebind(
        &console.ledger,
        &task.task_id,
        &target.instance_id,
        &metadata(&req, &customer),
    )
    .await
    {
        Ok(_) => Ok(done(
            &console,
            &customer,
            flash::Done::Renewed,
            &task,
            target.instance_id.as_str(),
        )),
        Err(error) => command_refused(&console, &customer, lang, error),
    }
}

/// Back to the overview's tasks, with the message saying what was done.
fn done(
    console: &Console,
    customer: &Customer,
    what: flash::Done,
    task: &Task,
    package: &str,
) -> HttpResponse {
    let mut answer = see_other("/console#tasks");
    if let Some(cookie) = flash::cookie(console, customer, what, task.task_id.as_str(), package) {
        answer.cookie(cookie);
    }
    answer.finish()
}

async fn destroy_form(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let (customer, task) = match task_page_context(&console, &req, &client, &path, lang).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let version = version_of(&client, &task, lang).await?;
    let body = pages::destroy(lang, &customer.who(), &task, &version);
    Ok(signed_in_page(&console, &customer, StatusCode::OK, body))
}

#[derive(Deserialize)]
struct DestroyForm {
    csrf: String,
    version: String,
}

async fn destroy_submit(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<DestroyForm>,
) -> PageResult {
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let (customer, task) = match task_page_context(&console, &req, &client, &path, lang).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    if !csrf_ok(&console, &req, &customer, &form.csrf) {
        return Ok(csrf_refused(&console, &customer, lang));
    }
    if form.version != version_of(&client, &task, lang).await? {
        return Ok(stale(&console, &customer, &task, lang));
    }
    drop(client);
    match ledger::tasks::destroy(&console.ledger, &task.task_id, &metadata(&req, &customer)).await {
        Ok(_) => Ok(done(
            &console,
            &customer,
            flash::Done::Destroyed,
            &task,
            task.instance_id.as_str(),
        )),
        Err(error) => command_refused(&console, &customer, lang, error),
    }
}

#[derive(Deserialize)]
struct WindowQuery {
    days: Option<u32>,
}

/// The signed-in customer and one of their packages, or the answer to give instead.
async fn package_context(
    console: &Console,
    req: &HttpRequest,
    client: &impl GenericClient,
    raw: &str,
    lang: Lang,
) -> Result<Result<(Customer, Package), HttpResponse>, PageError> {
    let Some(customer) = customer(console, req, client, lang).await? else {
        return Ok(Err(to_sign_in(req)));
    };
    match own_package(client, &customer, raw, lang).await? {
        Some(package) => Ok(Ok((customer, package))),
        None => Ok(Err(not_found(console, &customer, lang))),
    }
}

/// `GET /console/packages/{id}?days=30|90`: the usage chart and the statement.
async fn package_page(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<WindowQuery>,
) -> PageResult {
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let (customer, package) = match package_context(&console, &req, &client, &path, lang).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let window = query
        .days
        .filter(|d| usage::WINDOWS_DAYS.contains(d))
        .unwrap_or(usage::WINDOWS_DAYS[0]);
    let now = Utc::now();
    let days = usage::daily(&client, &package.instance_id, window, now)
        .await
        .map_err(db_error(lang))?;
    let by_task = crate::usage::daily_by_task(&client, &package.instance_id, window, now)
        .await
        .map_err(db_error(lang))?;
    let (since, _) = usage::window_start(now, window);
    let drawn = crate::usage::package_tasks(&client, &package.instance_id, since, now)
        .await
        .map_err(db_error(lang))?;
    let grants = usage::grants(&client, &package.instance_id)
        .await
        .map_err(db_error(lang))?;
    let runways = runways_of(&client, std::slice::from_ref(&package), now, lang).await?;
    let name = console.sku_name(&package);
    let view = pages::PackageView {
        package: &package,
        sku_name: &name,
        renew_link: console.renew_link(&package.instance_id),
        expiry_warning_days: console.config.expiry_warning_days,
        runway: runways.get(&package.instance_id),
    };
    let read = pages::PackageUsage {
        days: &days,
        by_task: &by_task,
        usage: &drawn,
        grants: &grants,
    };
    let body = pages::package(lang, &customer.who(), &view, window, &read, now);
    Ok(signed_in_page(&console, &customer, StatusCode::OK, body))
}

/// `GET /console/packages/{id}/statement.csv`: the statement of the last 90 days (or since the
/// purchase), in the page's language ([`statement`]).
async fn statement_csv(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let (customer, package) = match package_context(&console, &req, &client, &path, lang).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let window = usage::WINDOWS_DAYS[usage::WINDOWS_DAYS.len() - 1];
    let now = Utc::now();
    let days = usage::daily(&client, &package.instance_id, window, now)
        .await
        .map_err(db_error(lang))?;
    let grants = usage::grants(&client, &package.instance_id)
        .await
        .map_err(db_error(lang))?;
    let release = match package.status {
        PackageStatus::Released => usage::release(&client, &package.instance_id)
            .await
            .map_err(db_error(lang))?,
        _ => None,
    };
    let tasks: Vec<statement::TaskDay> =
        crate::usage::daily_by_task(&client, &package.instance_id, window, now)
            .await
            .map_err(db_error(lang))?
            .into_iter()
            .map(|(date, task, bytes)| statement::TaskDay {
                date,
                task_id: task.as_str().to_owned(),
                bytes,
            })
            .collect();
    let id = package.instance_id.as_str();
    let csv = statement::Statement {
        instance_id: id,
        created_on: usage::cst_date(package.created_at),
        balance_now: package.bytes_net(),
        days: &days,
        grants: &grants,
        tasks: &tasks,
        release,
    }
    .csv(lang);
    // Only characters safe in a header name the file; the id itself is in every row.
    let file: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut response = HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"statement-{file}.csv\""),
        ))
        .body(csv);
    if let Some(keys) = &console.credentials {
        let value = session::cookie_value(keys, &customer.session);
        let cookie = console.session_cookie(value, customer.expires_at);
        let _ = response.add_cookie(&cookie);
    }
    Ok(response)
}
