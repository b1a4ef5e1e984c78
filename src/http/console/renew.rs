//! `GET|POST /console/tasks/{id}/renew` (续费): the customer moves one of their tasks onto
//! another of their packages, chosen among those it can draw from, with each one's runway.

use super::customer::{metadata, not_found, Own, Owned};
use super::error::PageResult;
use super::overview::{packages_of, runways_of, tasks_of};
use super::task_form::{answer, form_page, task_post, Posted};
use super::{flash, pages, Console};
use crate::ledger;
use actix_web::{web, HttpRequest};
use chrono::Utc;
use projections::{Package, Task};
use serde::Deserialize;

/// The packages to choose from: the customer's usable ones, with the tasks on each.
pub async fn form(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    form_page(&console, &req, &path, async |own: &Own<Task>, version| {
        let (lang, task) = (own.lang, &own.item);
        let packages = packages_of(&own.client, &own.customer.jd_pin, lang).await?;
        let now = Utc::now();
        let usable: Vec<Package> = packages
            .into_iter()
            .filter(|p| p.instance_id != task.instance_id && p.is_usable_at(now))
            .collect();
        let on_them = tasks_of(&own.client, &usable, lang).await?;
        let runways = runways_of(&own.client, &usable, now, lang).await?;
        let names: Vec<String> = usable.iter().map(|p| console.sku_name(p)).collect();
        let candidates: Vec<pages::Candidate<'_>> = usable
            .iter()
            .zip(&names)
            .map(|(p, name)| pages::Candidate {
                package: p,
                sku_name: name,
                tasks: on_them
                    .iter()
                    .filter(|t| t.instance_id == p.instance_id)
                    .map(|t| t.task_id.as_str())
                    .collect(),
                runway: runways.get(&p.instance_id),
            })
            .collect();
        let more = pages::MoreTraffic {
            buy: console.config.buy_url.clone(),
            renew_current: console.renew_link(&task.instance_id),
        };
        let who = own.customer.who();
        Ok(pages::renew(
            lang,
            &who,
            task,
            &version,
            &candidates,
            &more,
            now,
        ))
    })
    .await
}

#[derive(Deserialize)]
pub struct RenewForm {
    #[serde(flatten)]
    posted: Posted,
    /// The package to move onto.
    to: String,
}

pub async fn submit(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<RenewForm>,
) -> PageResult {
    task_post(
        &console,
        &req,
        &path,
        &form.posted,
        async |own: Own<Task>| {
            let (lang, task, customer) = (own.lang, &own.item, &own.customer);
            let Some(target) = Package::find(&own.client, customer, &form.to, lang).await? else {
                tracing::warn!("console: renew onto a package that is not the customer's refused");
                return Ok(not_found(&console, customer, lang));
            };
            drop(own.client);
            let to = &target.instance_id;
            let metadata = metadata(&req, customer);
            let renewed =
                ledger::tasks::rebind(&console.ledger, &task.task_id, to, &metadata).await;
            let what = (flash::Done::Renewed, task, to.as_str());
            answer(&console, customer, lang, renewed, what)
        },
    )
    .await
}
