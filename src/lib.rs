//! dts-ledger: the billing ledger of a data transmission service sold as prepaid traffic packages
//! on the JD Cloud marketplace.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod configuration;
pub mod console;
pub mod database;
pub mod domain;
pub mod error;
pub mod ingest;
pub mod init;
pub mod ledger;
pub mod marketplace;
pub mod metrics;
pub mod outbox;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod usage;
