//! The console's HTML, rendered by maud (checked and compiled into the binary; every value is
//! escaped). No inline script or style, so the Content-Security-Policy can forbid both.
//!
//! This file holds the frame every page shares, the sign-in form, the overview and the package
//! cards and task tables it is made of; [`package`](mod@package) and [`task_forms`] the pages of
//! one package and of a task's forms.

mod package;
mod task_forms;

pub use package::{package, PackageUsage};
pub use task_forms::{destroy, renew, stale, Candidate, MoreTraffic};

use super::format;
use super::i18n::Lang;
use crate::usage::Runway;
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use projections::{Package, PackageStatus, Task, TaskState};

/// What stays as it is in a path segment: the unreserved characters of RFC 3986. Everything
/// else, `/`, `?`, `#`, `%` and `..`'s neighbours included, is `%XX`.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An id as one segment of a console URL. Ids are the marketplace's or a reporter's choice: a
/// task id `../T2/destroy?` must name that task, not another one's form. The two ids no URL can
/// carry as a segment, `.` and `..` (browsers resolve them, encoded or not), are refused when
/// they would be created (`projections::ids`).
pub fn segment(id: &str) -> String {
    utf8_percent_encode(id, PATH_SEGMENT).to_string()
}

/// Who is signed in, for the header and the forms.
pub struct SignedIn<'a> {
    pub jd_pin: &'a str,
    pub csrf: &'a str,
}

pub fn layout(
    lang: Lang,
    title: &str,
    who: Option<&SignedIn<'_>>,
    next: &str,
    body: Markup,
) -> String {
    let other = lang.other();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t("app.title")) }
                link rel="stylesheet" href="/console/console.css";
            }
            body {
                header.bar {
                    a.brand href="/console" { (lang.t("app.title")) }
                    nav {
                        a #lang-switch href={ "/console/lang/" (other.code()) "?next=" (next) }
                            hreflang=(other.code()) lang=(other.code()) { (lang.t("nav.language")) }
                        @if let Some(who) = who {
                            span.who { (lang.tf("nav.signed_in_as", &[("pin", who.jd_pin)])) }
                            form.inline method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(who.csrf);
                                button #logout type="submit" { (lang.t("nav.logout")) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
    .into_string()
}

/// The way to the sign-in form, from a page that signed no one in.
pub fn to_login(lang: Lang) -> Markup {
    html! { p { a #to-login href="/console/login" { (lang.t("ticket.login")) } } }
}

pub fn message(
    lang: Lang,
    title: &str,
    text: &str,
    who: Option<&SignedIn<'_>>,
    links: Markup,
) -> String {
    layout(
        lang,
        title,
        who,
        if who.is_some() { "overview" } else { "login" },
        html! {
            h1 { (title) }
            p.notice { (text) }
            (links)
        },
    )
}

/// A signed-in page under its title.
pub fn titled(lang: Lang, who: &SignedIn<'_>, title: &str, body: Markup) -> String {
    layout(
        lang,
        title,
        Some(who),
        "overview",
        html! {
            h1 { (title) }
            (body)
        },
    )
}

/// What the sign-in form shows besides its fields.
#[derive(Clone, Copy)]
pub struct LoginView<'a> {
    pub error: Option<&'a str>,
    /// Why the customer is here (their session ended; they signed out).
    pub notice: Option<&'a str>,
    pub typed_id: &'a str,
    /// The console page to come back to (`""`: the overview).
    pub next: &'a str,
}

pub fn login(lang: Lang, view: &LoginView<'_>, csrf: &str) -> String {
    layout(
        lang,
        &lang.t("login.title"),
        None,
        "login",
        html! {
            h1 { (lang.t("login.title")) }
            @if let Some(notice) = view.notice {
                p.notice #login-notice role="status" { (notice) }
            }
            p { (lang.t("login.intro")) }
            @if let Some(error) = view.error {
                p.error #login-error role="alert" { (error) }
            }
            form.card method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(view.next);
                label for="instanceId" { (lang.t("login.instance")) }
                input #instanceId name="instanceId" type="text" required autocomplete="username"
                    maxlength="128" value=(view.typed_id);
                label for="authCode" { (lang.t("login.auth_code")) }
                input #authCode name="authCode" type="password" required
                    autocomplete="current-password" maxlength="128";
                button #login type="submit" { (lang.t("login.submit")) }
            }
        },
    )
}

/// A package as the overview shows it.
pub struct PackageView<'a> {
    pub package: &'a Package,
    pub sku_name: &'a str,
    pub renew_link: Option<String>,
    /// `[console] expiry_warning_days`: how far ahead the expiry banner shows.
    pub expiry_warning_days: u64,
    /// When it runs out at the last week's rate (`None`: too little history, or not usable).
    pub runway: Option<&'a Runway>,
}

/// "runs out in about 12 days (2026-12-08); it expires before then", or `None` for a package
/// that cannot run out any more (used up, expired, released).
pub fn runway_text(
    lang: Lang,
    p: &Package,
    runway: Option<&Runway>,
    now: DateTime<Utc>,
) -> Option<String> {
    if !p.is_usable_at(now) {
        return None;
    }
    let Some(r) = runway else {
        return Some(lang.t("runway.unknown"));
    };
    let date = r.runs_out_on.to_string();
    let mut text = if r.days == 0 {
        lang.tf("runway.today", &[("date", &date)])
    } else {
        lang.tf(
            "runway.days",
            &[("days", &r.days.to_string()), ("date", &date)],
        )
    };
    if p.expires_at.is_some() {
        text.push_str(&lang.t(if r.expires_first {
            "runway.expires_first"
        } else {
            "runway.runs_out_first"
        }));
    }
    Some(text)
}

fn bytes_cell(lang: Lang, n: u64) -> Markup {
    html! { span.bytes title=(format::bytes_exact(n, lang)) { (format::bytes(n)) } }
}

fn when(lang: Lang, at: DateTime<Utc>) -> Markup {
    html! { time datetime=(format::datetime_iso(at)) { (format::datetime(at, lang)) } }
}

pub fn status_word(lang: Lang, status: PackageStatus) -> String {
    lang.t(&format!("status.{}", status.as_str()))
}

pub fn state_word(lang: Lang, state: TaskState) -> String {
    lang.t(&format!("state.{}", state.as_str()))
}

/// "3 days left" / "less than a day left", or `None` when there is no expiry or it passed.
pub fn days_left(lang: Lang, p: &Package, now: DateTime<Utc>) -> Option<String> {
    let days = format::days_until(p.expires_at?, now)?;
    Some(if days == 0 {
        lang.t("package.day_left_less")
    } else {
        lang.tf("package.days_left", &[("days", &days.to_string())])
    })
}

/// Whether an active package expires within the warning window.
fn expiring(p: &Package, now: DateTime<Utc>, warning_days: u64) -> bool {
    let window =
        chrono::Duration::days(i64::try_from(warning_days).unwrap_or(i64::MAX / 86_400_000));
    p.is_in_force_at(now) && p.expires_at.is_some_and(|at| at - now <= window)
}

/// The one word that says where a package stands, most pressing first: released, expired, used
/// up, expiring soon, or normal. A catalog key under `status.` and a CSS class.
pub fn badge(p: &Package, now: DateTime<Utc>, warning_days: u64) -> &'static str {
    match p.status {
        PackageStatus::Released => "released",
        PackageStatus::Expired => "expired",
        PackageStatus::Active if !p.is_in_force_at(now) => "expired",
        PackageStatus::Active if p.bytes_remaining.is_zero() => "used_up",
        PackageStatus::Active if expiring(p, now, warning_days) => "expiring",
        PackageStatus::Active => "active",
    }
}

/// One banner of a package: its CSS class, its text, and whether it offers renewal.
struct Banner {
    class: &'static str,
    text: String,
    offer: bool,
}

/// The banners a package deserves now, most pressing first: released (what it forfeited), or
/// expired, or used up or past a low-balance level, and, independently, its expiry within the
/// warning window.
fn banners(lang: Lang, view: &PackageView<'_>, now: DateTime<Utc>) -> Vec<Banner> {
    let p = view.package;
    let banner = |class, text, offer| Banner { class, text, offer };
    if p.status == PackageStatus::Released {
        let forfeited = format::bytes(p.bytes_forfeited.get());
        let text = lang.tf("banner.released", &[("bytes", &forfeited)]);
        return vec![banner("banner-off", text, false)];
    }
    if !p.is_in_force_at(now) {
        return vec![banner("banner-bad", lang.t("banner.expired"), true)];
    }
    let mut found = Vec::new();
    if p.bytes_remaining.is_zero() {
        found.push(banner("banner-bad", lang.t("banner.exhausted"), true));
    } else if let Some(level) = p.warned_percents.iter().max() {
        let text = lang.tf("banner.low", &[("percent", &level.to_string())]);
        found.push(banner("banner-warn", text, true));
    }
    if let (true, Some(at), Some(left)) = (
        expiring(p, now, view.expiry_warning_days),
        p.expires_at,
        days_left(lang, p, now),
    ) {
        let text = lang.tf(
            "banner.expiring",
            &[("date", &format::date(at, lang)), ("left", &left)],
        );
        found.push(banner("banner-warn banner-expiring", text, true));
    }
    found
}

pub fn package_card(lang: Lang, view: &PackageView<'_>, now: DateTime<Utc>) -> Markup {
    let p = view.package;
    let granted = p.bytes_granted.get();
    let consumed = p.bytes_consumed.get();
    let id = p.instance_id.as_str();
    let badge = badge(p, now, view.expiry_warning_days);
    let used = format::percent(consumed, granted);
    let sku_size = lang.tf(
        "package.sku_size",
        &[
            ("sku", view.sku_name),
            ("size", &format::bytes(p.sku_bytes.get())),
            ("exact", &format::bytes_exact(p.sku_bytes.get(), lang)),
        ],
    );
    html! {
        section.package id={ "package-" (id) } aria-labelledby={ "package-title-" (id) } {
            h3 id={ "package-title-" (id) } {
                (view.sku_name) " "
                span.instance { (id) } " "
                span class={ "status status-" (badge) } { (lang.t(&format!("status.{badge}"))) }
            }
            p.sku-size { (sku_size) }
            @for b in banners(lang, view, now) {
                p class={ "banner " (b.class) } role="status" {
                    (b.text)
                    @if b.offer {
                        @if let Some(link) = &view.renew_link {
                            " " a.renew-link href=(link) rel="noopener noreferrer" { (lang.t("banner.renew")) }
                        }
                    }
                }
            }
            @if let Some(text) = runway_text(lang, p, view.runway, now) {
                p class={ "runway" @if view.runway.is_some_and(|r| !r.expires_first) { " runway-first" } } {
                    (text)
                }
            }
            div.usage {
                meter min="0" max="100" low="80" high="95" optimum="0"
                    value=(format::percent_whole(consumed, granted)) aria-hidden="true" {
                    (used)
                }
                span.used-percent { (lang.tf("package.usage", &[("percent", &used)])) }
            }
            dl.figures {
                div { dt { (lang.t("package.expires")) }
                      dd.expiry {
                          @match p.expires_at {
                              Some(at) => {
                                  (when(lang, at))
                                  br;
                                  span.days-left {
                                      @match days_left(lang, p, now) {
                                          Some(left) => (left),
                                          None => (lang.t("package.past")),
                                      }
                                  }
                              }
                              None => (lang.t("package.never")),
                          }
                      } }
                div { dt { (lang.t("package.granted")) } dd { (bytes_cell(lang, granted)) } }
                div { dt { (lang.t("package.consumed")) } dd { (bytes_cell(lang, consumed)) } }
                div { dt { (lang.t("package.remaining")) } dd.remaining { (bytes_cell(lang, p.bytes_remaining.get())) } }
                div { dt { (lang.t("package.overage")) } dd.overage { (bytes_cell(lang, p.bytes_overage.get())) } }
                @if !p.bytes_forfeited.is_zero() {
                    div { dt { (lang.t("package.forfeited")) } dd.forfeited { (bytes_cell(lang, p.bytes_forfeited.get())) } }
                }
            }
            @if !p.bytes_overage.is_zero() {
                p.overage-note {
                    (lang.tf("banner.overage", &[("bytes", &format::bytes(p.bytes_overage.get()))]))
                }
            }
            p.details { a.details href={ "/console/packages/" (segment(id)) } { (lang.t("package.details")) } }
        }
    }
}

pub fn task_row(lang: Lang, t: &Task, actions: bool) -> Markup {
    let id = t.task_id.as_str();
    html! {
        tr id={ "task-" (id) } {
            th scope="row" { (id) }
            td data-label=(lang.t("task.package")) { (t.instance_id.as_str()) }
            td.state data-label=(lang.t("task.state")) { (state_word(lang, t.state)) }
            td data-label=(lang.t("task.stop_reason")) {
                @if let Some(reason) = t.stop_reason { (lang.t(&format!("stop.{}", reason.as_str()))) }
            }
            td data-label=(lang.t("task.consumed")) { (bytes_cell(lang, t.bytes_consumed.get())) }
            td data-label=(lang.t("task.last_report")) { (when(lang, t.updated_at)) }
            @if actions {
                td.actions {
                    @if t.state != TaskState::Destroyed {
                        a.renew href={ "/console/tasks/" (segment(id)) "/renew" } { (lang.t("task.renew")) }
                        " "
                        a.destroy href={ "/console/tasks/" (segment(id)) "/destroy" } { (lang.t("task.destroy")) }
                    }
                }
            }
        }
    }
}

/// The head of a table of tasks, with the actions' column or without.
fn tasks_head(lang: Lang, actions: bool) -> Markup {
    html! {
        thead { tr {
            @for key in ["task.id", "task.package", "task.state", "task.stop_reason", "task.consumed", "task.last_report"] {
                th scope="col" { (lang.t(key)) }
            }
            @if actions { th scope="col" { (lang.t("task.actions")) } }
        } }
    }
}

pub fn tasks_table(lang: Lang, tasks: &[Task], actions: bool) -> Markup {
    html! {
        table.tasks {
            (tasks_head(lang, actions))
            tbody { @for t in tasks { (task_row(lang, t, actions)) } }
        }
    }
}

/// The live tasks grouped by the package they draw from, in the overview's order of packages.
pub fn grouped_tasks_table(lang: Lang, packages: &[PackageView<'_>], tasks: &[Task]) -> Markup {
    html! {
        table.tasks.grouped {
            (tasks_head(lang, true))
            @for view in packages {
                @let id = view.package.instance_id.as_str();
                @let own: Vec<&Task> = tasks.iter().filter(|t| t.instance_id.as_str() == id).collect();
                @if !own.is_empty() {
                    tbody id={ "tasks-of-" (id) } {
                        tr.group { th colspan="7" scope="rowgroup" {
                            a href={ "/console/packages/" (segment(id)) "#package-tasks" } {
                                (lang.tf("tasks.group", &[("id", id), ("sku", view.sku_name)]))
                            }
                        } }
                        @for t in own { (task_row(lang, t, true)) }
                    }
                }
            }
        }
    }
}

pub fn overview(
    lang: Lang,
    who: &SignedIn<'_>,
    packages: &[PackageView<'_>],
    tasks: &[Task],
    flash: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    titled(
        lang,
        who,
        &lang.t("overview.title"),
        html! {
            @if let Some(flash) = flash {
                p.flash #flash role="status" { (flash) }
            }
            h2 { (lang.t("overview.packages")) }
            @if packages.is_empty() { p { (lang.t("overview.no_packages")) } }
            @else { p.units #units-note { (lang.t("overview.units")) } }
            div.packages { @for view in packages { (package_card(lang, view, now)) } }
            h2 #tasks { (lang.t("overview.tasks")) }
            @if tasks.is_empty() { p { (lang.t("overview.no_tasks")) } }
            @else { (grouped_tasks_table(lang, packages, tasks)) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn an_id_is_one_path_segment_whatever_it_holds() {
        assert_eq!(segment("biz-1"), "biz-1");
        assert_eq!(segment("a/b?c#d"), "a%2Fb%3Fc%23d");
        assert_eq!(segment("../T2/destroy?"), "..%2FT2%2Fdestroy%3F");
        assert_eq!(segment("100%"), "100%25");
        assert_eq!(segment("流量"), "%E6%B5%81%E9%87%8F");
        assert_eq!(segment("a b+c"), "a%20b%2Bc");
    }
}
