//! Wire error codes (from the wire crate) and the server's one map from its errors to them:
//! every server error type (token, media, store) becomes an `ApiError` here, and an
//! `ApiError` becomes an HTTP response here, once, for every route. (The core's and the wire
//! crate's own errors — calls, IDs — map in their crates: Rust allows a `From` impl only
//! where one of its types is defined.)

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

pub use amphi_proto::error::*;

use crate::calls::store::StoreError;
use crate::media::error::MediaError;
use crate::token::TokenError;

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::new(ErrorCode::Unauthorized, e.to_string())
    }
}

/// How long a client refused at capacity is told to wait; clients add their own jitter.
pub const RETRY_AFTER_MS: u64 = 5_000;

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        let code = match e {
            MediaError::BadSdp(_) => ErrorCode::BadRequest,
            MediaError::Forbidden(_) => ErrorCode::Forbidden,
            MediaError::NoPeer | MediaError::NoPendingOffer => ErrorCode::NotFound,
            MediaError::Busy => ErrorCode::RateLimited,
            MediaError::OfferPending => ErrorCode::Conflict,
            MediaError::Negotiation(_) => ErrorCode::BadRequest,
            MediaError::TooMany(..) => ErrorCode::Busy,
            MediaError::Full(..) => return ApiError::at_capacity(e.to_string(), RETRY_AFTER_MS),
            MediaError::Io(_) => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCount | StoreError::TooManyIds => {
                ApiError::new(ErrorCode::BadRequest, e.to_string())
            }
            // The client cannot act on database details; the server logs them.
            _ => ApiError::new(ErrorCode::Internal, "call log storage failed"),
        }
    }
}

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
        let mut response = HttpResponse::build(self.status_code());
        if let Some(ms) = self.0.retry_after_ms {
            response.insert_header(("Retry-After", ms.div_ceil(1000).to_string()));
        }
        response.json(&self.0)
    }
}
