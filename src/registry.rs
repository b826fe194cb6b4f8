//! Live channels by ID, as handles. A channel is created on first join (by the factory the
//! composition root gives) and removes itself when it ends.
//!
//! Layer rule: the registry knows channels only as [`ChannelHandle`]s and calls only as a
//! [`CallDirectory`]; it imports no actor.

use std::sync::{Arc, OnceLock, Weak};

use dashmap::DashMap;

use crate::ids::ChannelId;
use crate::messages::{CallDirectory, ChannelHandle};

/// Starts a channel's actor and returns its handle.
pub type ChannelFactory =
    Box<dyn Fn(&ChannelId, Arc<ChannelRegistry>) -> ChannelHandle + Send + Sync>;

pub struct ChannelRegistry {
    channels: DashMap<ChannelId, ChannelHandle>,
    /// The call directory, for call channels. Weak: the call engine holds the registry.
    calls: OnceLock<Weak<dyn CallDirectory>>,
    factory: ChannelFactory,
}

impl ChannelRegistry {
    pub fn new(factory: ChannelFactory) -> Self {
        Self {
            channels: DashMap::new(),
            calls: OnceLock::new(),
            factory,
        }
    }

    /// Set once, when the call engine exists.
    pub fn set_calls(&self, calls: Weak<dyn CallDirectory>) {
        let _ = self.calls.set(calls);
    }

    pub fn calls(&self) -> Option<Arc<dyn CallDirectory>> {
        self.calls.get()?.upgrade()
    }

    pub fn get(&self, id: &ChannelId) -> Option<ChannelHandle> {
        self.channels.get(id).map(|a| a.clone())
    }

    /// The channel's handle, its actor started on the caller's arbiter when the channel is new
    /// (or its previous actor has stopped).
    pub fn get_or_create(self: &Arc<Self>, id: &ChannelId) -> ChannelHandle {
        if let Some(handle) = self.channels.get(id) {
            if handle.connected() {
                return handle.clone();
            }
        }
        let mut entry = self
            .channels
            .entry(id.clone())
            .or_insert_with(|| (self.factory)(id, self.clone()));
        if !entry.connected() {
            *entry = (self.factory)(id, self.clone());
        }
        entry.clone()
    }

    /// Removes `id` only if it still maps to `handle` (a newer channel may have taken the ID).
    pub fn remove(&self, id: &ChannelId, handle: &ChannelHandle) {
        self.channels.remove_if(id, |_, h| h == handle);
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    pub fn all(&self) -> Vec<(ChannelId, ChannelHandle)> {
        self.channels
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }
}
