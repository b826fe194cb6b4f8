//! Calls. Logic, free of IO and clocks:
//! - [`call`]    — `Call`, one call's state machine (ringing → connected → ended, groups,
//!   media changes, glare), fed inputs with `now` and drained for events.
//! - [`store`]   — call logs: the `CallLogStore` trait and its SQLite implementation.
//! - [`webhook`] — signed webhooks: HMAC signing/verification and the ordered retry queue.
//!
//! The actors around it:
//! - [`engine`]  — `CallEngine`: the user directory, call placement, busy and glare.
//! - [`actor`]   — `CallActor`, one per call: feeds its `Call`, delivers events, keeps the
//!   directory, the logs, the call's private channel (`call:<id>`) and the webhooks in step.
//! - [`logs`]    — `CallLogActor`, the store's one owner on a thread of its own.
//! - [`delivery`] — `WebhookActor`, the HTTP side of the webhook queue.

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

pub mod actor;
pub mod call;
pub mod delivery;
pub mod engine;
pub mod logs;
pub mod store;
pub mod webhook;

/// A string that names no variant of a wire enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    what: &'static str,
    value: String,
}

pub use call::{Call, CallError, CallEvent, CallId, CallSetup, EndReason, Media};
pub use store::{CallLogStore, SqliteStore};
pub use webhook::WebhookQueue;
