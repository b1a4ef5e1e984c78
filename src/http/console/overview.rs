//! `GET /console`: the signed-in customer's packages, with their balances and runways, and the
//! tasks drawing from them; the message a form left (renewed, destroyed) shows here once.

use super::customer::{customer, signed_in_page, to_sign_in};
use super::error::{db_error, pool_error, unavailable, PageError, PageResult};
use super::i18n::{lang_of, Lang};
use super::{flash, pages, Console};
use crate::ledger::rows;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use projections::ids::{InstanceId, JdPin};
use projections::{Package, Task};
use std::collections::HashMap;

/// Packages shown on one overview: far more than any customer holds (the marketplace sells a
/// handful per account), and a bound on what one page load reads.
pub const PACKAGES_SHOWN_MAX: i64 = 1000;
/// Live tasks shown on one overview, for the same reason.
pub const TASKS_SHOWN_MAX: i64 = 5000;

pub async fn overview(console: web::Data<Console>, req: HttpRequest) -> PageResult {
    let lang = lang_of(&req);
    let client = console.pool.get().await.map_err(pool_error(lang))?;
    let Some(customer) = customer(&console, &req, &client, lang).await? else {
        return Ok(to_sign_in(&req));
    };
    let packages = packages_of(&client, &customer.jd_pin, lang).await?;
    let tasks = tasks_of(&client, &packages, lang).await?;
    let now = Utc::now();
    let runways = runways_of(&client, &packages, now, lang).await?;
    let names: Vec<String> = packages.iter().map(|p| console.sku_name(p)).collect();
    let views: Vec<pages::PackageView<'_>> = packages
        .iter()
        .zip(&names)
        .map(|(package, name)| pages::PackageView {
            package,
            sku_name: name,
            renew_link: console.renew_link(&package.instance_id),
            expiry_warning_days: console.config.expiry_warning_days,
            runway: runways.get(&package.instance_id),
        })
        .collect();
    let flash = flash::read(&console, &req, &customer, lang);
    let body = pages::overview(lang, &customer.who(), &views, &tasks, flash.as_deref(), now);
    let mut response = signed_in_page(&console, &customer, StatusCode::OK, body);
    if req.cookie(flash::COOKIE_NAME).is_some() {
        let _ = response.add_cookie(&flash::removal(&console));
    }
    Ok(response)
}

/// The packages of a customer, oldest first.
pub async fn packages_of(
    client: &impl GenericClient,
    jd_pin: &JdPin,
    lang: Lang,
) -> Result<Vec<Package>, PageError> {
    let found = rows::packages_of_customer(client, jd_pin.as_str(), PACKAGES_SHOWN_MAX)
        .await
        .map_err(db_error(lang))?;
    found
        .iter()
        .map(|row| rows::package_from_row(row).map_err(|e| unavailable(lang)(&e)))
        .collect()
}

/// The live tasks of these packages, by id.
pub async fn tasks_of(
    client: &impl GenericClient,
    packages: &[Package],
    lang: Lang,
) -> Result<Vec<Task>, PageError> {
    let ids: Vec<&str> = packages.iter().map(|p| p.instance_id.as_str()).collect();
    let found = rows::live_tasks_listed(client, &ids, TASKS_SHOWN_MAX)
        .await
        .map_err(db_error(lang))?;
    found
        .iter()
        .map(|row| rows::task_from_row(row).map_err(|e| unavailable(lang)(&e)))
        .collect()
}

/// The runways of these packages, in one statement.
pub async fn runways_of(
    client: &impl GenericClient,
    packages: &[Package],
    now: DateTime<Utc>,
    lang: Lang,
) -> Result<HashMap<InstanceId, crate::usage::Runway>, PageError> {
    let ids: Vec<InstanceId> = packages.iter().map(|p| p.instance_id.clone()).collect();
    crate::usage::runways(client, &ids, now)
        .await
        .map_err(db_error(lang))
}
