//! HTTP routes, one file each.

pub mod health;
