//! Amphi: an actor-based live audio room engine.
//!
//! Crates, each pointing only down:
//! - `amphi-proto` (crates/proto) — the wire: IDs, error codes, requests, replies, events.
//! - `amphi-core`  (crates/core)  — sans-IO logic: `Channel`, `Call`, session limits, levels,
//!   roles, the webhook queue; `now` passed in, outputs returned.
//! - `amphi` (this crate)         — the shells: actors, the media plane, HTTP, storage.
//! - `amphi-client`, `amphi-swarm` — the Rust client and the load tool, on the wire crate.
//!
//! Layers inside this crate, top to bottom (`scripts/check-imports.py` fails on any circle):
//! `server` (composition root) → `admin_calls` → `http` → `session` → `state` → the actors
//! (`channel::actor`, `calls::actor`) → `calls::engine`, `registry`, `media` → `messages`
//! (every actor message and handle) → logic re-exported from the core and the wire crate.
//! An actor reaches another only through the handles in `messages`.
//!
//! Layout (one concept per module):
//! - `config`      — `Config`: defaults, strict TOML, `AMPHI_*` overrides, `validate()`.
//! - `ids`         — ID newtypes (`ChannelId`, `Identity`, `ParticipantId`, `SessionId`).
//! - `clock`       — wall-clock helpers (`now_unix_ms`).
//! - `error`       — wire error codes and `ApiError`, the one place errors become codes.
//! - `token`       — HS256 access tokens: claims, minting, verification.
//! - `roles`       — the role table: role name → permissions.
//! - `protocol`    — the signalling wire format: request parsing, replies, events.
//! - `levels`      — active speaker and audio levels from RFC 6464 values (plain logic).
//! - `log_limit`   — warnings and errors rate-limited per source line (no log flooding).
//! - `metrics`     — the server's Prometheus handles (media, calls, signalling).
//! - `process_metrics` — `process_*` and `amphi_build_info`, read from `/proc/self`.
//! - `messages`    — every actor message type and reply path (`ToSession`, `ReplyTo`).
//! - `channel`     — `Channel` logic (membership, roles, events, `seq`) and its `ChannelActor`.
//! - `session`     — `SessionActor`: one per WebSocket connection: frames, limits, one
//!   request at a time, channel requests (`session::requests`), call requests
//!   (`session::calls`).
//! - `calls`       — calls: state machine, user directory, `CallActor` per call, call logs
//!   (SQLite, on their own thread), signed webhooks.
//! - `media`       — the media plane: str0m peers on workers, forwarding.
//! - `dtls`        — the peers' DTLS: one OpenSSL context per certificate, buffers released.
//! - `bans`        — kicks that hold, revoked tokens and call blocks, kept in the database.
//! - `admission`   — capacity: seats for participants, refusals with a retry hint.
//! - `panics`      — what a panic stops: one connection, or the process (then restarted).
//! - `state`       — shared state: channel registry, session directory, shutdown sequence.
//! - `ws`          — the signalling WebSocket's transport: early frame limits, bounded output.
//! - `devmode`     — what `--dev` and `--dev --lan` set before validation.
//! - `tls`         — TLS on the signalling port; the `--dev --lan` certificate.
//! - `netif`       — this machine's addresses (announced candidate, LAN certificate).
//! - `http`        — HTTP routes: `/ws`, `/healthz`, the admin API.
//! - `admin_calls` — the admin API's calls, call logs and webhook checks.
//! - `streams`     — the admin API's recordings and playbacks: file names, files, checks.
//! - `server`      — `run` (inside an actix system) and `spawn` (on a thread of its own).

pub mod admin_calls;
pub mod admission;
pub mod bans;
pub mod calls;
pub mod channel;
pub mod clock;
pub mod config;
pub mod devmode;
pub mod dtls;
pub mod error;
pub mod http;
pub mod ids;
pub mod levels;
pub mod log_limit;
pub mod media;
pub mod messages;
pub mod metrics;
pub mod netif;
pub mod panics;
pub mod process_metrics;
pub mod protocol;
pub mod registry;
pub mod roles;
pub mod server;
pub mod session;
pub mod state;
pub mod streams;
pub mod tls;
pub mod token;
pub mod ws;

pub use config::Config;
pub use server::{run, spawn, ServerHandle};
