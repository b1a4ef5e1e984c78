//! The pages of a task's forms: renewing it onto another package, destroying it, and the page
//! saying it changed while its form was open.

use super::{days_left, format, runway_text, segment, tasks_table, titled, Lang, SignedIn};
use crate::usage::Runway;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use projections::{Package, Task};

/// A package a task may move to, with what the customer weighs before choosing it.
pub struct Candidate<'a> {
    pub package: &'a Package,
    pub sku_name: &'a str,
    /// The live tasks drawing from it already.
    pub tasks: Vec<&'a str>,
    pub runway: Option<&'a Runway>,
}

/// Where a customer gets more traffic: the marketplace's page for buying a package, and the
/// renewal of the package the task is on.
pub struct MoreTraffic {
    pub buy: Option<String>,
    pub renew_current: Option<String>,
}

fn candidate(lang: Lang, c: &Candidate<'_>, now: DateTime<Utc>) -> Markup {
    let p = c.package;
    let id = p.instance_id.as_str();
    let remaining = format::bytes(p.bytes_remaining.get());
    let expiry = match (p.expires_at, days_left(lang, p, now)) {
        (Some(at), Some(left)) => lang.tf(
            "renew.expires",
            &[("date", &format::date(at, lang)), ("left", &left)],
        ),
        _ => lang.t("renew.never"),
    };
    let tasks = if c.tasks.is_empty() {
        lang.t("renew.no_tasks_on")
    } else {
        lang.tf("renew.tasks_on", &[("tasks", &c.tasks.join(", "))])
    };
    html! {
        div.choice id={ "choice-" (id) } {
            input type="radio" name="to" id={ "to-" (id) } value=(id) required;
            label for={ "to-" (id) } {
                strong { (lang.tf("renew.option", &[("id", id), ("sku", c.sku_name)])) }
                span.choice-facts {
                    span.remaining { (lang.tf("renew.remaining", &[("remaining", &remaining)])) }
                    span.expiry { (expiry) }
                    @if let Some(text) = runway_text(lang, p, c.runway, now) {
                        span.runway { (text) }
                    }
                    span.tasks-on { (tasks) }
                }
            }
        }
    }
}

pub fn renew(
    lang: Lang,
    who: &SignedIn<'_>,
    task: &Task,
    version: &str,
    candidates: &[Candidate<'_>],
    more: &MoreTraffic,
    now: DateTime<Utc>,
) -> String {
    let id = task.task_id.as_str();
    titled(
        lang,
        who,
        &lang.tf("renew.title", &[("task", id)]),
        html! {
            (tasks_table(lang, std::slice::from_ref(task), false))
            p.notice #renew-what { (lang.t("renew.what")) }
            @if candidates.is_empty() {
                p.notice #no-candidates { (lang.t("renew.none")) }
            } @else {
                form.card.renew-form method="post" action={ "/console/tasks/" (segment(id)) "/renew" } {
                    input type="hidden" name="csrf" value=(who.csrf);
                    input type="hidden" name="version" value=(version);
                    fieldset {
                        legend { (lang.t("renew.choose")) }
                        p.hint { (lang.t("renew.intro")) }
                        @for c in candidates { (candidate(lang, c, now)) }
                    }
                    button #renew-submit type="submit" { (lang.t("renew.submit")) }
                    " " a href="/console" { (lang.t("common.cancel")) }
                }
            }
            @if more.buy.is_some() || more.renew_current.is_some() {
                p #more-traffic {
                    (lang.t("renew.more")) " "
                    @if let Some(link) = &more.buy {
                        a #buy-link href=(link) rel="noopener noreferrer" { (lang.t("renew.buy")) }
                    }
                    @if more.buy.is_some() && more.renew_current.is_some() { " · " }
                    @if let Some(link) = &more.renew_current {
                        a #renew-current href=(link) rel="noopener noreferrer" {
                            (lang.tf("renew.renew_current", &[("id", task.instance_id.as_str())]))
                        }
                    }
                }
            }
            @if candidates.is_empty() {
                p { a href="/console" { (lang.t("common.cancel")) } }
            }
        },
    )
}

pub fn destroy(lang: Lang, who: &SignedIn<'_>, task: &Task, version: &str) -> String {
    let id = task.task_id.as_str();
    titled(
        lang,
        who,
        &lang.tf("destroy.title", &[("task", id)]),
        html! {
            (tasks_table(lang, std::slice::from_ref(task), false))
            p.banner.banner-bad #destroy-warning role="alert" { (lang.t("destroy.warning")) }
            form.card method="post" action={ "/console/tasks/" (segment(id)) "/destroy" } {
                input type="hidden" name="csrf" value=(who.csrf);
                input type="hidden" name="version" value=(version);
                button.danger #destroy-submit type="submit" { (lang.t("destroy.submit")) }
                " " a href="/console" { (lang.t("common.cancel")) }
            }
        },
    )
}

pub fn stale(lang: Lang, who: &SignedIn<'_>, task: &Task) -> String {
    titled(
        lang,
        who,
        &lang.t("stale.title"),
        html! {
            p.notice #stale { (lang.t("stale.body")) }
            (tasks_table(lang, std::slice::from_ref(task), true))
            p { a href="/console" { (lang.t("common.cancel")) } }
        },
    )
}
