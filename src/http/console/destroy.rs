//! `GET|POST /console/tasks/{id}/destroy`: the customer destroys one of their tasks, for good,
//! after a page asking them to confirm.

use super::customer::{metadata, Own};
use super::error::PageResult;
use super::task_form::{answer, form_page, task_post, Posted};
use super::{flash, pages, Console};
use crate::ledger;
use actix_web::{web, HttpRequest};
use projections::Task;

/// The confirmation.
pub async fn form(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
) -> PageResult {
    form_page(&console, &req, &path, async |own, version| {
        Ok(pages::destroy(
            own.lang,
            &own.customer.who(),
            &own.item,
            &version,
        ))
    })
    .await
}

pub async fn submit(
    console: web::Data<Console>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<Posted>,
) -> PageResult {
    task_post(&console, &req, &path, &form, async |own: Own<Task>| {
        let (task, customer) = (&own.item, &own.customer);
        drop(own.client);
        let destroyed =
            ledger::tasks::destroy(&console.ledger, &task.task_id, &metadata(&req, customer)).await;
        let what = (flash::Done::Destroyed, task, task.instance_id.as_str());
        answer(&console, customer, own.lang, destroyed, what)
    })
    .await
}
