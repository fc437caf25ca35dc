//! Errors as the HTTP interface states them: a status, a machine code and a
//! sentence for a person, rendered as JSON `{"error","message"}`.

use cti_ffi::ErrorKind;
use hyper::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for `429`.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is nothing at this address.",
        )
    }

    /// Tells the client when to try again (`Retry-After`).
    pub fn retry_after(mut self, secs: u32) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    pub fn json(&self) -> String {
        serde_json::json!({ "error": self.code, "message": self.message }).to_string()
    }
}

impl From<cti_ffi::Error> for ApiError {
    fn from(e: cti_ffi::Error) -> ApiError {
        let (status, code) = match e.kind {
            ErrorKind::InvalidNick => (StatusCode::BAD_REQUEST, "invalid_name"),
            ErrorKind::InvalidAddress => (StatusCode::BAD_REQUEST, "invalid_address"),
            ErrorKind::NotIpv4 => (StatusCode::BAD_REQUEST, "not_ipv4"),
            ErrorKind::UnknownWindow => (StatusCode::BAD_REQUEST, "unknown_window"),
            ErrorKind::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ErrorKind::Unavailable | ErrorKind::Closed => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        // An unavailable store (disk full or too slow, queue full) is
        // usually brief: clients may retry after a second.
        let retry_after = match e.kind {
            ErrorKind::Unavailable => Some(1),
            _ => e.retry_after,
        };
        ApiError {
            status,
            code,
            message: e.message,
            retry_after,
        }
    }
}
