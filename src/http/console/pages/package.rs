//! A package's page: its figures, the usage chart and its table, and the statement.

use super::{bytes_cell, format, layout, package_card, segment, when, Lang, PackageView, SignedIn};
use crate::http::console::usage::{Day, Grant};
use crate::http::console::{chart, usage};
use crate::usage::TaskUsage;
use chrono::{DateTime, Utc};
use maud::{html, Markup};

/// What a package's page shows of its use.
pub struct PackageUsage<'a> {
    pub days: &'a [Day],
    /// Per day and task, the bytes drawn from this package (days in order).
    pub by_task: &'a [chart::TaskDayBytes],
    /// Per task, the window's bytes drawn from this package, largest first.
    pub usage: &'a [TaskUsage],
    pub grants: &'a [Grant],
}

/// A package's page: its figures, the usage chart and its table, and the statement.
///
/// One idea, longer than most: a template reads top to bottom as the page does.
pub fn package(
    lang: Lang,
    who: &SignedIn<'_>,
    view: &PackageView<'_>,
    window_days: u32,
    read: &PackageUsage<'_>,
    now: DateTime<Utc>,
) -> String {
    let PackageUsage {
        days,
        by_task,
        usage,
        grants,
    } = *read;
    let id = view.package.instance_id.as_str();
    let chart_title = lang.tf("chart.title", &[("days", &window_days.to_string())]);
    layout(
        lang,
        &format!("{} {}", view.sku_name, id),
        Some(who),
        "overview",
        html! {
            h1 { (view.sku_name) " " span.instance { (id) } }
            (package_card(lang, view, now))
            h2 #usage { (chart_title) }
            p.windows {
                @for w in usage::WINDOWS_DAYS {
                    a href={ "/console/packages/" (segment(id)) "?days=" (w) "#usage" }
                        aria-current=[(w == window_days).then_some("page")] {
                        (lang.tf("chart.window", &[("days", &w.to_string())]))
                    }
                }
            }
            (chart::svg(lang, &chart_title, days, by_task))
            (package_tasks(lang, window_days, usage))
            // A table ignores the height it is given: the wrapper keeps it out of the layout.
            div.sr-only {
                table #usage-table {
                    caption { (lang.t("chart.table")) }
                    thead { tr {
                        th scope="col" { (lang.t("chart.day")) }
                        th scope="col" { (lang.t("chart.bytes")) }
                        th scope="col" { (lang.t("chart.stop_col")) }
                    } }
                    tbody { @for day in days { tr {
                        th scope="row" { (day.date) }
                        td { (format::bytes(day.bytes)) " (" (format::bytes_exact(day.bytes, lang)) ")" }
                        td { @if day.stopped { (lang.t("common.yes")) } @else { (lang.t("common.no")) } }
                    } } }
                }
            }
            h2 #statement { (lang.t("statement.title")) }
            p {
                a #statement-csv href={ "/console/packages/" (segment(id)) "/statement.csv" } download {
                    (lang.t("statement.csv"))
                }
                " · " (lang.t("statement.print"))
            }
            p {
                a #credential-link href={ "/console/packages/" (segment(id)) "/credential" } {
                    (lang.t("credential.link"))
                }
            }
            h3 { (lang.t("statement.grants")) }
            @if grants.is_empty() { p { (lang.t("statement.none")) } }
            @else {
                table.grants {
                    thead { tr {
                        th scope="col" { (lang.t("grant.date")) }
                        th scope="col" { (lang.t("grant.kind")) }
                        th scope="col" { (lang.t("grant.order")) }
                        th scope="col" { (lang.t("grant.bytes")) }
                        th scope="col" { (lang.t("grant.price")) }
                    } }
                    tbody { @for g in grants { tr {
                        td { (when(lang, g.at)) }
                        td { (lang.t(&format!("grant.{}", g.kind))) }
                        td { (g.order_id) }
                        td { (bytes_cell(lang, g.bytes)) }
                        td.amount { (format::money(g.amount, &g.currency)) }
                    } } }
                }
            }
            p { a href="/console" { (lang.t("common.cancel")) } }
        },
    )
}

/// What each task drew from one package in the window, largest first, with the bytes recorded
/// after the package reached zero.
fn package_tasks(lang: Lang, window_days: u32, usage: &[TaskUsage]) -> Markup {
    let total: u64 = usage.iter().map(|u| u.bytes).fold(0, u64::saturating_add);
    html! {
        h2 #package-tasks { (lang.tf("ptasks.title", &[("days", &window_days.to_string())])) }
        @if usage.is_empty() {
            p { (lang.t("ptasks.none")) }
        } @else {
            table.tasks #package-task-usage {
                thead { tr {
                    th scope="col" { (lang.t("ptasks.task")) }
                    th scope="col" { (lang.t("ptasks.bytes")) }
                    th scope="col" { (lang.t("ptasks.share")) }
                    th scope="col" { (lang.t("ptasks.after_zero")) }
                } }
                tbody { @for u in usage { tr id={ "drawn-" (u.task_id.as_str()) } {
                    th scope="row" { (u.task_id.as_str()) }
                    td.drawn data-label=(lang.t("ptasks.bytes")) { (bytes_cell(lang, u.bytes)) }
                    td data-label=(lang.t("ptasks.share")) { (format::percent(u.bytes, total)) }
                    td.after-zero data-label=(lang.t("ptasks.after_zero")) { (bytes_cell(lang, u.bytes_after_zero)) }
                } } }
            }
            @if usage.iter().any(|u| u.bytes_after_zero > 0) {
                p.hint { (lang.t("ptasks.after_zero_note")) }
            }
        }
    }
}
