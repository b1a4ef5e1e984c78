//! HTTP routes, one file each.

pub mod body;
pub mod cloud_order;
pub mod health;
pub mod ledger;
pub mod metrics;
pub mod orders;
pub mod outbox;
pub mod page;
pub mod tasks;
pub mod traffic;
