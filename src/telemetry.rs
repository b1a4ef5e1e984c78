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

use crate::state::RequestId;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Instant;
use tracing::field::{Field, Visit};
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;
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

/// The target of the one line logged per request: `RUST_LOG=info,dts_ledger::request=warn`
/// keeps only the failed ones on a busy hot path.
pub const REQUEST_TARGET: &str = "dts_ledger::request";

/// The span of each HTTP request (`tracing-actix-web`'s middleware opens and closes it), and the
/// line logged when it ends: route pattern, method, status, latency and request id.
///
/// Instead of the default span, which records the raw target with its query string: the
/// marketplace's callback carries its signature there, and ids belong in the ledger, not in
/// every log line.
pub struct RequestSpan;

/// When the request reached the middleware.
#[derive(Clone, Copy)]
struct Started(Instant);

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        // The middleware's id, inserted just before: one id for the log, the `x-request-id`
        // header and the ledger's metadata.
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), ToString::to_string);
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        request.extensions_mut().insert(Started(Instant::now()));
        let route = request
            .match_pattern()
            .unwrap_or_else(|| crate::metrics::http::UNMATCHED.to_owned());
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = crate::metrics::http::method_label(request.method()),
            route = %route,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, latency_ms, request) = match outcome {
            Ok(response) => {
                let request = response.request();
                let started = request.extensions().get::<Started>().copied();
                let latency_ms = started.map(|s| s.0.elapsed().as_micros() as f64 / 1e3);
                (response.status(), latency_ms, Some(request))
            }
            Err(error) => (error.as_response_error().status_code(), None, None),
        };
        let request_id = request
            .and_then(|r| r.extensions().get::<RequestId>().cloned())
            .map(|id| id.0)
            .unwrap_or_default();
        let route = request
            .and_then(HttpRequest::match_pattern)
            .unwrap_or_else(|| crate::metrics::http::UNMATCHED.to_owned());
        let method = request.map_or("", |r| crate::metrics::http::method_label(r.method()));
        let _entered = span.enter();
        if status.is_server_error() {
            tracing::warn!(
                target: REQUEST_TARGET,
                request_id,
                method,
                route,
                status = status.as_u16(),
                latency_ms,
                "request failed"
            );
        } else {
            tracing::info!(
                target: REQUEST_TARGET,
                request_id,
                method,
                route,
                status = status.as_u16(),
                latency_ms,
                "request served"
            );
        }
    }
}

/// Returns the request's id as `x-request-id` (`middleware::from_fn`), for clients to quote.
pub async fn request_id_header(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = request.extensions().get::<RequestId>().cloned();
    let mut response = next.call(request).await?;
    if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(&id.0).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
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
