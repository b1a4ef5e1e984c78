//! What a task's two forms (renew, destroy) share: the version each form carries, so that a form
//! left open while the task changed is refused rather than carried out on what it no longer
//! shows, and where the customer goes once it is done.

use super::customer::{
    command_refused, own_page, own_post, see_other, signed_in_page, Customer, Own,
};
use super::error::{db_error, PageError, PageResult};
use super::i18n::Lang;
use super::{flash, pages, Console};
use crate::ledger::CommandError;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use deadpool_postgres::GenericClient;
use projections::Task;
use serde::Deserialize;

/// The fields every task form posts.
#[derive(Deserialize)]
pub struct Posted {
    pub csrf: String,
    /// The version of the task the form showed ([`version_of`]).
    pub version: String,
}

/// The version a form carries: the version of the task's own stream, which moves with every
/// change of its binding or state (created, rebound, stopped, resumed, destroyed) but not with
/// its traffic (which goes to the package's stream), so a running task's forms do not go stale
/// with every report. One step back along the stream index.
async fn version_of(
    client: &impl GenericClient,
    task: &Task,
    lang: Lang,
) -> Result<String, PageError> {
    let stream = projections::events::task_stream(&task.task_id);
    let version = crate::store::stream_version(client, &stream)
        .await
        .map_err(db_error(lang))?;
    Ok(version.to_string())
}

/// A task form's page: `render` makes it from the task and the version the form carries.
pub async fn form_page(
    console: &Console,
    req: &HttpRequest,
    raw: &str,
    render: impl AsyncFnOnce(&Own<Task>, String) -> Result<String, PageError>,
) -> PageResult {
    own_page(console, req, raw, async |own: Own<Task>| {
        let version = version_of(&own.client, &own.item, own.lang).await?;
        let body = render(&own, version).await?;
        Ok(own.show(console, body))
    })
    .await
}

/// A task form's post, as [`own_post`], which `then` carries out only when the task is still at
/// the version the form showed; otherwise the page saying it changed meanwhile.
pub async fn task_post(
    console: &Console,
    req: &HttpRequest,
    raw: &str,
    posted: &Posted,
    then: impl AsyncFnOnce(Own<Task>) -> PageResult,
) -> PageResult {
    own_post(console, req, raw, &posted.csrf, async |own: Own<Task>| {
        if posted.version != version_of(&own.client, &own.item, own.lang).await? {
            let body = pages::stale(own.lang, &own.customer.who(), &own.item);
            return Ok(signed_in_page(
                console,
                &own.customer,
                StatusCode::CONFLICT,
                body,
            ));
        }
        then(own).await
    })
    .await
}

/// What a task form's command answers: back to the overview's tasks, with the message saying
/// what was done (`what`, to `task`, onto `package`), or the rule that refused it.
pub fn answer<T, R: std::fmt::Display>(
    console: &Console,
    customer: &Customer,
    lang: Lang,
    outcome: Result<T, CommandError<R>>,
    (what, task, package): (flash::Done, &Task, &str),
) -> PageResult {
    if let Err(error) = outcome {
        return command_refused(console, customer, lang, error);
    }
    let mut answer = see_other("/console#tasks");
    if let Some(cookie) = flash::cookie(console, customer, what, task.task_id.as_str(), package) {
        answer.cookie(cookie);
    }
    Ok(answer.finish())
}
