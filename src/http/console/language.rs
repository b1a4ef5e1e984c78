//! `GET /console/lang/{code}`: the language switch, remembered in a cookie.

use super::customer::see_other;
use super::i18n::{self, Lang};
use super::Console;
use actix_web::cookie::{time::Duration as CookieDuration, SameSite};
use actix_web::{web, HttpResponse};
use serde::Deserialize;

/// How long the language switch is remembered.
const LANG_COOKIE_DAYS: i64 = 365;

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Remembers the language and goes back (only to our own pages).
pub async fn switch(
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
    // `Lax`: sent also when a customer arrives from another site (the marketplace's sign-in
    // link), so the first page is already in their language.
    let cookie = console
        .cookie(i18n::LANG_COOKIE, lang.code().to_owned(), SameSite::Lax)
        .max_age(CookieDuration::days(LANG_COOKIE_DAYS))
        .finish();
    see_other(back).cookie(cookie).finish()
}
