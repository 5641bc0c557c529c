//! One error type for every handler: a status code and a message safe to show. Server-side
//! failures are logged in full and answered without internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ringfence_protocol::api::ApiError;
use ringfence_store::StoreError;

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub message: String,
}

impl AppError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::CONFLICT, message)
    }

    pub fn unauthorized() -> AppError {
        AppError::new(StatusCode::UNAUTHORIZED, "missing or invalid credential")
    }

    pub fn forbidden(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> AppError {
        tracing::error!("{context}: {error}");
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{context}: internal error"),
        )
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Duplicate(what) => AppError::conflict(format!("{what} already exists")),
            StoreError::Conflict(what) => {
                AppError::conflict(format!("{what} changed concurrently; retry"))
            }
            StoreError::Database(sqlx_error) => {
                tracing::error!("database error: {sqlx_error}");
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database unavailable; retry later",
                )
            }
            other => AppError::internal("database", other),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ApiError {
                error: self.message,
            }),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, AppError>;
