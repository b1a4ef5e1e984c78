//! What finance and auditors run against the ledger without trusting the service.

pub mod verify;
