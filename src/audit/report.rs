//! The monthly usage and revenue report.
//!
//! Per package and in total, in bytes: the net balance at the month's opening, granted, consumed
//! and forfeited during the month, the net balance at its close and the overage then; in money:
//! revenue recognized during the month (see `projections::revenue`) and revenue still deferred at
//! its close. Balances are net (`remaining − overage`), so they can be negative, and every row
//! satisfies `opening + granted − consumed − forfeited = closing`, checked here.
//!
//! An event belongs to the month its `recorded_at` falls in, and the ledger is cut as a prefix in
//! position order: the month starts at the first event recorded at or after its first instant and
//! ends before the first event recorded at or after the next month's (see `source::last_position`).

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use projections::events::Event;
use projections::ids::InstanceId;
use projections::revenue::Revenue;
use projections::{FoldError, Projection};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl std::str::FromStr for Month {
    type Err = String;

    fn from_str(text: &str) -> Result<Month, String> {
        let bad = || format!("month {text:?} is not YYYY-MM (for example 2026-11)");
        let (year, month) = text.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u32 = month.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || year < 1970 {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Month {
    /// The first instant of the month and of the next one, in `zone`.
    pub fn bounds(self, zone: FixedOffset) -> (DateTime<Utc>, DateTime<Utc>) {
        let (next_year, next_month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        let start = |year, month| {
            let day = NaiveDate::from_ymd_opt(year, month, 1).expect("a valid month");
            zone.from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
                .single()
                .expect("fixed offsets have no gaps")
                .with_timezone(&Utc)
        };
        (start(self.year, self.month), start(next_year, next_month))
    }
}

/// One row of the report (a package, or the totals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub opening_bytes: i128,
    pub granted_bytes: i128,
    pub consumed_bytes: i128,
    pub forfeited_bytes: i128,
    pub closing_bytes: i128,
    pub overage_bytes: i128,
    #[serde(with = "rust_decimal::serde::str")]
    pub revenue_recognized: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub deferred_revenue: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthReport {
    pub month: String,
    pub currency: String,
    pub packages: Vec<Line>,
    pub totals: Line,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("event at position {position} does not follow from the events before it: {source}")]
    Fold { position: i64, source: FoldError },
    #[error("package {0}: opening + granted − consumed − forfeited ≠ closing")]
    Unbalanced(String),
    #[error("the ledger holds grants in several currencies ({0}); one report covers one currency")]
    MixedCurrencies(String),
}

#[derive(Debug, Clone, Default)]
struct Movement {
    granted: i128,
    consumed: i128,
    forfeited: i128,
    revenue: Decimal,
}

/// Folds the ledger up to the month's close, noting the opening and the movements of the month.
pub struct Builder {
    month: Month,
    /// Events up to this position are before the month.
    opening_position: i64,
    projection: Projection,
    revenue: Revenue,
    opening: Option<BTreeMap<InstanceId, i128>>,
    movements: BTreeMap<InstanceId, Movement>,
}

impl Builder {
    pub fn new(month: Month, opening_position: i64) -> Builder {
        Builder {
            month,
            opening_position,
            projection: Projection::default(),
            revenue: Revenue::default(),
            opening: None,
            movements: BTreeMap::new(),
        }
    }

    fn take_opening(&mut self) {
        if self.opening.is_none() {
            self.opening = Some(
                self.projection
                    .packages
                    .iter()
                    .map(|(id, p)| (id.clone(), p.bytes_net()))
                    .collect(),
            );
        }
    }

    /// Folds the next event (in position order) of the ledger up to the month's close.
    pub fn push(
        &mut self,
        position: i64,
        event: &Event,
        at: DateTime<Utc>,
    ) -> Result<(), ReportError> {
        let fold = |source| ReportError::Fold { position, source };
        let during = position > self.opening_position;
        if during {
            self.take_opening();
        }
        self.projection.apply_to_package(event, at).map_err(fold)?;
        let recognized = self.revenue.apply(event).map_err(fold)?;
        if !during {
            return Ok(());
        }
        let bytes = |b: projections::ids::Bytes| i128::from(b.get());
        let (instance_id, granted, consumed, forfeited) = match event {
            Event::OrderCreated(e) => (&e.instance_id, bytes(e.bytes_granted), 0, 0),
            Event::OrderRenewed(e) => (&e.instance_id, bytes(e.bytes_granted), 0, 0),
            Event::OrderUpgraded(e) => (&e.instance_id, bytes(e.bytes_granted), 0, 0),
            Event::OrderDilated(e) => (&e.instance_id, bytes(e.bytes_granted), 0, 0),
            Event::TrafficConsumed(e) => (&e.instance_id, 0, bytes(e.bytes), 0),
            Event::OrderReleased(e) => (&e.instance_id, 0, 0, bytes(e.bytes_forfeited)),
            _ => return Ok(()),
        };
        let movement = self.movements.entry(instance_id.clone()).or_default();
        movement.granted += granted;
        movement.consumed += consumed;
        movement.forfeited += forfeited;
        if let Some((_, money)) = recognized {
            movement.revenue += money;
        }
        Ok(())
    }

    /// The report, as of the month's close (everything pushed so far).
    pub fn finish(mut self, default_currency: &str) -> Result<MonthReport, ReportError> {
        self.take_opening();
        let currency = match self.revenue.currencies() {
            [] => default_currency.to_owned(),
            [one] => one.clone(),
            many => return Err(ReportError::MixedCurrencies(many.join(", "))),
        };
        let opening = self.opening.take().unwrap_or_default();
        let mut totals = Line {
            instance_id: None,
            opening_bytes: 0,
            granted_bytes: 0,
            consumed_bytes: 0,
            forfeited_bytes: 0,
            closing_bytes: 0,
            overage_bytes: 0,
            revenue_recognized: Decimal::ZERO,
            deferred_revenue: Decimal::ZERO,
        };
        let mut packages = Vec::with_capacity(self.projection.packages.len());
        for (id, package) in &self.projection.packages {
            let movement = self.movements.get(id).cloned().unwrap_or_default();
            let line = Line {
                instance_id: Some(id.to_string()),
                opening_bytes: opening.get(id).copied().unwrap_or(0),
                granted_bytes: movement.granted,
                consumed_bytes: movement.consumed,
                forfeited_bytes: movement.forfeited,
                closing_bytes: package.bytes_net(),
                overage_bytes: i128::from(package.bytes_overage.get()),
                revenue_recognized: movement.revenue,
                deferred_revenue: self.revenue.deferred(id),
            };
            if line.opening_bytes + line.granted_bytes - line.consumed_bytes - line.forfeited_bytes
                != line.closing_bytes
            {
                return Err(ReportError::Unbalanced(id.to_string()));
            }
            totals.opening_bytes += line.opening_bytes;
            totals.granted_bytes += line.granted_bytes;
            totals.consumed_bytes += line.consumed_bytes;
            totals.forfeited_bytes += line.forfeited_bytes;
            totals.closing_bytes += line.closing_bytes;
            totals.overage_bytes += line.overage_bytes;
            totals.revenue_recognized += line.revenue_recognized;
            totals.deferred_revenue += line.deferred_revenue;
            packages.push(line);
        }
        let scale = |line: &mut Line| {
            line.revenue_recognized
                .rescale(line.revenue_recognized.scale().max(2));
            line.deferred_revenue
                .rescale(line.deferred_revenue.scale().max(2));
        };
        packages.iter_mut().for_each(scale);
        scale(&mut totals);
        Ok(MonthReport {
            month: self.month.to_string(),
            currency,
            packages,
            totals,
        })
    }
}

const HEADER: [&str; 9] = [
    "instanceId",
    "openingBytes",
    "grantedBytes",
    "consumedBytes",
    "forfeitedBytes",
    "closingBytes",
    "overageBytes",
    "revenueRecognized",
    "deferredRevenue",
];

fn cells(line: &Line) -> [String; 9] {
    [
        line.instance_id.clone().unwrap_or_else(|| "TOTAL".into()),
        line.opening_bytes.to_string(),
        line.granted_bytes.to_string(),
        line.consumed_bytes.to_string(),
        line.forfeited_bytes.to_string(),
        line.closing_bytes.to_string(),
        line.overage_bytes.to_string(),
        line.revenue_recognized.to_string(),
        line.deferred_revenue.to_string(),
    ]
}

impl MonthReport {
    /// CSV with a UTF-8 byte order mark, so that spreadsheet programs read the text right.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("\u{feff}");
        out.push_str(&HEADER.join(","));
        out.push('\n');
        for line in self.packages.iter().chain(std::iter::once(&self.totals)) {
            let mut row: Vec<String> = cells(line)
                .iter()
                .map(|c| super::export::csv_field(c))
                .collect();
            row[0] = super::export::csv_text(line.instance_id.as_deref().unwrap_or("TOTAL"));
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }

    /// Aligned columns for a terminal.
    pub fn to_table(&self) -> String {
        let rows: Vec<[String; 9]> = std::iter::once(HEADER.map(String::from))
            .chain(self.packages.iter().map(cells))
            .chain(std::iter::once(cells(&self.totals)))
            .collect();
        let widths: Vec<usize> = (0..9)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = format!("month {} ({})\n", self.month, self.currency);
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| {
                    if c == 0 {
                        format!("{cell:<w$}", w = widths[c])
                    } else {
                        format!("{cell:>w$}", w = widths[c])
                    }
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::events::*;
    use projections::ids::{Bytes, JdPin, OrderId, ReportId, SkuId, TaskId};

    fn bytes(n: u64) -> Bytes {
        Bytes::new(n).unwrap()
    }

    fn id(n: &str) -> InstanceId {
        InstanceId::parse(n).unwrap()
    }

    fn created(package: &str, granted: u64, amount: &str) -> Event {
        Event::OrderCreated(OrderCreated {
            instance_id: id(package),
            jd_pin: JdPin::parse("pin").unwrap(),
            order_id: Some(OrderId::parse(format!("o-{package}")).unwrap()),
            order_number: None,
            service_code: "dts".into(),
            sku_id: SkuId::parse("sku").unwrap(),
            sku_name: "DTS 流量包".into(),
            sku_bytes: bytes(granted),
            units: 1,
            bytes_granted: bytes(granted),
            unit_price: amount.parse().unwrap(),
            amount: amount.parse().unwrap(),
            currency: "CNY".into(),
            expires_at: None,
            template: None,
        })
    }

    fn dilated(package: &str, granted: u64, amount: &str) -> Event {
        Event::OrderDilated(OrderDilated {
            instance_id: id(package),
            order_id: Some(OrderId::parse(format!("o-{package}-more")).unwrap()),
            order_number: None,
            sku_id: SkuId::parse("sku").unwrap(),
            sku_name: "DTS 流量包".into(),
            units: 1,
            bytes_granted: bytes(granted),
            unit_price: amount.parse().unwrap(),
            amount: amount.parse().unwrap(),
            currency: "CNY".into(),
        })
    }

    /// A report with the answer fields a fold of `projection` would give.
    fn consumed(projection: &mut Projection, package: &str, n: u64) -> Event {
        let (remaining, overage) = projection
            .package(&id(package))
            .unwrap()
            .after_consuming(bytes(n))
            .unwrap();
        Event::TrafficConsumed(TrafficConsumed {
            task_id: TaskId::parse("t").unwrap(),
            report_id: ReportId::parse(format!("r-{package}-{n}")).unwrap(),
            instance_id: id(package),
            bytes: bytes(n),
            period_start: None,
            period_end: DateTime::from_timestamp(0, 0).unwrap(),
            action: ReportAction::Continue,
            reason: None,
            bytes_remaining: remaining,
            bytes_overage: overage,
        })
    }

    /// October: A bought (1,000 B for 100.00) and 400 B used. November: A expanded (2,000 B for
    /// 300.00), 1,000 B used across both grants, then released; B bought (500 B for 75.00) and
    /// 700 B used (200 B overage); C bought (1,000 B for 50.00), 100 B used. December: B renewed.
    ///
    /// Long, and one idea: one worked month, its events and the figures computed by hand side by
    /// side; split, the figures would stand apart from the events they come from.
    #[test]
    fn a_hand_computed_month_matches_to_the_cent() {
        let cst = FixedOffset::east_opt(8 * 3600).unwrap();
        let month: Month = "2026-11".parse().unwrap();
        let (start, end) = month.bounds(cst);
        let october = start - chrono::Duration::days(3);
        let november = start + chrono::Duration::days(10);
        let december = end + chrono::Duration::days(1);
        let mut shadow = Projection::default();
        let mut events: Vec<(Event, DateTime<Utc>)> = Vec::new();
        let mut add = |shadow: &mut Projection, event: Event, at| {
            shadow.apply_to_package(&event, at).unwrap();
            events.push((event, at));
        };
        add(&mut shadow, created("A", 1_000, "100.00"), october);
        let e = consumed(&mut shadow, "A", 400);
        add(&mut shadow, e, october);
        add(&mut shadow, dilated("A", 2_000, "300.00"), november);
        let e = consumed(&mut shadow, "A", 1_000);
        add(&mut shadow, e, november);
        let forfeit = shadow.package(&id("A")).unwrap().bytes_remaining;
        add(
            &mut shadow,
            Event::OrderReleased(OrderReleased {
                instance_id: id("A"),
                bytes_forfeited: forfeit,
            }),
            november,
        );
        add(&mut shadow, created("B", 500, "75.00"), november);
        let e = consumed(&mut shadow, "B", 700);
        add(&mut shadow, e, november);
        add(&mut shadow, created("C", 1_000, "50.00"), november);
        let e = consumed(&mut shadow, "C", 100);
        add(&mut shadow, e, november);
        add(&mut shadow, dilated("B", 500, "75.00"), december);

        // Positions 1-2 are October's; the December event is past the month's close.
        let mut builder = Builder::new(month, 2);
        for (position, (event, at)) in events.iter().enumerate().take(events.len() - 1) {
            builder.push(position as i64 + 1, event, *at).unwrap();
        }
        let report = builder.finish("CNY").unwrap();
        let row = |id: &str| {
            report
                .packages
                .iter()
                .find(|l| l.instance_id.as_deref() == Some(id))
                .unwrap()
                .clone()
        };
        let money = |m: &str| m.parse::<Decimal>().unwrap();
        let movements = |l: &Line| {
            (
                l.opening_bytes,
                l.granted_bytes,
                l.consumed_bytes,
                l.forfeited_bytes,
            )
        };
        let a = row("A");
        assert_eq!(movements(&a), (600, 2_000, 1_000, 1_600));
        assert_eq!((a.closing_bytes, a.overage_bytes), (0, 0));
        // 600 B at 0.10 + 400 B at 0.15, then 1,600 B at 0.15 forfeited.
        assert_eq!(a.revenue_recognized, money("360.00"));
        assert_eq!(a.deferred_revenue, money("0.00"));
        let b = row("B");
        assert_eq!(
            (b.opening_bytes, b.closing_bytes, b.overage_bytes),
            (0, -200, 200)
        );
        assert_eq!(b.revenue_recognized, money("75.00"));
        let c = row("C");
        assert_eq!(c.revenue_recognized, money("5.00"));
        assert_eq!(c.deferred_revenue, money("45.00"));
        let t = &report.totals;
        assert_eq!(movements(t), (600, 3_500, 1_800, 1_600));
        assert_eq!((t.closing_bytes, t.overage_bytes), (700, 200));
        assert_eq!(t.revenue_recognized.to_string(), "440.00");
        assert_eq!(t.deferred_revenue.to_string(), "45.00");
        assert_eq!(report.currency, "CNY");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["totals"]["revenueRecognized"], "440.00");
        assert_eq!(json["packages"][0]["instanceId"], "A");
        assert!(report
            .to_csv()
            .starts_with("\u{feff}instanceId,openingBytes"));
        assert!(report.to_table().contains("TOTAL"));
    }

    #[test]
    fn months_parse_strictly_and_bound_in_china_time() {
        assert!("2026-13".parse::<Month>().is_err());
        assert!("2026-1".parse::<Month>().is_err());
        assert!("26-11".parse::<Month>().is_err());
        assert!("November".parse::<Month>().is_err());
        let month: Month = "2026-12".parse().unwrap();
        let cst = FixedOffset::east_opt(8 * 3600).unwrap();
        let (start, end) = month.bounds(cst);
        assert_eq!(start.to_rfc3339(), "2026-11-30T16:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-12-31T16:00:00+00:00");
    }
}
