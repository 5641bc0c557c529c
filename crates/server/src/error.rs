//! One error type for every handler: a status code and a message safe to show. Server-side
//! failures are logged in full and answered without internals. Every error body is JSON
//! (`{"error": "..."}`): [`json_errors`] rewrites the ones axum makes itself (a missing
//! content type, malformed JSON, a wrong method) and [`no_such_route`] answers unknown paths.
//! [`limit_body`] applies the per-route body limits, answering `413` before reading a body
//! that says it is too large.

use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use ringfence_protocol::api::{ApiError, BodyError};
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

impl From<BodyError> for AppError {
    fn from(error: BodyError) -> Self {
        let status = match error {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        AppError::new(status, error.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (
            self.status,
            Json(ApiError {
                error: self.message,
            }),
        )
            .into_response();
        if unauthorized {
            // RFC 7235: a 401 names the scheme that would work.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The answer to a path no route serves.
pub async fn no_such_route() -> AppError {
    AppError::not_found("no such route")
}

/// The longest error text of axum's own kept in a rewritten body; theirs are one line.
const MAX_REWRITTEN_ERROR: usize = 1024;

/// Makes every error answer JSON: axum's extractors and router answer some errors in plain
/// text (415 without a JSON content type, 400 for malformed JSON, 422 for a body of the wrong
/// shape, 413 past a body limit) or with no body at all (405). Their text is kept as the
/// message; headers such as `Allow` are kept too.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match http_body_util::Limited::new(body, MAX_REWRITTEN_ERROR)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let body = serde_json::to_vec(&ApiError { error: message }).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// Applies [`crate::body_limit`] to each request: a `Content-Length` past the route's limit is
/// refused before a byte of the body is read, and a body without one (chunked) is cut off at
/// the limit, which the extractors answer with `413`.
pub async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = crate::body_limit(request.uri().path(), state.config.max_body_bytes);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("this route accepts bodies of at most {limit} bytes"),
        )
        .into_response();
    }
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    next.run(request).await
}

pub type ApiResult<T> = Result<T, AppError>;
