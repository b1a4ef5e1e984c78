//! Errors as clients see them: `{"error": {"code", "message"}}` with a stable `code`.

use crate::api::error::ErrorResponse;
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use std::fmt;

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
        HttpResponse::build(self.status).json(self.body())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        if error.is_unavailable() {
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
