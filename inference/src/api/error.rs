//! Errors in OpenAI's JSON shape: `{"error": {"message", "type", "param", "code"}}`.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Seconds a client is asked to wait when the queue is full.
const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<&'static str>,
    message: String,
}

impl ApiError {
    pub fn invalid(message: String, param: Option<&'static str>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, kind: "invalid_request_error", code: None, param, message }
    }

    pub fn context_length(message: String) -> Self {
        Self { code: Some("context_length_exceeded"), ..Self::invalid(message, Some("messages")) }
    }

    pub fn from_json(error: serde_json::Error) -> Self {
        Self::invalid(format!("the body is not a valid chat request: {error}"), None)
    }

    pub fn from_body_rejection(rejection: BytesRejection, limit: usize) -> Self {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the request body is larger than the {limit}-byte limit")
        } else {
            rejection.body_text()
        };
        Self { status, ..Self::invalid(message, None) }
    }

    pub fn queue_full(message: String) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_overloaded",
            code: Some("queue_full"),
            param: None,
            message,
        }
    }

    pub fn unavailable(message: String) -> Self {
        Self { code: None, ..Self::queue_full(message) }
    }

    pub fn internal(message: String) -> Self {
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, kind: "server_error", code: None, param: None, message }
    }

    /// A sealed request refused before anything in it was used.
    pub fn sealed(message: String) -> Self {
        Self { code: Some("sealed_request_refused"), ..Self::invalid(message, None) }
    }

    pub fn unsupported_media_type(message: String) -> Self {
        Self { status: StatusCode::UNSUPPORTED_MEDIA_TYPE, ..Self::invalid(message, None) }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn is_queue_full(&self) -> bool {
        self.code == Some("queue_full")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({
            "error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        }));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            (self.status, [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}
