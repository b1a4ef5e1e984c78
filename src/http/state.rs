//! What every request can reach: the shared state of the HTTP application and the request's id.
//!
//! A leaf module: it imports no route, so routes, `auth` and the console take it without going
//! through `startup`, which assembles the application from them.

use crate::configuration::Config;
use crate::credentials::Credentials;
use crate::ingest::Ingest;
use crate::ledger::Ledger;
use crate::store::Metadata;
use crate::supervisor::Supervisor;
use actix_web::{HttpMessage, HttpRequest};
use deadpool_postgres::Pool;
use std::sync::Arc;

/// What every handler can reach.
pub struct AppState {
    pub pool: Pool,
    pub ledger: Ledger,
    pub config: Arc<Config>,
    /// Issues and checks order credentials and console sessions; `None` without any secret.
    pub credentials: Option<Credentials>,
    /// The base URL customers reach this service at, without a trailing slash.
    pub public_url: String,
    pub ingest: Arc<Ingest>,
    /// The background workers, for `/readyz`.
    pub supervisor: Arc<Supervisor>,
}

impl AppState {
    /// What the marketplace's callbacks need.
    pub fn marketplace(&self) -> crate::marketplace::Context<'_> {
        crate::marketplace::Context {
            ledger: &self.ledger,
            pool: &self.pool,
            config: &self.config,
            credentials: self.credentials.as_ref(),
            public_url: &self.public_url,
        }
    }
}

/// The id of the current request, also returned as `x-request-id` and written into event metadata.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id the request-id middleware gave the request (a new one for a request it did not
    /// see).
    pub fn of(req: &HttpRequest) -> RequestId {
        req.extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().to_string()))
    }

    /// What the ledger records of a change this request makes: from `source` (`tasks`,
    /// `operator`, `console`…), by `actor` (as the caller is named in events).
    pub fn metadata(self, source: &'static str, actor: String) -> Metadata {
        Metadata {
            request_id: self.0,
            source,
            actor,
        }
    }
}

impl actix_web::FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<RequestId, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(Ok(RequestId::of(req)))
    }
}
