//! `/healthz` (the process is up) and `/readyz` (every background worker runs, the database is
//! reachable and migrated).

use crate::database::migrate::{current_version, latest_version, MigrateError};
use crate::http::api::health::{Health, Ready};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use std::time::Duration;

/// A readiness probe that hangs is as bad as a failing one: answer within this.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "Always, while the process runs", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".to_owned(),
    })
}

/// Every background worker runs and the database is reachable and migrated.
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready: `worker_down` (the message names the worker), \
            `database_unavailable`, `database_read_only` (the server reached is a standby), \
            `schema_outdated`", body = crate::http::api::error::ErrorResponse),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // A dead lane leaves its share of the traffic waiting, a dead sweeper lets orders outlive
    // their expiry, a dead dispatcher stops webhooks: none is ready, while the supervisor
    // restarts it.
    let down = state.supervisor.down();
    if !down.is_empty() {
        let named: Vec<String> = down
            .iter()
            .map(|worker| format!("{} ({})", worker.name, worker.reason))
            .collect();
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "worker_down",
            format!("background worker down, restarting: {}", named.join(", ")),
        ));
    }
    let check = async {
        let client = state.pool.get().await?;
        let (version, protection) = tokio::join!(
            current_version(&**client),
            crate::database::primary::protection(&**client),
        );
        let (version, protection) = (version.map_err(migrate_failed)?, protection?);
        crate::metrics::protection(&protection);
        // 0: never migrated.
        Ok::<_, ApiError>(((version > 0).then_some(version), protection))
    };
    let (version, protection) = match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(result) => result?,
        Err(_) => return Err(ApiError::unavailable()),
    };
    let Some(schema_version) = version.filter(|v| *v == latest_version()) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "schema_outdated",
            format!(
                "the database schema is at version {version:?}, this build needs {}",
                latest_version()
            ),
        ));
    };
    // The pool lends no connection to a server that answers read-only; this says so even of a
    // standby that a superuser's session would find writable by mistake.
    if protection.in_recovery {
        return Err(ApiError::read_only());
    }
    Ok(HttpResponse::Ok().json(Ready {
        status: "ready".to_owned(),
        schema_version,
        database: protection.into(),
    }))
}

/// Reading the schema's version fails only as the database does.
fn migrate_failed(error: MigrateError) -> ApiError {
    match error {
        MigrateError::Database(error) => error.into(),
        other => ApiError::internal(&other),
    }
}
