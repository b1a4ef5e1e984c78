//! What an API route reads from its request once its caller is known (the role's extractor of
//! [`crate::http::auth`] comes first among a handler's arguments): ids from the path or the body,
//! and the query, each parsed into its type or refused with the `400` naming what is wrong.

use crate::http::error::ApiError;
use actix_web::{web, HttpRequest};
use projections::ids::{InstanceId, TaskId};
use serde::de::DeserializeOwned;

/// A package's id (`instanceId`), from the path or a body.
pub fn parse_instance_id(raw: &str) -> Result<InstanceId, ApiError> {
    InstanceId::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid_instance_id", format!("instanceId {e}")))
}

/// A DTS task's id (`taskId`), from the path or a body.
pub fn parse_task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).map_err(|e| ApiError::bad_request("invalid_task_id", format!("taskId {e}")))
}

/// The request's query as `T` (`invalid_query`: a value of the wrong type, or a name `T` does
/// not take).
pub fn parse_query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
}
