//! Shared server state: the channel registry, the session directory and the shutdown sequence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;

use crate::calls::engine::CallEngine;
use crate::channel::actor::{ChannelActor, Shutdown};
use crate::channel::ChannelSettings;
use crate::config::Config;
use crate::ids::{ChannelId, SessionId};
use crate::media::MediaPlane;
use crate::messages::ToSession;
use crate::token::TokenKeys;

/// Live channels by ID. A channel is created on first join and removes itself when it ends.
pub struct ChannelRegistry {
    channels: DashMap<ChannelId, Addr<ChannelActor>>,
    /// The call engine, for call channels' media events. Weak: the engine holds the registry.
    calls: OnceLock<Weak<CallEngine>>,
    settings: ChannelSettings,
    media: Arc<MediaPlane>,
    mailbox: usize,
}

impl ChannelRegistry {
    pub fn calls(&self) -> Option<Arc<CallEngine>> {
        self.calls.get()?.upgrade()
    }

    pub fn get(&self, id: &ChannelId) -> Option<Addr<ChannelActor>> {
        self.channels.get(id).map(|a| a.clone())
    }

    /// The channel's actor, started on the caller's arbiter when the channel is new.
    pub fn get_or_create(self: &Arc<Self>, id: &ChannelId) -> Addr<ChannelActor> {
        if let Some(addr) = self.channels.get(id) {
            if addr.connected() {
                return addr.clone();
            }
        }
        let mut entry = self.channels.entry(id.clone()).or_insert_with(|| {
            ChannelActor::new(
                id.clone(),
                self.settings.clone(),
                self.clone(),
                self.media.clone(),
                self.mailbox,
            )
            .start()
        });
        if !entry.connected() {
            *entry = ChannelActor::new(
                id.clone(),
                self.settings.clone(),
                self.clone(),
                self.media.clone(),
                self.mailbox,
            )
            .start();
        }
        entry.clone()
    }

    /// Removes `id` only if it still maps to `addr` (a newer channel may have taken the ID).
    pub fn remove(&self, id: &ChannelId, addr: &Addr<ChannelActor>) {
        self.channels.remove_if(id, |_, a| a == addr);
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    pub fn all(&self) -> Vec<(ChannelId, Addr<ChannelActor>)> {
        self.channels
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }
}

pub struct AppState {
    pub config: Config,
    pub media: Arc<MediaPlane>,
    pub keys: TokenKeys,
    pub channels: Arc<ChannelRegistry>,
    pub calls: Arc<CallEngine>,
    /// Every live WebSocket session, for shutdown (and, later, call routing).
    pub sessions: DashMap<SessionId, Recipient<ToSession>>,
    shutting_down: AtomicBool,
}

impl AppState {
    /// Runs inside an actix system: the call engine starts its actors here.
    pub fn new(
        config: Config,
        media: Arc<MediaPlane>,
    ) -> Result<Self, crate::calls::store::StoreError> {
        let settings = ChannelSettings {
            roles: Arc::new(config.role_table()),
            default_role: config.default_role.clone(),
            max_participants: config.limits.max_participants_per_channel,
            max_metadata_bytes: config.limits.max_metadata_bytes,
            empty_grace: config.timeouts.empty_channel_grace,
            count_interval: config.timeouts.audience_count_interval,
        };
        let keys = TokenKeys::new(config.auth.signing_key.as_bytes(), config.auth.leeway);
        let channels = Arc::new(ChannelRegistry {
            channels: DashMap::new(),
            calls: OnceLock::new(),
            settings,
            media: media.clone(),
            mailbox: config.limits.channel_queue,
        });
        let calls = CallEngine::start(&config.calls, channels.clone())?;
        let _ = channels.calls.set(Arc::downgrade(&calls));
        Ok(Self {
            config,
            media,
            keys,
            channels,
            calls,
            sessions: DashMap::new(),
            shutting_down: AtomicBool::new(false),
        })
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
        let ends = channels.iter().map(|(_, addr)| addr.send(Shutdown));
        // `send` resolves once each channel queued its `left` frames, so the close below
        // lands behind them in every session's mailbox.
        let _ = futures_util::future::join_all(ends).await;
        for entry in self.sessions.iter() {
            entry.value().do_send(ToSession::Close {
                code: 1001,
                reason: "server shutting down".into(),
            });
        }
        let deadline = Instant::now() + self.config.server.shutdown_timeout;
        while !self.sessions.is_empty() && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        // Give the last close frames a moment on the wire.
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}
