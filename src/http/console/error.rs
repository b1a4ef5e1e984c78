//! The pages the console answers instead of the one asked for: the database away, a form or
//! query it cannot read, a method a path does not take, an address that is no page, a sign-in
//! link that signs no one in. Each is a page in the request's language, never the framework's
//! plain text nor the API's JSON.

use super::i18n::{lang_of, Lang};
use super::pages::{self, SignedIn};
use super::CONTENT_SECURITY_POLICY;
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use maud::html;

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

pub type PageResult = Result<HttpResponse, PageError>;

pub fn html_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// A page saying what was refused, with the way back to the overview.
pub fn refusal(lang: Lang, title: &str, text: &str, who: Option<&SignedIn<'_>>) -> String {
    pages::message(
        lang,
        title,
        text,
        who,
        html! { p { a href="/console" { (lang.t("common.cancel")) } } },
    )
}

/// The database could not answer: `503`, and the cause in the log.
pub fn unavailable(lang: Lang) -> impl FnOnce(&dyn std::error::Error) -> PageError {
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

pub fn db_error(lang: Lang) -> impl Fn(tokio_postgres::Error) -> PageError {
    move |error| unavailable(lang)(&error)
}

pub fn pool_error(lang: Lang) -> impl Fn(deadpool_postgres::PoolError) -> PageError {
    move |error| unavailable(lang)(&error)
}

/// A form post that is not one of our forms (no form body, too large, fields missing): a page
/// in the request's language, with the status saying why, never the framework's plain text.
pub fn form_refused(
    error: actix_web::error::UrlencodedError,
    req: &HttpRequest,
) -> actix_web::Error {
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
pub fn query_refused(
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
    let body = refusal(lang, &lang.t("form.title"), &lang.t(text), None);
    actix_web::error::InternalError::from_response(error, html_response(status, body)).into()
}

/// A method a console path does not take (a bookmarked `/console/logout`, say): a page saying so,
/// with the path's methods in `Allow`.
pub async fn method_not_allowed(req: HttpRequest, allow: String) -> HttpResponse {
    let lang = lang_of(&req);
    let body = refusal(
        lang,
        &lang.t("refused.title"),
        &lang.t("error.method"),
        None,
    );
    let mut response = html_response(StatusCode::METHOD_NOT_ALLOWED, body);
    if let Ok(allow) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// A console address that is no page (a mistyped or outdated link): a page saying so, in the
/// request's language, not the API's JSON.
pub async fn no_such_page(req: HttpRequest) -> HttpResponse {
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
            pages::to_login(lang),
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
