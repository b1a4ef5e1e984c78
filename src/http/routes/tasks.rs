//! DTS tasks: `POST /v1/tasks`, `GET /v1/tasks/{taskId}`, `POST /v1/tasks/{taskId}/renew`,
//! `DELETE /v1/tasks/{taskId}`. For the DTS control plane and agents (reporter or admin token).

use crate::domain::tasks::TaskRefusal;
use crate::http::api::orders::TaskResponse;
use crate::http::api::refusals::{DatabaseRefused, JsonBodyRefused, StaffOnly};
use crate::http::auth::{Caller, Staff};
use crate::http::body::JSON_BODY_BYTES_MAX;
use crate::http::body::{self, Encodings};
use crate::http::error::ApiError;
use crate::http::request::{parse_instance_id, parse_task_id};
use crate::http::state::{AppState, RequestId};
use crate::ledger::{self, rows, CommandError};
use crate::store::Metadata;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use projections::Task;
use serde::Deserialize;

/// A task to create on a package.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(examples(json!({"taskId": "task-1", "instanceId": "dts-1"})))]
pub struct NewTask {
    task_id: String,
    instance_id: String,
}

/// The package to bind a task to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(examples(json!({"instanceId": "dts-2"})))]
pub struct Renewal {
    instance_id: String,
}

/// What the ledger records of a task command: the request, this API, the caller.
fn metadata(req: &HttpRequest, caller: &Caller) -> Metadata {
    RequestId::of(req).metadata("tasks", caller.actor())
}

/// A task bound to its package, as created or rebound: its reports are routed by package from
/// the next one on (see `Ingest::learn_binding`).
fn bound(state: &AppState, task: &Task) -> TaskResponse {
    state
        .ingest
        .learn_binding(task.task_id.clone(), task.instance_id.clone());
    TaskResponse::from(task)
}

fn refused(error: CommandError<TaskRefusal>) -> ApiError {
    match error {
        CommandError::Refused(refusal) => {
            let (status, code) = match &refusal {
                TaskRefusal::UnknownOrder(_) => (StatusCode::NOT_FOUND, "order_not_found"),
                TaskRefusal::UnknownTask(_) => (StatusCode::NOT_FOUND, "task_not_found"),
                TaskRefusal::OrderNotUsable(..) => (StatusCode::CONFLICT, "order_not_usable"),
                TaskRefusal::TaskExists { .. } => (StatusCode::CONFLICT, "task_exists"),
                TaskRefusal::TaskDestroyed(_) => (StatusCode::CONFLICT, "task_destroyed"),
                TaskRefusal::OtherCustomer(_) => (StatusCode::FORBIDDEN, "other_customer"),
                // Never reached: the ledger turns a fold error into `CommandError::Failed` (a bug,
                // not a business answer). The variant stays so that decisions can use `?` on the
                // fold; were it reached, it is answered as the bug it would be.
                TaskRefusal::Fold(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            };
            ApiError::new(status, code, refusal.to_string())
        }
        CommandError::Failed(error) if error.is_read_only() => ApiError::read_only(),
        CommandError::Failed(error) if error.is_unavailable() => ApiError::unavailable(),
        CommandError::Failed(error) => ApiError::internal(&error),
    }
}

/// Creates a DTS task on a package.
///
/// A task created on an empty package starts `stopped`
/// (`quota_exhausted`).
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = NewTask, security(("reporter" = []), ("admin" = [])),
    responses(
        (status = 201, description = "Created", body = TaskResponse),
        (status = 200, description = "The same task again: nothing new", body = TaskResponse),
        (status = 400, description = "`invalid_task_id`, `invalid_instance_id`, `invalid_json`", body = crate::http::api::error::ErrorResponse),
        (status = 404, description = "`order_not_found`", body = crate::http::api::error::ErrorResponse),
        (status = 409, description = "`task_exists` (on another package), `order_not_usable` \
            (expired or released), `task_destroyed`", body = crate::http::api::error::ErrorResponse),
        StaffOnly, JsonBodyRefused, DatabaseRefused,
    ))]
pub async fn create_task(
    Staff(caller): Staff,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: NewTask =
        body::read_json(&req, payload, JSON_BODY_BYTES_MAX, Encodings::Identity).await?;
    let (task_id, instance_id) = (
        parse_task_id(&body.task_id)?,
        parse_instance_id(&body.instance_id)?,
    );
    let metadata = metadata(&req, &caller);
    let (task, created) = ledger::tasks::create(&state.ledger, &task_id, &instance_id, &metadata)
        .await
        .map_err(refused)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(bound(&state, &task)))
}

/// A task.
#[utoipa::path(get, path = "/v1/tasks/{taskId}", tag = "tasks", params(("taskId" = String, Path, description = "The DTS task")), security(("reporter" = []), ("admin" = [])),
    responses(
        (status = 200, description = "The task", body = TaskResponse),
        (status = 400, description = "`invalid_task_id`", body = crate::http::api::error::ErrorResponse),
        (status = 404, description = "`task_not_found`", body = crate::http::api::error::ErrorResponse),
        StaffOnly, DatabaseRefused,
    ))]
pub async fn get_task(
    _: Staff,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let client = state.pool.get().await?;
    let found = rows::read_tasks(&client, &[task_id.as_str()]).await?;
    let row = found.first().ok_or_else(|| {
        ApiError::not_found("task_not_found", format!("task {task_id} is not known"))
    })?;
    let task = rows::task_from_row(row).map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok().json(TaskResponse::from(&task)))
}

/// Re-binds a task to another package.
///
/// The package must be of the same `jdPin` (the console's 续费); the task runs again if that
/// package has bytes.
#[utoipa::path(post, path = "/v1/tasks/{taskId}/renew", tag = "tasks", params(("taskId" = String, Path, description = "The DTS task")),
    request_body = Renewal, security(("reporter" = []), ("admin" = [])),
    responses(
        (status = 200, description = "The task, bound to the package", body = TaskResponse),
        (status = 400, description = "`invalid_task_id`, `invalid_instance_id`, `invalid_json`", body = crate::http::api::error::ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an unknown one", body = crate::http::api::error::ErrorResponse),
        (status = 403, description = "`forbidden`; `other_customer`: the package is another \
            customer's", body = crate::http::api::error::ErrorResponse),
        (status = 404, description = "`task_not_found`, `order_not_found`", body = crate::http::api::error::ErrorResponse),
        (status = 409, description = "`order_not_usable`, `task_destroyed`", body = crate::http::api::error::ErrorResponse),
        JsonBodyRefused, DatabaseRefused,
    ))]
pub async fn renew_task(
    Staff(caller): Staff,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let body: Renewal =
        body::read_json(&req, payload, JSON_BODY_BYTES_MAX, Encodings::Identity).await?;
    let instance_id = parse_instance_id(&body.instance_id)?;
    let metadata = metadata(&req, &caller);
    let task = ledger::tasks::rebind(&state.ledger, &task_id, &instance_id, &metadata)
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Ok().json(bound(&state, &task)))
}

/// Destroys a task for good (again: `200`, nothing new).
#[utoipa::path(delete, path = "/v1/tasks/{taskId}", tag = "tasks", params(("taskId" = String, Path, description = "The DTS task")), security(("reporter" = []), ("admin" = [])),
    responses(
        (status = 200, description = "The destroyed task", body = TaskResponse),
        (status = 400, description = "`invalid_task_id`", body = crate::http::api::error::ErrorResponse),
        (status = 404, description = "`task_not_found`", body = crate::http::api::error::ErrorResponse),
        StaffOnly, DatabaseRefused,
    ))]
pub async fn destroy_task(
    Staff(caller): Staff,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_task_id(&path)?;
    let task = ledger::tasks::destroy(&state.ledger, &task_id, &metadata(&req, &caller))
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Ok().json(TaskResponse::from(&task)))
}
