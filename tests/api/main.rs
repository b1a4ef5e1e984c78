//! Integration tests: the real service over HTTP against a real PostgreSQL.

mod audit;
mod health;
mod helpers;
mod marketplace;
mod processes;
mod serve;
mod store;
mod tasks;
mod traffic;
mod webhooks;
