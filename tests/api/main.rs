//! Integration tests: the real service over HTTP against a real PostgreSQL.

mod audit;
mod console;
mod console_hardening;
mod contract;
mod credentials;
mod health;
mod helpers;
mod http_semantics;
mod marketplace;
mod marketplace_hardening;
mod marketplace_revision;
mod metrics;
mod openapi;
mod operator_errors;
mod plans;
mod processes;
mod provenance;
mod request_logs;
mod roles;
mod serve;
mod store;
mod tasks;
mod tools;
mod tour;
mod traffic;
mod webhooks;
