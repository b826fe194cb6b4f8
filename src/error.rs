//! Wire error codes (from the wire crate) and the server's one map from errors to responses:
//! subsystem errors become `ApiError` where they are defined (`From` impls beside each error
//! type: token, media, store; calls and IDs in the core and the wire crate), and an `ApiError`
//! becomes an HTTP response here, once, for every route.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

pub use amphi_proto::error::*;

/// An error answered over HTTP: the wire error's status and its JSON body.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl<E: Into<ApiError>> From<E> for HttpError {
    fn from(e: E) -> Self {
        HttpError(e.into())
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(serde_json::json!({
            "code": self.0.code,
            "message": self.0.message,
        }))
    }
}
