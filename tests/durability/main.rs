//! Durability (DESIGN §11, invariant I11): nothing acknowledged is lost when the primary's
//! machine is. Each test builds real PostgreSQL servers on this machine (a primary and a
//! synchronous standby made by `pg_basebackup`, or two Patroni members over etcd), runs the real
//! `serve` binary on a multi-host URL while agents report traffic and the marketplace calls,
//! kills the primary with `kill -9`, and checks the server that took over. The figures (time
//! until the service answered again, events checked) are printed: `cargo test --test durability
//! -- --nocapture`.

mod cluster;
mod operator;
mod patroni;
mod service;
