//! The daily usage chart, drawn by the server as inline SVG (readable without JavaScript; the
//! page's table carries the same numbers for screen readers).

use super::format;
use super::i18n::Lang;
use super::usage::Day;
use chrono::NaiveDate;
use maud::{html, Markup};
use projections::ids::TaskId;

/// Bytes one task drew from the package on one day.
pub type TaskDayBytes = (NaiveDate, TaskId, u64);

/// Tasks drawn in their own colour, the largest of the window first; the rest share one.
const TASK_COLOURS: [&str; 5] = ["#0b57d0", "#0d652d", "#b06000", "#7627bb", "#006b75"];
const OTHERS_COLOUR: &str = "#757575";

/// The tasks given their own colour: the largest of the window.
fn coloured_tasks(by_task: &[TaskDayBytes]) -> Vec<&TaskId> {
    let mut totals: Vec<(&TaskId, u64)> = Vec::new();
    for (_, task, bytes) in by_task {
        match totals.iter_mut().find(|(t, _)| *t == task) {
            Some((_, total)) => *total = total.saturating_add(*bytes),
            None => totals.push((task, *bytes)),
        }
    }
    totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
    totals
        .into_iter()
        .take(TASK_COLOURS.len())
        .map(|(t, _)| t)
        .collect()
}

/// Gridlines above the baseline.
pub const STEPS: u64 = 4;
/// The smallest step: below 1 KiB a day's use is noise on a chart meant for GiB and TiB.
const STEP_BYTES_MIN: u64 = 1024;
/// Step sizes tried within each binary unit.
const MANTISSAS: [u64; 9] = [1, 2, 5, 10, 20, 50, 100, 200, 500];

const WIDTH: u64 = 720;
const HEIGHT: u64 = 220;
const LEFT: u64 = 84;
const TOP: u64 = 10;
const BOTTOM: u64 = 40;

/// The axis: `STEPS` equal steps of a round size (1, 2 or 5 × a power of 1024) covering `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub step_bytes: u64,
}

impl Scale {
    pub fn covering(max_bytes: u64) -> Scale {
        let needed = max_bytes.div_ceil(STEPS).max(STEP_BYTES_MIN);
        for unit in (10..=60).step_by(10) {
            for m in MANTISSAS {
                let step = m.saturating_mul(1u64 << unit);
                if step >= needed {
                    return Scale { step_bytes: step };
                }
            }
        }
        Scale {
            step_bytes: u64::MAX / STEPS,
        }
    }

    pub fn top_bytes(self) -> u64 {
        self.step_bytes.saturating_mul(STEPS)
    }

    /// The height of `bytes` in a plot `height` units tall.
    pub fn height(self, bytes: u64, height: u64) -> u64 {
        let top = u128::from(self.top_bytes().max(1));
        (u128::from(bytes.min(self.top_bytes())) * u128::from(height) / top) as u64
    }
}

/// The chart, each day's bar split by task when `by_task` says who drew it (the largest tasks in
/// their own colour, the rest together), with a legend.
pub fn svg(lang: Lang, title: &str, days: &[Day], by_task: &[TaskDayBytes]) -> Markup {
    let coloured = coloured_tasks(by_task);
    let colour_of = |task: &TaskId| {
        coloured
            .iter()
            .position(|t| *t == task)
            .map_or(OTHERS_COLOUR, |i| TASK_COLOURS[i])
    };
    let has_others = by_task.iter().any(|(_, t, _)| !coloured.contains(&t));
    let scale = Scale::covering(days.iter().map(|d| d.bytes).max().unwrap_or(0));
    let plot_w = WIDTH - LEFT - 8;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let count = days.len().max(1) as u64;
    let bar_w = (plot_w / count).max(1);
    let gap = if bar_w > 4 { 1 } else { 0 };
    let base = TOP + plot_h;
    let label_every = if count > 45 { 15 } else { 5 };
    // A window without traffic has no scale worth drawing (a 0 to 4 KiB axis would suggest
    // there is something to read): the baseline, the dates, and a sentence saying so.
    let empty = days.iter().all(|d| d.bytes == 0);
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(title)
            xmlns="http://www.w3.org/2000/svg" {
            @if empty {
                line x1=(LEFT) x2=(WIDTH - 8) y1=(base) y2=(base) stroke="#c8c8c8" stroke-width="1" {}
                text.chart-empty x=((LEFT + WIDTH) / 2) y=(TOP + plot_h / 2) text-anchor="middle"
                    font-size="14" fill="#4a4a4a" { (lang.t("chart.empty")) }
            }
            @else {
                @for i in 0..=STEPS {
                    @let y = base - plot_h * i / STEPS;
                    line x1=(LEFT) x2=(WIDTH - 8) y1=(y) y2=(y) stroke="#c8c8c8" stroke-width="1" {}
                    text x=(LEFT - 6) y=(y + 4) text-anchor="end" font-size="11" fill="#4a4a4a" {
                        (format::bytes(scale.step_bytes * i))
                    }
                }
            }
            @for (i, day) in days.iter().enumerate() {
                @let x = LEFT + bar_w * i as u64;
                @let h = scale.height(day.bytes, plot_h);
                @let parts = stacked(day.date, by_task, scale, plot_h);
                @if parts.is_empty() {
                    rect x=(x + gap) y=(base - h) width=(bar_w - gap) height=(h) fill="#0b57d0" {
                        title { (day.date) ": " (format::bytes(day.bytes)) }
                    }
                } @else {
                    @for part in parts {
                        rect.task-bar x=(x + gap) y=(base - part.top) width=(bar_w - gap)
                            height=(part.top - part.bottom) fill=(colour_of(part.task)) {
                            title { (day.date) " " (part.task.as_str()) ": " (format::bytes(part.bytes)) }
                        }
                    }
                }
                @if day.stopped {
                    rect.stop x=(x) y=(base + 3) width=(bar_w.max(3)) height="6" fill="#a50e0e" {
                        title { (day.date) ": " (lang.t("chart.stopped")) }
                    }
                }
                @if i as u64 % label_every == 0 || i + 1 == days.len() {
                    text x=(x) y=(HEIGHT - 8) font-size="11" fill="#4a4a4a" { (day.date.format("%m-%d")) }
                }
            }
        }
        @if !coloured.is_empty() {
            ul.legend #chart-legend aria-label=(lang.t("chart.by_task")) {
                @for (i, task) in coloured.iter().enumerate() {
                    li { (swatch(TASK_COLOURS[i])) " " (task.as_str()) }
                }
                @if has_others { li { (swatch(OTHERS_COLOUR)) " " (lang.t("chart.others")) } }
            }
        }
    }
}

/// One task's share of a day's bar, as heights above the baseline.
struct Part<'a> {
    task: &'a TaskId,
    bytes: u64,
    bottom: u64,
    top: u64,
}

/// A day's tasks stacked in the order given (largest first), each from where the one below ends.
fn stacked<'a>(
    date: NaiveDate,
    by_task: &'a [TaskDayBytes],
    scale: Scale,
    plot_h: u64,
) -> Vec<Part<'a>> {
    let mut below = 0u64;
    by_task
        .iter()
        .filter(|(d, _, _)| *d == date)
        .map(|(_, task, bytes)| {
            let bottom = scale.height(below, plot_h);
            below = below.saturating_add(*bytes);
            Part {
                task,
                bytes: *bytes,
                bottom,
                top: scale.height(below, plot_h),
            }
        })
        .collect()
}

/// A legend's colour square (SVG attributes: the page allows no inline style).
fn swatch(colour: &str) -> Markup {
    html! {
        svg.swatch width="12" height="12" viewBox="0 0 12 12" aria-hidden="true"
            xmlns="http://www.w3.org/2000/svg" {
            rect width="12" height="12" fill=(colour) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_round_and_covers_the_largest_day() {
        assert_eq!(Scale::covering(0).step_bytes, 1024);
        assert_eq!(Scale::covering(4096).step_bytes, 1024);
        assert_eq!(Scale::covering(4097).step_bytes, 2 * 1024);
        assert_eq!(Scale::covering(8_500).step_bytes, 5 * 1024);
        let tib = 1u64 << 40;
        assert_eq!(Scale::covering(tib).step_bytes, 500 << 30);
        assert_eq!(Scale::covering(3 * tib).step_bytes, 1 << 40);
        for max in [1u64, 999, 1 << 20, 123_456_789, 7 << 40, u64::MAX / 8] {
            let scale = Scale::covering(max);
            assert!(scale.top_bytes() >= max, "{max}");
            assert!(
                scale.top_bytes() < max.max(1024).saturating_mul(20),
                "{max} is not squashed"
            );
        }
        assert_eq!(Scale::covering(u64::MAX).height(u64::MAX, 100), 100);
    }

    #[test]
    fn an_empty_window_draws_no_scale_but_says_so() {
        let day = |bytes| Day {
            date: chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(),
            bytes,
            stopped: false,
        };
        let empty = svg(Lang::En, "t", &[day(0), day(0)], &[]).into_string();
        assert!(
            !empty.contains("KiB") && !empty.contains(">0 B<"),
            "{empty}"
        );
        assert!(empty.contains("No traffic in this window."), "{empty}");
        let drawn = svg(Lang::En, "t", &[day(0), day(3000)], &[]).into_string();
        assert!(
            drawn.contains("4.00 KiB") && !drawn.contains("No traffic"),
            "{drawn}"
        );
    }

    #[test]
    fn bars_are_as_high_as_their_share_of_the_axis() {
        let scale = Scale::covering(4096);
        assert_eq!(scale.top_bytes(), 4096);
        assert_eq!(scale.height(4096, 170), 170);
        assert_eq!(scale.height(2048, 170), 85);
        assert_eq!(scale.height(0, 170), 0);
        assert_eq!(scale.height(10_000, 170), 170, "clamped to the plot");
    }
}
