//! The customer console (DESIGN §12): what a DTS customer sees and does after signing in, served
//! as HTML by the service itself under `/console`.
//!
//! Sign-in comes from the marketplace's login-free link (a single-use ticket, exchanged for a
//! session cookie) or from the order credential. A session names a customer (`jdPin`), who sees
//! every package of that account and the tasks drawing from them, and nothing else.
//!
//! One file per page or flow: [`overview`], [`enter`] (the login-free link), [`sign_in`] (the
//! order credential, and signing out), [`language`], [`package`] (a package's page and its CSV
//! statement), [`renew`] and [`destroy`] (a task's two forms, sharing [`task_form`]),
//! [`credential`] (replacing the order credential). What they share: this file (the console's
//! state and its routes), [`customer`] (who is signed in, and what is theirs), [`error`] (the
//! pages answered instead of the one asked for).

pub mod chart;
mod credential;
pub mod csrf;
mod customer;
mod destroy;
mod enter;
mod error;
mod flash;
pub mod format;
pub mod i18n;
mod language;
mod overview;
mod package;
pub mod pages;
mod renew;
pub mod session;
mod sign_in;
pub mod statement;
mod task_form;
pub mod throttle;
pub mod usage;

pub use error::sign_in_link_refused;

use crate::configuration::Config;
use crate::credentials::Credentials;
use crate::http::state::AppState;
use crate::ledger::Ledger;
use actix_web::cookie::{CookieBuilder, SameSite};
use actix_web::dev::HttpServiceFactory;
use actix_web::http::header;
use actix_web::{middleware, web, HttpResponse};
use deadpool_postgres::Pool;
use error::{form_refused, method_not_allowed, no_such_page, query_refused};
use projections::ids::InstanceId;
use projections::Package;
use std::sync::Arc;

/// The policy every console answer carries: nothing but our own stylesheet and forms; no script,
/// no frames, no third-party resource of any kind.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Largest form accepted: the console's forms carry a few short fields.
pub const FORM_BYTES_MAX: usize = 4 * 1024;

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
    /// The share of the pool sign-ins may hold at once ([`throttle::concurrent_max`]): one gate
    /// for every worker thread of the process, as they share one pool.
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
        sign_ins: tokio::sync::Semaphore::new(throttle::concurrent_max(state.config.pool_size)),
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
    GET "" => overview::overview;
    GET "/" => overview::overview;
    GET "/console.css" => stylesheet;
    GET "/enter" => enter::enter;
    GET "/login" => sign_in::form;
    POST "/login" => sign_in::submit;
    POST "/logout" => sign_in::sign_out;
    GET "/lang/{code}" => language::switch;
    GET "/packages/{instance_id}" => package::page;
    GET "/packages/{instance_id}/statement.csv" => package::statement_csv;
    GET "/tasks/{task_id}/renew" => renew::form;
    POST "/tasks/{task_id}/renew" => renew::submit;
    GET "/tasks/{task_id}/destroy" => destroy::form;
    POST "/tasks/{task_id}/destroy" => destroy::submit;
    GET "/packages/{instance_id}/credential" => credential::form;
    POST "/packages/{instance_id}/credential" => credential::submit;
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("console.css"))
}

impl Console {
    /// A cookie of the console's: for its pages only, out of scripts' reach, sent over TLS when
    /// customers reach us over https, and to our own pages only (`Strict`) or also on a link
    /// followed from elsewhere (`Lax`).
    fn cookie(
        &self,
        name: &'static str,
        value: String,
        same_site: SameSite,
    ) -> CookieBuilder<'static> {
        CookieBuilder::new(name, value)
            .path("/console")
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(same_site)
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
