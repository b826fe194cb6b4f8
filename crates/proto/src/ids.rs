//! Identifier newtypes. Every ID that crosses the wire is validated once, here.

use std::fmt;
use std::sync::Arc;

use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const MAX_CHANNEL_ID_LEN: usize = 64;
pub const MAX_IDENTITY_LEN: usize = 128;
pub const MAX_URI_LEN: usize = 1024;

pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

fn is_identity_char(c: char) -> bool {
    is_id_char(c) || matches!(c, '@' | '+')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {detail}")]
pub struct IdError {
    what: &'static str,
    detail: String,
}

impl IdError {
    pub fn new(what: &'static str, detail: impl Into<String>) -> Self {
        Self {
            what,
            detail: detail.into(),
        }
    }
}

fn check(
    what: &'static str,
    value: &str,
    max: usize,
    ok: fn(char) -> bool,
    allowed: &str,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError {
            what,
            detail: "is empty".into(),
        });
    }
    if value.len() > max {
        return Err(IdError {
            what,
            detail: format!("is {} bytes long; the limit is {max}", value.len()),
        });
    }
    if let Some(c) = value.chars().find(|c| !ok(*c)) {
        return Err(IdError {
            what,
            detail: format!("contains {c:?}; allowed characters are {allowed}"),
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(ChannelId);
id_type!(Identity);
id_type!(ParticipantId);
id_type!(SessionId);

impl ChannelId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check(
            "channel ID",
            value,
            MAX_CHANNEL_ID_LEN,
            is_id_char,
            "A-Z a-z 0-9 _ - . :",
        )?;
        Ok(Self(value.into()))
    }

    /// The same URI always maps to the same channel; the hash keeps IDs short and free of
    /// characters that IDs may not carry.
    pub fn from_uri(uri: &str) -> Result<Self, IdError> {
        if uri.is_empty() || uri.len() > MAX_URI_LEN || uri.chars().any(char::is_control) {
            return Err(IdError {
                what: "channel URI",
                detail: format!("must be 1 to {MAX_URI_LEN} bytes without control characters"),
            });
        }
        let digest = Sha256::digest(uri.as_bytes());
        Ok(Self(format!("uri-{}", hex::encode(&digest[..16])).into()))
    }
}

impl Identity {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check(
            "identity",
            value,
            MAX_IDENTITY_LEN,
            is_identity_char,
            "A-Z a-z 0-9 _ - . : @ +",
        )?;
        Ok(Self(value.into()))
    }
}

impl ParticipantId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check(
            "participant ID",
            value,
            64,
            is_id_char,
            "A-Z a-z 0-9 _ - . :",
        )?;
        Ok(Self(value.into()))
    }

    /// Random so that IDs leak nothing about join order and never repeat across restarts.
    pub fn random() -> Self {
        Self(format!("p-{:016x}", rand::rng().random::<u64>()).into())
    }
}

/// 128 random bits as 32 hex digits: token IDs and other unguessable names.
pub fn random_hex128() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

impl SessionId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check("session ID", value, 64, is_id_char, "A-Z a-z 0-9 _ - . :")?;
        Ok(Self(value.into()))
    }

    pub fn random() -> Self {
        Self(format!("s-{:016x}", rand::rng().random::<u64>()).into())
    }
}

/// A role's name, as the role table and the wire spell it.
pub type RoleName = Arc<str>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids_are_checked() {
        assert!(ChannelId::parse("room-1.a:b_c").is_ok());
        assert!(ChannelId::parse("").is_err());
        assert!(ChannelId::parse(&"x".repeat(65)).is_err());
        let err = ChannelId::parse("a b").unwrap_err().to_string();
        assert!(err.contains("' '"), "{err}");
    }

    #[test]
    fn same_uri_same_channel() {
        let a = ChannelId::from_uri("https://example.test/live/42").unwrap();
        let b = ChannelId::from_uri("https://example.test/live/42").unwrap();
        let c = ChannelId::from_uri("https://example.test/live/43").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(ChannelId::parse(a.as_str()).is_ok());
        assert!(ChannelId::from_uri("a\nb").is_err());
    }

    #[test]
    fn identities_allow_emails() {
        assert!(Identity::parse("alice@example.test").is_ok());
        assert!(Identity::parse("alice/bob").is_err());
    }
}
