//! The call engine's logic, free of IO and clocks, and the HTTP driver for its webhooks:
//! - [`call`]    — `Call`, one call's state machine (ringing → connected → ended, groups,
//!   media changes, glare), fed inputs with `now` and drained for events.
//! - [`store`]   — call logs: the `CallLogStore` trait and its SQLite implementation.
//! - [`webhook`] — signed webhooks: HMAC signing/verification and the ordered retry queue.
//! - [`delivery`] — `WebhookActor`: POSTs the webhook queue's deliveries over HTTP, signed.
//!
//! Not yet wired to the signalling (call requests answer `unsupported`). Wiring, for the
//! `CallActor` and the user directory:
//! - Event frames: wrap `CallEvent` like `protocol::channel_event` (`type`, `call_id`, `seq`).
//! - `media_change_cancel`/`_reply` name only a transaction: `TransactionId::call_id()` finds
//!   the call.
//! - Busy and glare belong to the directory: filter busy callees before `Call::new`/`invite`
//!   (`is_present` helps); on glare, `glare_winner` then `terminate(Replaced)` the loser.
//! - `participant_state` also reaches the member it is about, so its other devices stop
//!   ringing; a second `accept` gets `conflict`.
//! - Call logs: open rows at creation and on `invite`; connect a callee at
//!   `unix_ms(leg.joined_at())`, the caller at `connected_at()`; close on `participant_state`
//!   left and on `call_ended`, with `leg.left()`.
//! - After every input drain the call and reschedule at `next_deadline()`; the same for the
//!   webhook queue (its deadline is `None` while the in-flight limit is reached).
//! - The store fsyncs on every write (`synchronous=FULL`): give it its own thread (a
//!   one-thread `SyncArbiter`), and run `close_open_calls_at_startup` before accepting
//!   connections.

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

pub mod call;
pub mod delivery;
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
