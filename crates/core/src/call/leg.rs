//! One member's part in a call.

use std::time::Instant;

use super::types::{EndReason, LegState, Media};
use crate::ids::Identity;

#[derive(Debug, Clone)]
pub struct Leg {
    pub(super) user: Identity,
    pub(super) state: LegState,
    pub(super) media: Media,
    pub(super) invited_by: Option<Identity>,
    pub(super) ring_deadline: Option<Instant>,
    pub(super) joined_at: Option<Instant>,
    pub(super) grace_deadline: Option<Instant>,
    pub(super) left: Option<(EndReason, Instant)>,
    /// What the member said as it left (`reject` or `hangup` with a note).
    pub(super) note: Option<String>,
}

impl Leg {
    pub(super) fn new(user: Identity, media: Media) -> Self {
        Self {
            user,
            state: LegState::Ringing,
            media,
            invited_by: None,
            ring_deadline: None,
            joined_at: None,
            grace_deadline: None,
            left: None,
            note: None,
        }
    }

    pub fn user(&self) -> &Identity {
        &self.user
    }

    pub fn state(&self) -> LegState {
        self.state
    }

    /// The media this member takes part with (a video call may be accepted as audio).
    pub fn media(&self) -> Media {
        self.media
    }

    /// `None` for the caller.
    pub fn invited_by(&self) -> Option<&Identity> {
        self.invited_by.as_ref()
    }

    /// When this member last became connected: the caller at creation, a callee on answering.
    pub fn joined_at(&self) -> Option<Instant> {
        self.joined_at
    }

    /// Why and when this member left, while it is `Left`.
    pub fn left(&self) -> Option<(EndReason, Instant)> {
        self.left
    }

    /// The note this member left with.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    pub fn reconnecting(&self) -> bool {
        self.grace_deadline.is_some()
    }

    pub(super) fn present(&self) -> bool {
        self.state != LegState::Left
    }
}
