//! `GET /console?instanceId=…&session=…`: where a login-free sign-in lands. A plain page naming
//! the package and its balance, until the full console exists.

use crate::error::ApiError;
use crate::ledger::rows;
use crate::routes::orders::parse_instance_id;
use crate::startup::AppState;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct SessionQuery {
    #[serde(rename = "instanceId")]
    instance_id: String,
    session: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub async fn console(
    state: web::Data<AppState>,
    query: web::Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    let instance_id = parse_instance_id(&query.instance_id)?;
    let valid = state
        .credentials
        .as_ref()
        .is_some_and(|c| c.is_session(&instance_id, &query.session, Utc::now()));
    if !valid {
        return Err(ApiError::unauthorized());
    }
    let client = state.pool.get().await?;
    let found = rows::read_packages(&client, &[instance_id.as_str()]).await?;
    let row = found.first().ok_or_else(|| {
        ApiError::not_found(
            "order_not_found",
            format!("instanceId {instance_id} is not known"),
        )
    })?;
    let package = rows::package_from_row(row).map_err(|e| ApiError::internal(&e))?;
    let tasks = rows::all_tasks_of(&client, &[instance_id.as_str()]).await?;
    let expires = package
        .expires_at
        .map_or_else(|| "never".to_owned(), |at| at.to_rfc3339());
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>DTS package {id}</title></head><body>\
         <h1>DTS package {id}</h1>\
         <p>Status: {status}. Expires: {expires}.</p>\
         <p>Remaining: {remaining} bytes of {granted} granted; consumed {consumed}; \
         overage {overage}.</p><p>Tasks: {tasks}.</p></body></html>",
        id = escape(instance_id.as_str()),
        status = package.status.as_str(),
        expires = escape(&expires),
        remaining = package.bytes_remaining,
        granted = package.bytes_granted,
        consumed = package.bytes_consumed,
        overage = package.bytes_overage,
        tasks = tasks.len(),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page))
}
