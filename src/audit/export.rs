//! The raw ledger for finance: one row per event, in position order, with the figures finance
//! books as columns, as CSV or JSON lines. Read only and streamed.

use super::source::{self, Range, Selection};
use crate::store::hash::Hash;
use crate::store::{EventRow, MetadataRun, PrevHashes};
use projections::events::Event;
use projections::ids::{InstanceId, TaskId};
use serde_json::{json, Value};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("event at position {position} cannot be read: {source}")]
    Decode {
        position: i64,
        source: projections::events::DecodeError,
    },
    #[error("writing the export failed: {0}")]
    Write(#[from] std::io::Error),
    #[error("{}", crate::store::describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

/// The columns, in order.
pub const COLUMNS: [&str; 17] = [
    "position",
    "recordedAt",
    "streamId",
    "version",
    "type",
    "instanceId",
    "taskId",
    "orderId",
    "orderNumber",
    "reportId",
    "bytes",
    "skuId",
    "skuName",
    "unitPrice",
    "amount",
    "currency",
    "hash",
];

/// One cell of an export row. Text may have come from outside (ids, SKU names), so a CSV writes it
/// through [`csv_text`]; numbers are ours and written as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cell {
    Text(String),
    Number(String),
}

impl Cell {
    fn csv(&self) -> String {
        match self {
            Cell::Text(text) => csv_text(text),
            Cell::Number(number) => csv_field(number),
        }
    }

    fn into_json(self) -> Value {
        match self {
            Cell::Text(text) | Cell::Number(text) => Value::String(text),
        }
    }
}

/// The figures finance books, from an event: package, task, order (`orderId`, `orderNumber`),
/// report, the bytes it moves (granted, consumed or forfeited), SKU, price, amount, currency.
fn figures(event: &Event) -> [Option<Cell>; 11] {
    fn text(value: &impl ToString) -> Option<Cell> {
        Some(Cell::Text(value.to_string()))
    }
    fn number(value: &impl ToString) -> Option<Cell> {
        Some(Cell::Number(value.to_string()))
    }
    // Package and task only.
    let about = |instance: &InstanceId, task: Option<&TaskId>| {
        [
            text(instance),
            task.and_then(text),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ]
    };
    macro_rules! grant {
        ($e:expr) => {
            [
                text(&$e.instance_id),
                None,
                $e.order_id.as_ref().and_then(text),
                $e.order_number.as_ref().and_then(text),
                None,
                number(&$e.bytes_granted),
                text(&$e.sku_id),
                text(&$e.sku_name),
                number(&$e.unit_price),
                number(&$e.amount),
                text(&$e.currency),
            ]
        };
    }
    match event {
        Event::OrderCreated(e) => grant!(e),
        Event::OrderRenewed(e) => grant!(e),
        Event::OrderUpgraded(e) => grant!(e),
        Event::OrderDilated(e) => grant!(e),
        Event::OrderReleased(e) => {
            let mut row = about(&e.instance_id, None);
            row[5] = number(&e.bytes_forfeited);
            row
        }
        Event::TrafficConsumed(e) => {
            let mut row = about(&e.instance_id, Some(&e.task_id));
            row[4] = text(&e.report_id);
            row[5] = number(&e.bytes);
            row
        }
        Event::OrderExpired(e) => about(&e.instance_id, None),
        Event::OrderBalanceLow(e) => about(&e.instance_id, None),
        Event::OrderRunwayShort(e) => about(&e.instance_id, None),
        Event::OrderExpiryHeld(e) => about(&e.instance_id, None),
        Event::OrderCredentialRotated(e) => about(&e.instance_id, None),
        // About the ledger itself: no package, task or money.
        Event::LedgerRestoreAccepted(_) => Default::default(),
        Event::TaskCreated(e) => about(&e.instance_id, Some(&e.task_id)),
        Event::TaskRebound(e) => about(&e.instance_id, Some(&e.task_id)),
        Event::TaskStopped(e) => about(&e.instance_id, Some(&e.task_id)),
        Event::TaskResumed(e) => about(&e.instance_id, Some(&e.task_id)),
        Event::TaskDestroyed(e) => about(&e.instance_id, Some(&e.task_id)),
    }
}

/// What a spreadsheet may take for the start of a formula (OWASP's list: `=`, `+`, `-`, `@`, tab,
/// carriage return), and their full-width forms, which spreadsheets in Chinese and Japanese
/// locales also read as formulas.
const FORMULA_STARTS: [char; 10] = [
    '=', '+', '-', '@', '\t', '\r', '\u{ff1d}', '\u{ff0b}', '\u{ff0d}', '\u{ff20}',
];

/// A text cell of CSV: text that starts like a formula gets a leading `'`, so a spreadsheet shows
/// it instead of running it. Every text that can have come from outside (ids, SKU names, stream
/// names) goes through here; numbers never do.
pub fn csv_text(value: &str) -> String {
    if value.starts_with(FORMULA_STARTS) {
        csv_field(&format!("'{value}"))
    } else {
        csv_field(value)
    }
}

/// One CSV field, quoted when it holds a separator, a quote or a line break.
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The CSV header (after a byte order mark: spreadsheet programs then read the text as UTF-8,
/// Chinese SKU names included); nothing for JSON lines.
pub fn write_header(format: Format, out: &mut impl Write) -> Result<(), ExportError> {
    if format == Format::Csv {
        out.write_all("\u{feff}".as_bytes())?;
        writeln!(out, "{}", COLUMNS.join(","))?;
    }
    Ok(())
}

/// Writes the events of `range` to `out`, header first; returns how many.
pub async fn export(
    tx: &tokio_postgres::Transaction<'_>,
    range: Range,
    format: Format,
    out: &mut impl Write,
) -> Result<u64, ExportError> {
    write_header(format, out)?;
    export_rows(tx, range, format, out).await
}

/// Writes the events of `range` to `out`, without a header; returns how many.
pub async fn export_rows(
    tx: &tokio_postgres::Transaction<'_>,
    range: Range,
    format: Format,
    out: &mut impl Write,
) -> Result<u64, ExportError> {
    // A range may start inside an append, after the row holding its metadata.
    let mut metadata = MetadataRun::starting_with(
        crate::store::metadata_at(tx, range.after)
            .await
            .map_err(std::io::Error::other)?,
    );
    // Likewise for the previous hash of rows that store none (migration 25).
    let mut prev_hashes = PrevHashes::starting_with(if range.after > 0 {
        let db = |e: tokio_postgres::Error| std::io::Error::other(crate::store::describe(&e));
        let until = source::last_position(tx, range.until).await.map_err(db)?;
        crate::store::prev_hashes_before(tx, range.after, until.unwrap_or(i64::MAX))
            .await
            .map_err(db)?
    } else {
        Default::default()
    });
    let count = source::for_each(tx, range, Selection::ALL, |row| {
        let row = EventRow::from_columns(row)?;
        let resolved = metadata.resolve(row.metadata.map(|m| m.0));
        let prev_hash = prev_hashes.resolve(row.stream_id, row.version, row.prev_hash, row.hash);
        write_row(&row, prev_hash.as_ref(), resolved, format, out)
    })
    .await?;
    out.flush()?;
    Ok(count)
}

/// Writes one event.
///
/// `prev_hash` and `metadata` are the row's previous hash and metadata text, resolved
/// ([`PrevHashes`], [`MetadataRun`]).
pub fn write_row(
    row: &EventRow<'_>,
    prev_hash: Option<&Hash>,
    metadata: Option<&[u8]>,
    format: Format,
    out: &mut impl Write,
) -> Result<(), ExportError> {
    // Never a row with silently blank figures: an event this version cannot read stops the
    // export, naming it.
    let event = Event::decode_json(
        row.event_type,
        row.event_version,
        row.stream_id,
        &row.payload,
    )
    .map_err(|source| ExportError::Decode {
        position: row.position,
        source,
    })?;
    let figures = figures(&event);
    let hash = hex::encode(row.hash);
    let recorded_at = row
        .recorded_at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    match format {
        Format::Csv => {
            let mut cells = vec![
                csv_field(&row.position.to_string()),
                csv_field(&recorded_at),
                csv_text(row.stream_id),
                csv_field(&row.version.to_string()),
                csv_text(row.event_type),
            ];
            cells.extend(
                figures
                    .iter()
                    .map(|f| f.as_ref().map(Cell::csv).unwrap_or_default()),
            );
            cells.push(hash);
            writeln!(out, "{}", cells.join(","))?;
        }
        Format::Jsonl => {
            let mut line = json!({
                "position": row.position,
                "recordedAt": recorded_at,
                "streamId": row.stream_id,
                "version": row.version,
                "type": row.event_type,
                "eventVersion": row.event_version,
            });
            for (name, value) in COLUMNS[5..16].iter().zip(figures) {
                line[*name] = value.map_or(Value::Null, Cell::into_json);
            }
            line["hash"] = Value::String(hash);
            line["prevHash"] = prev_hash.map_or(Value::Null, |h| Value::String(hex::encode(h)));
            line["data"] = serde_json::from_slice(&row.payload).unwrap_or(Value::Null);
            line["metadata"] = metadata
                .and_then(|text| serde_json::from_slice(text).ok())
                .unwrap_or(Value::Null);
            serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("DTS 1TB"), "DTS 1TB");
        assert_eq!(csv_field("流量包,1TB"), "\"流量包,1TB\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_text("-1+2"), "'-1+2");
        assert_eq!(csv_text("biz-1"), "biz-1");
        assert_eq!(csv_text("\u{ff1d}1+2"), "'\u{ff1d}1+2");
        assert_eq!(
            csv_text("=HYPERLINK(\"http://x\",\"click\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"click\"\")\""
        );
    }
}
