//! Structured logs: human-readable by default, one JSON object per line with
//! `LEDGER_LOG_FORMAT=json`. `RUST_LOG` picks the levels (default `info`).
//!
//! Nothing here knows about secrets: they are kept out of logs by never formatting them
//! ([`crate::configuration::Secret`] prints `***`).
//!
//! Nothing from outside can forge a line either: in the human format every field value, the
//! message included, is written with its control characters escaped ([`EscapedFields`]), so a
//! decoded `%0A` in a parameter's name shows as `\n` inside its own line; JSON lines are escaped
//! by JSON itself.

use std::fmt::Write as _;
use std::io::IsTerminal;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
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
        LogFormat::Human => builder.fmt_fields(EscapedFields).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// The human format's fields: tracing-subscriber's own layout (`name=value`, the message first),
/// with every value's control characters escaped as it is written. Values are whatever the code
/// logs (`%error` writes an error's text as it is, and an error may quote a caller's input), so
/// the escaping is done here, once for every line, rather than trusted to each call.
pub struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = EscapingVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> EscapingVisitor<'a> {
        EscapingVisitor(DefaultVisitor::new(target, true))
    }
}

/// tracing-subscriber's visitor, given every value through [`Escaped`].
pub struct EscapingVisitor<'a>(DefaultVisitor<'a>);

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // As the default visitor does: the message as text, other strings quoted.
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.record_debug(field, &format_args!("{text}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.record_debug(field, &Escaped(value));
    }
}

impl VisitOutput<std::fmt::Result> for EscapingVisitor<'_> {
    fn finish(self) -> std::fmt::Result {
        self.0.finish()
    }
}

impl VisitFmt for EscapingVisitor<'_> {
    fn writer(&mut self) -> &mut dyn std::fmt::Write {
        self.0.writer()
    }
}

/// A value written with its control characters (and the Unicode line and paragraph separators,
/// which some viewers break lines at) escaped, so that it cannot end its line or start another.
struct Escaped<'a>(&'a dyn std::fmt::Debug);

impl std::fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(EscapingWriter(f), "{:?}", self.0)
    }
}

struct EscapingWriter<'a, 'b>(&'a mut std::fmt::Formatter<'b>);

impl std::fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for c in s.chars() {
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                    write!(self.0, "\\u{{{:x}}}", u32::from(c))?
                }
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Everything the subscriber writes, kept.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn human_lines(log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = fmt()
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[derive(Debug, thiserror::Error)]
    #[error("parameter {0} appears more than once")]
    struct Quoting(String);

    #[test]
    fn no_value_from_outside_can_start_a_line_of_its_own() {
        let forged =
            "x\n2026-01-01T00:00:00Z ERROR dts_ledger::audit: verify: BROKEN\r\u{1b}[2J\u{2028}";
        let error = Quoting(forged.to_owned());
        let text = human_lines(|| {
            tracing::warn!(%error, name = forged, debugged = ?forged, "refused {forged}");
            tracing::info_span!("request", route = %forged).in_scope(|| {
                tracing::info!(e = &error as &dyn std::error::Error, "inside");
            });
        });
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains('\r') && !text.contains('\u{1b}') && !text.contains('\u{2028}'));
        assert!(
            !text.lines().any(|line| line.starts_with("2026-01-01")),
            "{text}"
        );
        assert!(
            text.contains("error=parameter x\\n2026-01-01T00:00:00Z ERROR dts_ledger::audit"),
            "{text}"
        );
        assert!(text.contains("refused x\\n2026"), "the message too: {text}");
        assert!(text.contains("\\u{1b}[2J\\u{2028}"), "{text}");
        // Ordinary text, Chinese included, is written as it is.
        let plain = human_lines(|| tracing::info!(name = %"流量包 biz-1", "fine"));
        assert!(plain.contains("fine name=流量包 biz-1"), "{plain}");
    }
}
