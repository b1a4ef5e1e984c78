//! `GET /v1/orders/{instanceId}`: a package's balance and tasks, from the projection tables;
//! `DELETE /v1/orders/{instanceId}/details`: erase the personal data that came with its orders.

use crate::http::api::orders::{
    CredentialRotated, DailyTaskUsage, DetailsErased, OrderAsOfResponse, OrderResponse,
    PackageBalance, RunwayResponse, TaskResponse, TaskUsageResponse, UsageResponse,
};
use crate::http::api::refusals::{AdminOnly, DatabaseRefused, OrderHolderOnly};
use crate::http::auth::{Admin, OrderCaller};
use crate::http::error::ApiError;
use crate::http::request::{parse_instance_id, parse_query};
use crate::http::routes::reconciliation::apply_refused;
use crate::http::state::{AppState, RequestId};
use crate::ledger::{self, rows};
use crate::store;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use projections::ids::InstanceId;
use projections::{Package, Task};
use serde::Deserialize;

fn order_response(
    package: &Package,
    tasks: &[Task],
    runway: Option<&crate::usage::Runway>,
) -> OrderResponse {
    OrderResponse {
        package: PackageBalance::from(package),
        tasks: tasks.iter().map(TaskResponse::from).collect(),
        runway: runway.map(RunwayResponse::from),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// The package as the ledger left it at this position (an integer, 0 or more) or time (RFC
    /// 3339), folded from its events; answers `OrderAsOfResponse`.
    #[serde(rename = "asOf")]
    #[param(schema_with = as_of_schema)]
    as_of: Option<String>,
}

/// `asOf`: a position or an RFC 3339 time, as `parse_point` reads it.
fn as_of_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let one_of = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]{1,18}$"))
                .description(Some("A ledger position")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some("An RFC 3339 time")),
        )
        .build();
    utoipa::openapi::RefOr::T(utoipa::openapi::Schema::OneOf(one_of))
}

/// A package's balance with its tasks, or as it was at a point in the ledger (`asOf`).
#[utoipa::path(get, path = "/v1/orders/{instanceId}", tag = "orders",
    params(("instanceId" = String, Path, description = "The package: the `orderBizId` of its purchase"), OrderQuery),
    security(("admin" = []), ("authCode" = [])),
    responses(
        (status = 200, description = "Now (`OrderResponse`), or at `asOf` (`OrderAsOfResponse`)",
            body = crate::http::api::orders::OrderReply),
        (status = 400, description = "`invalid_instance_id`, `invalid_as_of`, `invalid_query`", body = crate::http::api::error::ErrorResponse),
        (status = 404, description = "`order_not_found`", body = crate::http::api::error::ErrorResponse),
        OrderHolderOnly, DatabaseRefused,
    ))]
pub async fn get_order(
    order: OrderCaller,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let instance_id = order.instance_id;
    let query: OrderQuery = parse_query(&req)?;
    let mut client = state.pool.get().await?;
    if let Some(as_of) = &query.as_of {
        return order_as_of(&mut client, &instance_id, as_of).await;
    }
    let found = rows::read_packages(&client, &[instance_id.as_str()]).await?;
    let Some(row) = found.first() else {
        return Err(ApiError::not_found(
            "order_not_found",
            format!("instanceId {instance_id} is not known"),
        ));
    };
    let package = rows::package_from_row(row).map_err(|e| ApiError::internal(&e))?;
    let tasks = rows::all_tasks_of(&client, &[instance_id.as_str()])
        .await?
        .iter()
        .map(rows::task_from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal(&e))?;
    let runways =
        crate::usage::runways(&client, std::slice::from_ref(&instance_id), Utc::now()).await?;
    Ok(HttpResponse::Ok().json(order_response(&package, &tasks, runways.get(&instance_id))))
}

/// The usage window's length when the query names none, in days.
pub const USAGE_DAYS_DEFAULT: u32 = 30;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// The window: the last `days` days (China Standard Time), today included; 1 to 90
    /// (default 30).
    days: Option<i64>,
}

/// What each task drew from this package in the last `days` days, largest first, with the bytes
/// recorded after the package reached zero, and the daily series per task.
///
/// A task counts here what it drew from this package, whichever package it draws from now: a
/// task moved onto another package keeps its bytes on the package it drew them from.
#[utoipa::path(get, path = "/v1/orders/{instanceId}/usage", tag = "orders",
    params(("instanceId" = String, Path, description = "The package: the `orderBizId` of its purchase"), UsageQuery),
    security(("admin" = []), ("authCode" = [])),
    responses(
        (status = 200, description = "The window's use, per task and per day", body = UsageResponse),
        (status = 400, description = "`invalid_instance_id`, `invalid_days`, `invalid_query`", body = crate::http::api::error::ErrorResponse),
        (status = 404, description = "`order_not_found`", body = crate::http::api::error::ErrorResponse),
        (status = 503, description = "`database_unavailable`", body = crate::http::api::error::ErrorResponse),
        OrderHolderOnly,
    ))]
pub async fn get_usage(
    order: OrderCaller,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let instance_id = order.instance_id;
    let query: UsageQuery = parse_query(&req)?;
    let days = match query.days {
        None => USAGE_DAYS_DEFAULT,
        Some(days) => u32::try_from(days)
            .ok()
            .filter(|days| (1..=crate::usage::DAYS_MAX).contains(days))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_days",
                    format!("days must be 1 to {}", crate::usage::DAYS_MAX),
                )
            })?,
    };
    let client = state.pool.get().await?;
    if rows::read_packages(&client, &[instance_id.as_str()])
        .await?
        .is_empty()
    {
        return Err(ApiError::not_found(
            "order_not_found",
            format!("instanceId {instance_id} is not known"),
        ));
    }
    let now = Utc::now();
    let (since, from) = crate::usage::window_start(now, days);
    let tasks = crate::usage::package_tasks(&client, &instance_id, since, now).await?;
    let daily = crate::usage::daily_by_task(&client, &instance_id, days, now).await?;
    let sum = |f: fn(&crate::usage::TaskUsage) -> u64| {
        tasks.iter().map(f).fold(0u64, u64::saturating_add)
    };
    Ok(HttpResponse::Ok().json(UsageResponse {
        instance_id: instance_id.as_str().to_owned(),
        days,
        from,
        to: from + chrono::Duration::days(i64::from(days) - 1),
        bytes: sum(|t| t.bytes),
        bytes_after_zero: sum(|t| t.bytes_after_zero),
        tasks: tasks
            .iter()
            .map(|t| TaskUsageResponse {
                task_id: t.task_id.as_str().to_owned(),
                bytes: t.bytes,
                bytes_after_zero: t.bytes_after_zero,
            })
            .collect(),
        daily: daily
            .into_iter()
            .map(|(date, task_id, bytes)| DailyTaskUsage {
                date,
                task_id: task_id.as_str().to_owned(),
                bytes,
            })
            .collect(),
    }))
}

/// The package as the ledger left it at a position or time, folded from its own stream (every
/// event that changes a package is in that stream). The stream is read page by page in one
/// read-only snapshot, so memory stays bounded on a package with millions of reports; the time
/// grows with the package's events up to that point.
async fn order_as_of(
    client: &mut deadpool_postgres::Client,
    instance_id: &InstanceId,
    as_of: &str,
) -> Result<HttpResponse, ApiError> {
    let point = store::Point::parse(as_of).map_err(|_| {
        ApiError::bad_request(
            "invalid_as_of",
            format!("asOf {as_of:?} is neither a position nor an RFC 3339 time"),
        )
    })?;
    let tx = store::read_only(client).await?;
    let position = store::position_of(&tx, point).await?;
    let stream = projections::events::package_stream(instance_id);
    let mut projection = projections::Projection::default();
    store::for_each_in_stream_until(&tx, &stream, position, |recorded| {
        let event = recorded.decode().map_err(|e| ApiError::internal(&e))?;
        projection
            .apply_to_package(&event, recorded.recorded_at)
            .map_err(|e| ApiError::internal(&e))
    })
    .await?;
    // Read-only: nothing to keep, and dropping the transaction would roll it back just the same.
    tx.rollback().await?;
    let package = projection.packages.get(instance_id).ok_or_else(|| {
        ApiError::not_found(
            "order_not_found",
            format!("instanceId {instance_id} did not exist at position {position}"),
        )
    })?;
    Ok(HttpResponse::Ok().json(OrderAsOfResponse {
        package: PackageBalance::from(package),
        as_of_position: position,
    }))
}

/// Erases the personal data kept for a package (admin).
///
/// The mobile, email, free-form order info and invalid `template`; the ledger keeps none of them.
#[utoipa::path(delete, path = "/v1/orders/{instanceId}/details", tag = "orders",
    params(("instanceId" = String, Path, description = "The package: the `orderBizId` of its purchase")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Erased (again: `ordersErased` 0)", body = DetailsErased),
        (status = 400, description = "`invalid_instance_id`", body = crate::http::api::error::ErrorResponse),
        AdminOnly, DatabaseRefused,
    ))]
pub async fn erase_details(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let instance_id = parse_instance_id(&path)?;
    let client = state.pool.get().await?;
    let erased = ledger::details::erase_details(&client, &instance_id).await?;
    tracing::info!(instance_id = %instance_id, erased, "order details erased");
    Ok(HttpResponse::Ok().json(DetailsErased {
        instance_id: instance_id.as_str().to_owned(),
        orders_erased: erased,
    }))
}

/// Replaces a package's order credential (admin): the old `authCode` stops working at once, in
/// every process, and the console sessions it opened end. Recorded as `OrderCredentialRotated`;
/// the answer carries the new code, which nothing stores.
#[utoipa::path(post, path = "/v1/orders/{instanceId}/credential", tag = "orders",
    params(("instanceId" = String, Path, description = "The package: the `orderBizId` of its purchase")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Rotated: the new credential", body = CredentialRotated),
        (status = 400, description = "`invalid_instance_id`", body = crate::http::api::error::ErrorResponse),
        (status = 404, description = "`order_not_found`", body = crate::http::api::error::ErrorResponse),
        (status = 409, description = "`order_released`: a released package signs no one in", body = crate::http::api::error::ErrorResponse),
        (status = 503, description = "`database_unavailable`, `database_read_only`; `credentials_unconfigured`: no secret to derive credentials from", body = crate::http::api::error::ErrorResponse),
        AdminOnly,
    ))]
pub async fn rotate_credential(
    admin: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = admin.caller();
    let instance_id = parse_instance_id(&path)?;
    let Some(credentials) = &state.credentials else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "credentials_unconfigured",
            "no console secret or marketplace key to derive credentials from",
        ));
    };
    let metadata = RequestId::of(&req).metadata("operator", caller.actor());
    let rotated = ledger::orders::rotate_credential(&state.ledger, &instance_id, None, &metadata)
        .await
        .map_err(apply_refused)?;
    tracing::warn!(
        instance_id = %instance_id,
        generation = rotated.generation,
        sessions_ended = rotated.sessions_ended,
        actor = %caller.actor(),
        "order credential rotated by an operator"
    );
    Ok(HttpResponse::Ok().json(CredentialRotated {
        instance_id: instance_id.as_str().to_owned(),
        auth_code: credentials.auth_code_at(&instance_id, rotated.generation),
        generation: rotated.generation,
        sessions_ended: rotated.sessions_ended,
    }))
}
