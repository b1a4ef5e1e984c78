//! The bodies the HTTP API answers with, one module per resource: plain serde types shared by the
//! handlers and the tests, from which a document of the API can be generated.
//!
//! Field names are camelCase on the wire; an optional field the API has always sent as `null` is an
//! `Option` without `skip_serializing_if`, one it leaves out when empty carries it.

pub mod error;
pub mod health;
pub mod landing;
pub mod ledger;
pub mod limits;
pub mod marketplace;
pub mod orders;
pub mod outbox;
pub mod refusals;
pub mod traffic;
