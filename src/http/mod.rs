//! The HTTP edge: everything the service answers over HTTP, above the core it calls.
//!
//! - [`startup`] builds the application: the server, its middleware in order, the route table and
//!   the background workers it starts beside them.
//! - [`routes`], one file per resource of the JSON API; [`api`], the bodies they answer with and
//!   the schemas of the API document; [`console`], the customer console's pages.
//! - What every route shares: [`state`] (what a request can reach), [`auth`] (who is calling),
//!   [`error`] (the error body), [`request`], [`body`] and [`page`] (ids and queries, request
//!   bodies, paged reads), [`protocol`] (what HTTP asks of every answer), [`request_log`] and
//!   [`request_metrics`] (what each request leaves behind).

pub mod api;
pub mod auth;
pub mod body;
pub mod console;
pub mod error;
pub mod page;
pub mod protocol;
pub mod request;
pub mod request_log;
pub mod request_metrics;
pub mod routes;
pub mod startup;
pub mod state;
