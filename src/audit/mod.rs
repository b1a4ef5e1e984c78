//! What finance and auditors run against the ledger without trusting the service.

pub mod archive;
pub mod checkpoint;
pub mod export;
pub mod hasher;
pub mod months;
pub mod replay;
pub mod report;
pub mod restore_proof;
pub mod snapshot;
pub mod source;
pub mod trust;
pub mod verify;
