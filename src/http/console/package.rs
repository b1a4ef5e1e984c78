//! `GET /console/packages/{id}?days=30|90`: a package's usage chart and statement;
//! `GET /console/packages/{id}/statement.csv`: the statement as a file.

use super::customer::{own_page, renew_session, Own};
use super::error::{db_error, PageError, PageResult};
use super::i18n::Lang;
use super::overview::runways_of;
use super::{pages, statement, usage, Console};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use projections::ids::{InstanceId, TaskId};
use projections::{Package, PackageStatus};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct WindowQuery {
    days: Option<u32>,
}

/// What the page and the statement both read of a package: each day of the window, what each
/// task drew on each day, and every grant.
struct Window {
    days: Vec<usage::Day>,
    by_task: Vec<(NaiveDate, TaskId, u64)>,
    grants: Vec<usage::Grant>,
}

async fn read_window(
    client: &impl GenericClient,
    id: &InstanceId,
    window: u32,
    now: DateTime<Utc>,
    lang: Lang,
) -> Result<Window, PageError> {
    let days = usage::daily(client, id, window, now)
        .await
        .map_err(db_error(lang))?;
    let by_task = crate::usage::daily_by_task(client, id, window, now)
        .await
        .map_err(db_error(lang))?;
    let grants = usage::grants(client, id).await.map_err(db_error(lang))?;
    Ok(Window {
        days,
        by_task,
        grants,
    })
}

/// The chart's window (`days`, one of [`usage::WINDOWS_DAYS`]) and the statement.
pub async fn page(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<WindowQuery>,
) -> PageResult {
    own_page(&console, &req, &path, async |own: Own<Package>| {
        let (lang, package) = (own.lang, &own.item);
        let window = query
            .days
            .filter(|d| usage::WINDOWS_DAYS.contains(d))
            .unwrap_or(usage::WINDOWS_DAYS[0]);
        let now = Utc::now();
        let id = &package.instance_id;
        let read = read_window(&own.client, id, window, now, lang).await?;
        let (since, _) = usage::window_start(now, window);
        let drawn = crate::usage::package_tasks(&own.client, id, since, now)
            .await
            .map_err(db_error(lang))?;
        let runways = runways_of(&own.client, std::slice::from_ref(package), now, lang).await?;
        let name = console.sku_name(package);
        let view = pages::PackageView {
            package,
            sku_name: &name,
            renew_link: console.renew_link(id),
            expiry_warning_days: console.config.expiry_warning_days,
            runway: runways.get(id),
        };
        let usage = pages::PackageUsage {
            days: &read.days,
            by_task: &read.by_task,
            usage: &drawn,
            grants: &read.grants,
        };
        let body = pages::package(lang, &own.customer.who(), &view, window, &usage, now);
        Ok(own.show(&console, body))
    })
    .await
}

/// The statement of the last 90 days (or since the purchase), in the page's language
/// ([`statement`]).
pub async fn statement_csv(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    own_page(&console, &req, &path, async |own: Own<Package>| {
        let (lang, package) = (own.lang, &own.item);
        let window = usage::WINDOWS_DAYS[usage::WINDOWS_DAYS.len() - 1];
        let id = &package.instance_id;
        let read = read_window(&own.client, id, window, Utc::now(), lang).await?;
        let release = match package.status {
            PackageStatus::Released => usage::release(&own.client, id)
                .await
                .map_err(db_error(lang))?,
            _ => None,
        };
        let tasks: Vec<statement::TaskDay> = read
            .by_task
            .into_iter()
            .map(|(date, task, bytes)| statement::TaskDay {
                date,
                task_id: task.as_str().to_owned(),
                bytes,
            })
            .collect();
        let csv = statement::Statement {
            instance_id: id.as_str(),
            created_on: usage::cst_date(package.created_at),
            balance_now: package.bytes_net(),
            days: &read.days,
            grants: &read.grants,
            tasks: &tasks,
            release,
        }
        .csv(lang);
        let disposition = format!(
            "attachment; filename=\"statement-{}.csv\"",
            file_name(id.as_str())
        );
        let mut response = HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((header::CONTENT_DISPOSITION, disposition))
            .body(csv);
        renew_session(&console, &own.customer, &mut response);
        Ok(response)
    })
    .await
}

/// Only characters safe in a header name the file; the id itself is in every row.
fn file_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
