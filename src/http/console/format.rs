//! Numbers, byte counts and times as a person reads them, per language. Byte units are powers of
//! 1024 (what DTS meters); times are China Standard Time (the marketplace's clock).

use super::i18n::Lang;
use crate::usage::china_standard_time;
use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

/// Binary units, each 1024 times the one before.
const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/// `1234567` → `1,234,567` (both languages group by thousands in figures).
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count in the largest binary unit it fills, with two decimals (rounded half up):
/// `1.50 TiB`. Exact integer arithmetic, no floats.
pub fn bytes(n: u64) -> String {
    let mut unit = 0;
    while unit + 1 < UNITS.len() && n >= 1u64 << (10 * (unit + 1)) {
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} B");
    }
    let scale = 1u128 << (10 * unit);
    let hundredths = (u128::from(n) * 100 + scale / 2) / scale;
    format!(
        "{}.{:02} {}",
        hundredths / 100,
        hundredths % 100,
        UNITS[unit]
    )
}

/// The exact count, for the `title` shown on hover: `1,099,511,627,776 bytes` / `… 字节`.
pub fn bytes_exact(n: u64, lang: Lang) -> String {
    lang.tf("units.bytes", &[("n", &grouped(n))])
}

/// `part` of `whole` as a percentage with one decimal; `0.0%` of nothing.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0.0%".to_owned();
    }
    let tenths = (u128::from(part) * 1000 + u128::from(whole) / 2) / u128::from(whole);
    format!("{}.{}%", tenths / 10, tenths % 10)
}

/// Whole percent (0-100) of `part` in `whole`, for the usage bar's width.
pub fn percent_whole(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    ((u128::from(part) * 100 / u128::from(whole)).min(100)) as u64
}

/// A time in China Standard Time: `2026年11月26日 18:05` / `26 Nov 2026, 18:05 CST`.
pub fn datetime(at: DateTime<Utc>, lang: Lang) -> String {
    let local = at.with_timezone(&china_standard_time());
    match lang {
        Lang::Zh => local.format("%Y年%-m月%-d日 %H:%M").to_string(),
        Lang::En => local.format("%-d %b %Y, %H:%M CST").to_string(),
    }
}

/// A date in China Standard Time: `2026年12月6日` / `6 Dec 2026`.
pub fn date(at: DateTime<Utc>, lang: Lang) -> String {
    let local = at.with_timezone(&china_standard_time());
    match lang {
        Lang::Zh => local.format("%Y年%-m月%-d日").to_string(),
        Lang::En => local.format("%-d %b %Y").to_string(),
    }
}

/// Whole days from `now` until `at` (rounded down), or `None` once `at` has passed.
pub fn days_until(at: DateTime<Utc>, now: DateTime<Utc>) -> Option<i64> {
    (at > now).then(|| (at - now).num_days())
}

/// An amount as a price reads: `¥1,000.00` for yuan, `1,000.00 USD` for another currency.
/// Rounded half away from zero to cents; the statement CSV keeps the plain decimal.
pub fn money(amount: Decimal, currency: &str) -> String {
    let cents = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let sign = if cents.is_sign_negative() && !cents.is_zero() {
        "-"
    } else {
        ""
    };
    let abs = cents.abs();
    let whole = abs.trunc();
    let fraction = ((abs - whole) * Decimal::ONE_HUNDRED).trunc();
    let whole = u64::try_from(whole).map_or_else(|_| whole.to_string(), grouped);
    let figure = format!("{sign}{whole}.{fraction:0>2}");
    match currency {
        "CNY" | "RMB" | "" => format!("¥{figure}"),
        other => format!("{figure} {other}"),
    }
}

/// The same time as machines read it, for `<time datetime>`.
pub fn datetime_iso(at: DateTime<Utc>) -> String {
    at.with_timezone(&china_standard_time()).to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_use_powers_of_1024_with_two_decimals() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.00 KiB");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(1 << 30), "1.00 GiB");
        assert_eq!(bytes((1 << 40) + (1 << 39)), "1.50 TiB");
        assert_eq!(bytes((1 << 40) - 1), "1024.00 GiB");
        assert_eq!(bytes(10_000), "9.77 KiB");
        assert_eq!(bytes(u64::MAX), "16384.00 PiB");
    }

    #[test]
    fn exact_counts_are_grouped_and_worded_per_language() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_099_511_627_776), "1,099,511,627,776");
        assert_eq!(
            bytes_exact(1_099_511_627_776, Lang::En),
            "1,099,511,627,776 bytes"
        );
        assert_eq!(bytes_exact(10_000, Lang::Zh), "10,000 字节");
    }

    #[test]
    fn percentages_round_and_never_divide_by_zero() {
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(2, 3), "66.7%");
        assert_eq!(percent(5, 0), "0.0%");
        assert_eq!(percent(u64::MAX, u64::MAX), "100.0%");
        assert_eq!(percent_whole(15, 10), 100);
        assert_eq!(percent_whole(1, 3), 33);
    }

    #[test]
    fn amounts_read_as_prices_with_grouped_yuan_and_cents() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(money(d("1000"), "CNY"), "¥1,000.00");
        assert_eq!(money(d("1234567.891"), "CNY"), "¥1,234,567.89");
        assert_eq!(money(d("0.005"), "CNY"), "¥0.01");
        assert_eq!(money(d("10.5"), "USD"), "10.50 USD");
        assert_eq!(money(d("-3.2"), "CNY"), "¥-3.20");
        assert_eq!(money(d("0"), "CNY"), "¥0.00");
    }

    #[test]
    fn days_until_count_whole_days_and_end_at_the_instant() {
        let now = DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(days_until(now + chrono::Duration::hours(100), now), Some(4));
        assert_eq!(days_until(now + chrono::Duration::hours(3), now), Some(0));
        assert_eq!(days_until(now, now), None);
        assert_eq!(date(now, Lang::Zh), "2026年11月26日");
        assert_eq!(date(now, Lang::En), "26 Nov 2026");
    }

    #[test]
    fn times_are_shown_in_china_standard_time_per_language() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T10:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(datetime(at, Lang::Zh), "2026年11月26日 18:05");
        assert_eq!(datetime(at, Lang::En), "26 Nov 2026, 18:05 CST");
        let late = DateTime::parse_from_rfc3339("2026-12-31T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(datetime(late, Lang::Zh), "2027年1月1日 04:00");
        assert_eq!(datetime_iso(at), "2026-11-26T18:05:00+08:00");
    }
}
