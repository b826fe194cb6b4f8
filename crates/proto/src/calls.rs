//! The vocabulary of calls on the wire: call and transaction IDs, and the enums whose text
//! clients read and the call log stores.

use std::fmt;
use std::sync::Arc;

use rand::Rng;
use serde::Serialize;

use crate::ids::IdError;

/// Generates an enum whose wire text (serde, `as_str`, `FromStr`) comes from one table, so the
/// JSON a client sees and the text the call-log store writes can never drift apart.
macro_rules! wire_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::calls::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::calls::UnknownValue { what: stringify!($name), value: s.into() }),
                }
            }
        }
    };
}

/// A string that names no variant of a wire enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    what: &'static str,
    value: String,
}

wire_enum! {
    pub enum Media {
        Audio => "audio",
        Video => "video",
    }
}

wire_enum! {
    pub enum CallType {
        OneToOne => "one_to_one",
        Group => "group",
    }
}

wire_enum! {
    /// Where one member stands. The caller is `Connected` from the start: it is in the call,
    /// waiting; a callee is `Ringing` until it answers.
    pub enum LegState {
        Ringing => "ringing",
        Connected => "connected",
        Left => "left",
    }
}

wire_enum! {
    /// Why a call ended, or why one member left it.
    pub enum EndReason {
        Hangup => "hangup",
        Canceled => "canceled",
        Rejected => "rejected",
        Busy => "busy",
        Timeout => "timeout",
        Replaced => "replaced",
        Disconnected => "disconnected",
        ServerRestart => "server_restart",
        /// An operator ended the call through the admin API.
        Terminated => "terminated",
    }
}

impl EndReason {
    /// The reasons a member's departure may carry. The others (`canceled`, `rejected`, `busy`,
    /// `timeout`) are conclusions the state machine draws itself, so nobody may claim them.
    pub fn is_departure(self) -> bool {
        matches!(
            self,
            EndReason::Hangup
                | EndReason::Replaced
                | EndReason::Disconnected
                | EndReason::ServerRestart
        )
    }
}

wire_enum! {
    /// What a callee may say when declining.
    pub enum RejectReason {
        Rejected => "rejected",
        Busy => "busy",
    }
}

impl From<RejectReason> for EndReason {
    fn from(r: RejectReason) -> Self {
        match r {
            RejectReason::Rejected => EndReason::Rejected,
            RejectReason::Busy => EndReason::Busy,
        }
    }
}

wire_enum! {
    pub enum MediaChangeResult {
        Accepted => "accepted",
        Rejected => "rejected",
        Canceled => "canceled",
        Timeout => "timeout",
    }
}

wire_enum! {
    pub enum Direction {
        Incoming => "incoming",
        Outgoing => "outgoing",
    }
}

wire_enum! {
    pub enum Order {
        Asc => "asc",
        Desc => "desc",
    }
}

/// `start_ms` meaning "no bound": the newest rows for `desc`, the oldest for `asc`.
pub const NEWEST: i64 = -1;

const CALL_ID_PREFIX: &str = "c-";
const CALL_ID_HEX: usize = 16;
const CALL_ID_LEN: usize = CALL_ID_PREFIX.len() + CALL_ID_HEX;

/// `c-` and 16 lowercase hex digits: random, so IDs reveal nothing about call volume.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CallId(Arc<str>);

impl CallId {
    pub fn random() -> Self {
        Self(format!("{CALL_ID_PREFIX}{:016x}", rand::rng().random::<u64>()).into())
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let valid = value.len() == CALL_ID_LEN
            && value.starts_with(CALL_ID_PREFIX)
            && value[CALL_ID_PREFIX.len()..]
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(IdError::new(
                "call ID",
                format!("{value:?} is not \"c-\" followed by 16 lowercase hex digits"),
            ));
        }
        Ok(Self(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A media change's key: `<call ID>.<n>`. Carrying the call ID lets `media_change_cancel`
/// and `media_change_reply`, which name only the transaction, be routed to their call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TransactionId(Arc<str>);

impl TransactionId {
    pub fn new(call: &CallId, n: u64) -> Self {
        Self(format!("{call}.{n}").into())
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let invalid = || IdError::new("transaction", format!("{value:?} is malformed"));
        let (call, n) = value.split_once('.').ok_or_else(invalid)?;
        CallId::parse(call).map_err(|_| invalid())?;
        if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        Ok(Self(value.into()))
    }

    /// The call this transaction belongs to.
    pub fn call_id(&self) -> CallId {
        // Both constructors guarantee the prefix is a valid call ID.
        CallId(self.0[..CALL_ID_LEN].into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
