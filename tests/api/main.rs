//! Integration tests: the real service over HTTP against a real PostgreSQL.

mod audit;
mod health;
mod helpers;
mod marketplace;
mod provenance;
mod serve;
mod store;
mod tasks;
mod traffic;
mod webhooks;
