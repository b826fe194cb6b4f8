//! Files playing into channels as speakers: one packet every 20 ms from a fixed origin (no
//! drift), handed to the same path as a speaker's packet (forwarded, mixed, or both, as the
//! channel's mixdown says). The file's packets are shared, never copied per listener.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amphi_core::mix::FRAME_TICKS;
use amphi_proto::protocol::StreamEnd;

use super::router::RouteId;
use crate::ids::PeerKey;
use crate::media::types::PlaybackDone;

const FRAME: Duration = Duration::from_millis(20);

struct Player {
    key: PeerKey,
    packets: Arc<[Arc<[u8]>]>,
    next: usize,
    origin: Instant,
    done: Option<PlaybackDone>,
}

impl Drop for Player {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let reason = if self.next >= self.packets.len() {
                StreamEnd::Finished
            } else {
                StreamEnd::Stopped
            };
            done(reason);
        }
    }
}

/// One packet due from a player.
pub(super) struct Due {
    pub route: RouteId,
    pub key: PeerKey,
    pub index: u64,
    pub data: Arc<[u8]>,
}

#[derive(Default)]
pub(super) struct Players {
    playing: HashMap<RouteId, Player>,
}

impl Players {
    /// Starts (or replaces) the playback of `route`, first packet at `start`.
    pub(super) fn play(
        &mut self,
        route: RouteId,
        key: PeerKey,
        packets: Arc<[Arc<[u8]>]>,
        start: Instant,
        done: PlaybackDone,
    ) {
        self.playing.insert(
            route,
            Player {
                key,
                packets,
                next: 0,
                origin: start,
                done: Some(done),
            },
        );
    }

    /// Stops the playback of `route` (its end is reported as stopped).
    pub(super) fn stop(&mut self, route: RouteId) {
        self.playing.remove(&route);
    }

    pub(super) fn is_playing(&self, route: RouteId) -> bool {
        self.playing.contains_key(&route)
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        self.playing
            .values()
            .map(|p| p.origin + FRAME * p.next as u32)
            .min()
    }

    /// Packets due at `now`, appended to `out`; players that ran out end, their routes in
    /// `ended`. A player behind by more than a few frames (a stalled thread) skips ahead
    /// rather than bursting.
    pub(super) fn due(&mut self, now: Instant, out: &mut Vec<Due>, ended: &mut Vec<RouteId>) {
        self.playing.retain(|&route, p| {
            let mut sent = 0;
            while p.next < p.packets.len() && p.origin + FRAME * p.next as u32 <= now {
                if sent == 5 {
                    let behind = now.saturating_duration_since(p.origin).as_millis() as usize / 20;
                    p.next = behind.min(p.packets.len());
                    break;
                }
                out.push(Due {
                    route,
                    key: p.key,
                    index: p.next as u64,
                    data: p.packets[p.next].clone(),
                });
                p.next += 1;
                sent += 1;
            }
            let more = p.next < p.packets.len();
            if !more {
                ended.push(route);
            }
            more
        });
    }
}

/// The RTP timestamp of packet `index` of a playback.
pub(super) fn time_of(index: u64) -> u64 {
    index * FRAME_TICKS
}
