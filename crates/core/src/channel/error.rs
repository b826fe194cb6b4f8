//! Why a channel refuses a request. The kind decides the wire code, in one place
//! (`From<ChannelError> for ApiError`); the text is what the person reads, and says what to do.

use crate::error::{ApiError, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The member's role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// The participant, member or moderator named is not there.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot mean anything here (an unknown role, a bad argument).
    #[error("{0}")]
    Invalid(String),
    /// It clashes with the channel's state (already joined, already recording).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    ChannelFull(String),
    #[error("{0}")]
    RoleFull(String),
    #[error("{0}")]
    TooLarge(String),
}

impl ChannelError {
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    /// The wire code a client reads.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Invalid(_) => ErrorCode::BadRequest,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::ChannelFull(_) => ErrorCode::ChannelFull,
            Self::RoleFull(_) => ErrorCode::RoleFull,
            Self::TooLarge(_) => ErrorCode::TooLarge,
        }
    }
}

impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> Self {
        let code = e.code();
        let message = match e {
            ChannelError::Forbidden(m)
            | ChannelError::NotFound(m)
            | ChannelError::Invalid(m)
            | ChannelError::Conflict(m)
            | ChannelError::ChannelFull(m)
            | ChannelError::RoleFull(m)
            | ChannelError::TooLarge(m) => m,
        };
        ApiError::new(code, message)
    }
}
