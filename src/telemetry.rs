//! Structured logs: human-readable by default, one JSON object per line with
//! `LEDGER_LOG_FORMAT=json`. `RUST_LOG` picks the levels (default `info`).
//!
//! Nothing here knows about secrets: they are kept out of logs by never formatting them
//! ([`crate::configuration::Secret`] prints `***`).

use std::io::IsTerminal;
use tracing_subscriber::{fmt, EnvFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber; later calls (several test apps in one process) are no-ops.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
