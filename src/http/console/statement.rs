//! A package's statement as finance reads it: the period (the last 90 days, or since the
//! purchase when it is younger), an opening balance, then each day in order with its grants, its
//! use (in total and per task) and a running balance, in the page's language. The CSV keeps plain
//! numbers (bytes, decimal amounts) so a spreadsheet can sum them; the page shows prices.
//!
//! The balance is what was granted less what was used and forfeited: negative while in overage
//! (bytes moved after zero, which the next grant covers first), so it never jumps when a grant
//! pays overage off. The period's opening balance is worked back from the package's balance now,
//! so a statement of a package years old reads only its period of the ledger.

use super::format;
use super::i18n::Lang;
use super::usage::{cst_date, Day, Grant, Release};
use crate::audit::export::{csv_field, csv_text};
use chrono::{DateTime, NaiveDate, Utc};

/// Bytes one task drew from the package on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDay {
    pub date: NaiveDate,
    pub task_id: String,
    pub bytes: u64,
}

/// What a statement is made of.
pub struct Statement<'a> {
    pub instance_id: &'a str,
    /// The package's first day (China Standard Time): no row is older.
    pub created_on: NaiveDate,
    /// Granted less consumed less forfeited, now (`Package::bytes_net`).
    pub balance_now: i128,
    /// Every day of the window, oldest first.
    pub days: &'a [Day],
    /// Every grant of the package, oldest first (those before the period are in its opening).
    pub grants: &'a [Grant],
    pub tasks: &'a [TaskDay],
    pub release: Option<Release>,
}

impl Statement<'_> {
    /// The days the package existed, in the window.
    pub fn period(&self) -> impl Iterator<Item = &Day> {
        self.days.iter().filter(|d| d.date >= self.created_on)
    }

    fn first_day(&self) -> Option<NaiveDate> {
        self.period().next().map(|d| d.date)
    }

    fn in_period(&self, at: DateTime<Utc>) -> bool {
        self.first_day().is_some_and(|first| cst_date(at) >= first)
    }

    /// The balance when the period opened: the balance now, with the period's movements undone.
    pub fn opening(&self) -> i128 {
        let granted: i128 = self
            .grants
            .iter()
            .filter(|g| self.in_period(g.at))
            .map(|g| i128::from(g.bytes))
            .sum();
        let used: i128 = self.period().map(|d| i128::from(d.bytes)).sum();
        let forfeited = self
            .release
            .filter(|r| self.in_period(r.at))
            .map_or(0, |r| i128::from(r.bytes));
        self.balance_now - granted + used + forfeited
    }

    /// The statement as CSV: UTF-8 with a byte order mark (spreadsheets then read the Chinese
    /// headers right), text cells that look like formulas prefixed with `'`.
    ///
    /// One idea, longer than most: the rows of a day in the order they happened.
    pub fn csv(&self, lang: Lang) -> String {
        let header = [
            "csv.date",
            "csv.item",
            "package.instance",
            "csv.task",
            "csv.order",
            "csv.bytes_in",
            "csv.bytes_out",
            "csv.balance",
            "csv.amount",
            "csv.currency",
            "csv.stopped",
        ];
        let mut out = String::from("\u{feff}");
        let header: Vec<String> = header.iter().map(|key| csv_field(&lang.t(key))).collect();
        out.push_str(&header.join(","));
        out.push('\n');
        let id = csv_text(self.instance_id);
        let mut push = |cells: [String; 11]| {
            out.push_str(&cells.join(","));
            out.push('\n');
        };
        let Some(first) = self.first_day() else {
            return out;
        };
        let mut balance = self.opening();
        let empty = String::new;
        push([
            first.to_string(),
            csv_field(&lang.t("csv.opening")),
            id.clone(),
            empty(),
            empty(),
            empty(),
            empty(),
            balance.to_string(),
            empty(),
            empty(),
            empty(),
        ]);
        for day in self.period() {
            for g in self.grants.iter().filter(|g| cst_date(g.at) == day.date) {
                balance += i128::from(g.bytes);
                push([
                    csv_field(&format::datetime_iso(g.at)),
                    csv_field(&lang.t(&format!("grant.{}", g.kind))),
                    id.clone(),
                    empty(),
                    csv_text(&g.order_id),
                    g.bytes.to_string(),
                    empty(),
                    balance.to_string(),
                    g.amount.to_string(),
                    csv_text(&g.currency),
                    empty(),
                ]);
            }
            balance -= i128::from(day.bytes);
            let yes_no = if day.stopped {
                "common.yes"
            } else {
                "common.no"
            };
            push([
                day.date.to_string(),
                csv_field(&lang.t("csv.day")),
                id.clone(),
                empty(),
                empty(),
                empty(),
                day.bytes.to_string(),
                balance.to_string(),
                empty(),
                empty(),
                csv_field(&lang.t(yes_no)),
            ]);
            for t in self.tasks.iter().filter(|t| t.date == day.date) {
                push([
                    day.date.to_string(),
                    csv_field(&lang.t("csv.task_day")),
                    id.clone(),
                    csv_text(&t.task_id),
                    empty(),
                    empty(),
                    t.bytes.to_string(),
                    empty(),
                    empty(),
                    empty(),
                    empty(),
                ]);
            }
            if let Some(r) = self.release.filter(|r| cst_date(r.at) == day.date) {
                balance -= i128::from(r.bytes);
                push([
                    csv_field(&format::datetime_iso(r.at)),
                    csv_field(&lang.t("csv.forfeit")),
                    id.clone(),
                    empty(),
                    empty(),
                    empty(),
                    r.bytes.to_string(),
                    balance.to_string(),
                    empty(),
                    empty(),
                    empty(),
                ]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn day(date: &str, bytes: u64) -> Day {
        Day {
            date: date.parse().unwrap(),
            bytes,
            stopped: false,
        }
    }

    #[test]
    fn rows_start_at_the_purchase_and_the_balance_runs_down_to_now() {
        let days = [
            day("2026-11-24", 0),
            day("2026-11-25", 300),
            day("2026-11-26", 900),
        ];
        let grants = [Grant {
            kind: "OrderCreated".into(),
            order_id: "o-1".into(),
            // 09:00 CST on the 25th.
            at: at("2026-11-25T01:00:00Z"),
            bytes: 1000,
            amount: Decimal::new(100000, 2),
            currency: "CNY".into(),
        }];
        let tasks = [
            TaskDay {
                date: "2026-11-26".parse().unwrap(),
                task_id: "t-2".into(),
                bytes: 600,
            },
            TaskDay {
                date: "2026-11-26".parse().unwrap(),
                task_id: "t-1".into(),
                bytes: 300,
            },
        ];
        let statement = Statement {
            instance_id: "biz-1",
            created_on: "2026-11-25".parse().unwrap(),
            balance_now: -200,
            days: &days,
            grants: &grants,
            tasks: &tasks,
            release: None,
        };
        assert_eq!(statement.opening(), 0);
        let csv = statement.csv(Lang::En);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "\u{feff}Date,Item,Instance id,Task id,Order,Traffic added (bytes),\
             Traffic used (bytes),Balance (bytes),Amount,Currency,A task stopped that day"
        );
        assert_eq!(lines[1], "2026-11-25,Opening balance,biz-1,,,,,0,,,");
        assert_eq!(
            lines[2],
            "2026-11-25T09:00:00+08:00,Purchase,biz-1,,o-1,1000,,1000,1000.00,CNY,"
        );
        assert_eq!(lines[3], "2026-11-25,Daily use,biz-1,,,,300,700,,,no");
        assert_eq!(lines[4], "2026-11-26,Daily use,biz-1,,,,900,-200,,,no");
        assert_eq!(lines[5], "2026-11-26,Task use,biz-1,t-2,,,600,,,,");
        assert_eq!(lines[6], "2026-11-26,Task use,biz-1,t-1,,,300,,,,");
        assert_eq!(lines.len(), 7, "no day before the purchase: {csv}");
        let chinese = statement.csv(Lang::Zh);
        assert!(
            chinese.contains("日期,项目,") && chinese.contains(",购买,"),
            "{chinese}"
        );
    }

    #[test]
    fn an_old_package_opens_with_what_it_held_when_the_period_began() {
        let days = [day("2026-11-25", 100), day("2026-11-26", 50)];
        let statement = Statement {
            instance_id: "biz-1",
            created_on: "2025-01-01".parse().unwrap(),
            balance_now: 850,
            days: &days,
            grants: &[],
            tasks: &[],
            release: Some(Release {
                at: at("2026-11-26T12:00:00Z"),
                bytes: 0,
            }),
        };
        assert_eq!(statement.opening(), 1000);
        let csv = statement.csv(Lang::En);
        assert!(
            csv.contains("2026-11-26,Daily use,biz-1,,,,50,850,,,no"),
            "{csv}"
        );
        assert!(csv.contains("Forfeited at release,biz-1,,,,0,850"), "{csv}");
    }
}
