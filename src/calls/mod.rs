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

pub mod actor;
pub mod call;
pub mod delivery;
pub mod engine;
pub mod logs;
pub mod store;
pub mod webhook;

#[cfg(test)]
mod timer_tests;

pub use amphi_proto::calls::UnknownValue;

pub use call::{Call, CallError, CallEvent, CallId, CallSetup, EndReason, Media};
pub use store::{CallLogStore, SqliteStore};
pub use webhook::WebhookQueue;
