//! Errors as clients see them: `{"error": {"code", "message"}}` with a stable `code`.

use crate::http::api::error::ErrorResponse;
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use std::fmt;

/// The `Retry-After` of every 503: a failover under Patroni or an operator's promotion takes
/// seconds, a full queue drains in less.
pub const RETRY_AFTER_S: u64 = 1;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, snake_case; clients match on it.
    pub code: &'static str,
    /// For people; may change wording between versions.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database cannot be reached; nothing was recorded, retry later",
        )
    }

    /// The server reached takes no writes: a standby, or a primary fenced off during a failover.
    /// The connections to it are already dropped; a retry reaches the primary.
    pub fn read_only() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_read_only",
            "the database server reached takes no writes (a standby, or a failover under way); \
             nothing was recorded, retry shortly",
        )
    }

    /// A bug or an unexpected database answer: logged in full here, shown to the client only as a
    /// code, so no internal detail leaks.
    pub fn internal(error: &dyn std::error::Error) -> ApiError {
        tracing::error!(error = %error, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; nothing was recorded",
        )
    }

    pub fn body(&self) -> ErrorResponse {
        error_body(self.code, &self.message)
    }
}

pub fn error_body(code: &str, message: &str) -> ErrorResponse {
    ErrorResponse::new(code, message)
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        // Every 503 is a fault that passes (a database away or read-only during a failover, a
        // full queue, a worker restarting, a shutdown): say when to come back.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((
                actix_web::http::header::RETRY_AFTER,
                RETRY_AFTER_S.to_string(),
            ));
        }
        response.json(self.body())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        if error.is_read_only() {
            tracing::warn!(%error, "database read-only");
            ApiError::read_only()
        } else if error.is_unavailable() {
            tracing::warn!(%error, "database unavailable");
            ApiError::unavailable()
        } else {
            ApiError::internal(&error)
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> ApiError {
        StoreError::from(error).into()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> ApiError {
        StoreError::from(error).into()
    }
}
