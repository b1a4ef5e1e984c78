//! dts-ledger: the billing ledger of a data transmission service sold as prepaid traffic packages
//! on the JD Cloud marketplace.

pub mod audit;
pub mod cli;
pub mod configuration;
pub mod credentials;
pub mod database;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod ledger;
pub mod marketplace;
pub mod metrics;
pub mod outbox;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod usage;
