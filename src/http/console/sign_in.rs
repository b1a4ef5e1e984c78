//! `GET|POST /console/login`: signing in with the order credential (`instanceId` + `authCode`),
//! under the brakes of [`super::throttle`]; `POST /console/logout`: signing out.

use super::customer::{
    csrf_ok, csrf_refused, customer, open_session, package, return_path, see_other, session_cookie,
};
use super::error::{db_error, html_response, pool_error, unavailable, PageError, PageResult};
use super::i18n::{lang_of, Lang};
use super::{csrf, pages, session, throttle, Console};
use crate::credentials::Credentials;
use actix_web::cookie::SameSite;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use projections::ids::InstanceId;
use projections::{Package, PackageStatus};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct LoginQuery {
    /// The console page to come back to after signing in.
    next: Option<String>,
    /// Why the form is shown: `expired` (a form posted after its session ended), `ended` (a page
    /// asked for after it ended), `signed_out`.
    why: Option<String>,
}

/// `GET /console/login`: the form.
pub async fn form(
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
        let cookie = console
            .cookie(csrf::LOGIN_COOKIE, nonce, SameSite::Strict)
            .finish();
        let _ = response.add_cookie(&cookie);
    }
    response
}

#[derive(Deserialize)]
pub struct LoginForm {
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
pub async fn submit(
    console: web::Data<Console>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> PageResult {
    let lang = lang_of(&req);
    let typed_id: String = form
        .instance_id
        .trim()
        .chars()
        .take(throttle::FIELD_CHARS_MAX)
        .collect();
    let next = return_path(&form.next).unwrap_or("");
    // The form again, with what was typed and why it signed no one in.
    let refused = |status: StatusCode, error: &str| {
        let view = pages::LoginView {
            error: Some(error),
            notice: None,
            typed_id: &typed_id,
            next,
        };
        login_page(&console, &req, lang, status, &view)
    };
    let Some(keys) = &console.credentials else {
        let unavailable = lang.t("login.unavailable");
        return Ok(refused(StatusCode::FORBIDDEN, &unavailable));
    };
    // Another site cannot sign a visitor in to an account of its choosing (login CSRF): only a
    // post of our own form, with the token that goes with its cookie, is looked at.
    let nonce = req
        .cookie(csrf::LOGIN_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if !csrf::same_origin(&req, &console.origin) || !csrf::check_login(keys, &nonce, &form.csrf) {
        tracing::info!("console: sign-in refused: not posted from this site's own form");
        return Ok(refused(StatusCode::FORBIDDEN, &lang.t("login.forged")));
    }
    // The peer address, not a forwarded header anyone can write; behind a proxy every customer
    // shares the proxy's address and its (larger) limit.
    let address = req
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
    let attempt = throttle::Attempt::new(&address, &typed_id);
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
            tokio::time::sleep(std::time::Duration::from_millis(throttle::FAILURE_DELAY_MS)).await;
            let mut page = refused(status, &lang.t(message));
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
    attempt: &throttle::Attempt,
    (typed_id, auth_code): (&str, &str),
    address: &str,
    next: &str,
    lang: Lang,
) -> Result<SignIn, PageError> {
    let mut client = console.pool.get().await.map_err(pool_error(lang))?;
    let verdict = throttle::admit(&mut client, attempt, Utc::now())
        .await
        .map_err(db_error(lang))?;
    if verdict != throttle::Verdict::Try {
        tracing::warn!(%address, ?verdict, "console: sign-in refused untried, too many failures");
        return Ok(SignIn::Refused(
            StatusCode::TOO_MANY_REQUESTS,
            "login.throttled",
        ));
    }
    let Some(package) = credential_holder(keys, &client, typed_id, auth_code, lang).await? else {
        tracing::info!(%address, "console: wrong order credential");
        return Ok(SignIn::Refused(StatusCode::UNAUTHORIZED, "login.wrong"));
    };
    throttle::forgive(&client, attempt)
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
    keys: &Credentials,
    client: &deadpool_postgres::Object,
    typed_id: &str,
    auth_code: &str,
    lang: Lang,
) -> Result<Option<Package>, PageError> {
    let instance_id = InstanceId::parse(typed_id.to_owned()).ok();
    let right = match &instance_id {
        Some(id) if auth_code.chars().count() <= throttle::FIELD_CHARS_MAX => {
            // Only the code of the credential's current generation opens the account.
            let generation = crate::ledger::orders::credential_generation(client, id)
                .await
                .map_err(|e| unavailable(lang)(&e))?;
            keys.is_auth_code(id, generation, auth_code.trim())
        }
        _ => false,
    };
    let (Some(id), true) = (&instance_id, right) else {
        return Ok(None);
    };
    package(client, id.as_str(), lang).await
}

#[derive(Deserialize)]
pub struct SignOutForm {
    csrf: String,
}

/// `POST /console/logout`: ends the session, from one of our pages only.
pub async fn sign_out(
    console: web::Data<Console>,
    req: HttpRequest,
    form: web::Form<SignOutForm>,
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
    let mut gone = session_cookie(&console, String::new(), Utc::now());
    gone.make_removal();
    Ok(see_other("/console/login?why=signed_out")
        .cookie(gone)
        .finish())
}
