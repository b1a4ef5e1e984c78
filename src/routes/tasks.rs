//! DTS tasks: `POST /v1/tasks`, `GET /v1/tasks/{taskId}`, `POST /v1/tasks/{taskId}/renew`,
//! `DELETE /v1/tasks/{taskId}`. For the DTS control plane and agents (reporter or admin token).

use crate::api::orders::TaskResponse;
use crate::auth::{self, Caller};
use crate::domain::tasks::TaskRefusal;
use crate::error::ApiError;
use crate::ledger::{self, rows, CommandError};
use crate::routes::body::JSON_BODY_BYTES_MAX;
use crate::routes::body::{self, Encodings};
use crate::routes::orders::parse_instance_id;
use crate::state::{AppState, RequestId};
use crate::store::Metadata;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use projections::ids::TaskId;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTask {
    task_id: String,
    instance_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Renewal {
    instance_id: String,
}

fn parse_task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).map_err(|e| ApiError::bad_request("invalid_task_id", format!("taskId {e}")))
}

fn metadata(request_id: &RequestId, caller: &Caller) -> Metadata {
    Metadata {
        request_id: request_id.0.clone(),
        source: "tasks",
        actor: caller.actor(),
    }
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
        CommandError::Failed(error) if error.is_unavailable() => ApiError::unavailable(),
        CommandError::Failed(error) => ApiError::internal(&error),
    }
}

pub async fn create_task(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::require_reporter(&req, &state.tokens())?;
    let body: NewTask =
        body::read_json(&req, payload, JSON_BODY_BYTES_MAX, Encodings::Identity).await?;
    let task_id = parse_task_id(&body.task_id)?;
    let instance_id = parse_instance_id(&body.instance_id)?;
    let (task, created) = ledger::tasks::create(
        &state.ledger,
        &task_id,
        &instance_id,
        &metadata(&request_id, &caller),
    )
    .await
    .map_err(refused)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(TaskResponse::from(&task)))
}

pub async fn get_task(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth::require_reporter(&req, &state.tokens())?;
    let task_id = parse_task_id(&path)?;
    let client = state.pool.get().await?;
    let found = rows::read_tasks(&client, &[task_id.as_str()]).await?;
    let row = found.first().ok_or_else(|| {
        ApiError::not_found("task_not_found", format!("task {task_id} is not known"))
    })?;
    let task = rows::task_from_row(row).map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok().json(TaskResponse::from(&task)))
}

pub async fn renew_task(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::require_reporter(&req, &state.tokens())?;
    let task_id = parse_task_id(&path)?;
    let body: Renewal =
        body::read_json(&req, payload, JSON_BODY_BYTES_MAX, Encodings::Identity).await?;
    let instance_id = parse_instance_id(&body.instance_id)?;
    let task = ledger::tasks::rebind(
        &state.ledger,
        &task_id,
        &instance_id,
        &metadata(&request_id, &caller),
    )
    .await
    .map_err(refused)?;
    Ok(HttpResponse::Ok().json(TaskResponse::from(&task)))
}

pub async fn destroy_task(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::require_reporter(&req, &state.tokens())?;
    let task_id = parse_task_id(&path)?;
    let task = ledger::tasks::destroy(&state.ledger, &task_id, &metadata(&request_id, &caller))
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Ok().json(TaskResponse::from(&task)))
}
