//! The server's shared context: configuration, the media plane, token keys, the channel
//! registry, the call engine and the session directory; and the shutdown sequence.
//!
//! Layer rule: no actor type is named here (`server::compose` builds what starts them);
//! sessions and HTTP handlers reach channels and calls through handles.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;

use crate::calls::engine::CallEngine;
use crate::config::Config;
use crate::ids::SessionId;
use crate::media::MediaPlane;
use crate::messages::{Shutdown, ToSession};
pub use crate::registry::ChannelRegistry;
use crate::token::TokenKeys;

pub struct AppState {
    pub config: Config,
    pub media: Arc<MediaPlane>,
    pub keys: TokenKeys,
    pub channels: Arc<ChannelRegistry>,
    pub calls: Arc<CallEngine>,
    /// Kicks that hold, revoked tokens and call blocks.
    pub bans: Arc<crate::bans::Bans>,
    /// Channel memberships across the server, held to `limits.max_participants`.
    pub seats: crate::admission::Seats,
    /// This server's recorder, rendered at `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Every live WebSocket session, for shutdown (and, later, call routing).
    pub sessions: DashMap<SessionId, Recipient<ToSession>>,
    /// Sessions whose connection dropped, waiting (within the resume window) to be resumed.
    pub parked: DashMap<SessionId, Recipient<crate::messages::ResumeSession>>,
    shutting_down: AtomicBool,
}

impl AppState {
    /// The server's shared context, around the registry and the call engine the composition
    /// root (`server::compose`) built.
    pub fn new(
        config: Config,
        media: Arc<MediaPlane>,
        channels: Arc<ChannelRegistry>,
        calls: Arc<CallEngine>,
        bans: Arc<crate::bans::Bans>,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        let keys = TokenKeys::new(config.auth.signing_key.as_bytes(), config.auth.leeway);
        let seats = crate::admission::Seats::new(config.limits.max_participants);
        Self {
            seats,
            config,
            media,
            keys,
            channels,
            calls,
            bans,
            metrics,
            sessions: DashMap::new(),
            parked: DashMap::new(),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Ends every channel with `server_shutdown`, then closes every session, then waits (up to
    /// `server.shutdown_timeout`) for the sessions to flush and go.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        // Calls end first: their members are told why, and their rows close as a restart.
        self.calls
            .terminate_all(crate::calls::call::EndReason::ServerRestart)
            .await;
        let channels = self.channels.all();
        tracing::info!(
            channels = channels.len(),
            sessions = self.sessions.len(),
            "shutting down"
        );
        let ends = channels.iter().map(|(_, ch)| ch.shutdown.send(Shutdown));
        // `send` resolves once each channel queued its `left` frames, so the close below
        // lands behind them in every session's mailbox.
        let _ = futures_util::future::join_all(ends).await;
        for entry in self.sessions.iter() {
            entry.value().do_send(ToSession::Close {
                code: 1001,
                reason: "server shutting down".into(),
            });
        }
        let deadline = crate::clock::now() + self.config.server.shutdown_timeout;
        while !self.sessions.is_empty() && crate::clock::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        // Give the last close frames a moment on the wire.
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}
