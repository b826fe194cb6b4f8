//! One listener of a run, from connecting to its tally: what every listener adds to the
//! state it shares with the sampler and the report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amphi_client::{AudioPeer, Herd, HerdPeer, Meter, PeerOptions, PeerStats, Signal};
use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::report::histogram;
use crate::scenario::{Kind, Scenario};
use crate::tokens::token;

/// Packets per second of one Opus stream at 20 ms frames.
pub(super) const PACKETS_PER_SECOND: f64 = 50.0;
/// Error messages kept verbatim; beyond that they are only counted.
const MAX_ERRORS: usize = 100;
const FIRST_AUDIO_TIMEOUT: Duration = Duration::from_secs(10);
/// Packets still in flight when a listener stops (100 ms of audio) are not counted lost.
const LATE_ALLOWANCE_PACKETS: u64 = 5;

/// Shared between listener tasks and the sampler.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) active: Vec<(Meter, usize)>,
    pub(super) join: Option<Histogram<u64>>,
    pub(super) first_audio: Option<Histogram<u64>>,
    pub(super) latency: Option<Histogram<u64>>,
    pub(super) jitters: Vec<f64>,
    pub(super) received: u64,
    pub(super) lost: u64,
    pub(super) with_audio: usize,
    pub(super) errors: Vec<String>,
    pub(super) error_count: usize,
}

impl Shared {
    fn error(&mut self, e: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }

    /// A listener's tally as it stops: whether it heard, its latency, and per slot what
    /// arrived, what was lost and the jitter.
    /// `end`: when it stopped; what reached its socket by then counts as arrived.
    fn leave(
        &mut self,
        index: usize,
        identity: &str,
        heard: bool,
        stats: &PeerStats,
        end: Instant,
    ) {
        self.active.retain(|(_, i)| *i != index);
        if !heard {
            self.error(format!(
                "{identity}: no audio within {FIRST_AUDIO_TIMEOUT:?}"
            ));
        } else {
            self.with_audio += 1;
        }
        self.latency
            .get_or_insert_with(histogram)
            .add(&stats.latency_us)
            .expect("same bounds");
        for slot in &stats.slots {
            self.received += slot.packets;
            // Lost: gaps in what arrived, or what the host sent since this slot's first
            // packet that had not arrived by the end (a listener that fell behind loses it).
            let by_time = slot.first_packet.map_or(0, |f| {
                (end.saturating_duration_since(f).as_secs_f64() * PACKETS_PER_SECOND) as u64
            });
            let missing = by_time.saturating_sub(slot.packets + LATE_ALLOWANCE_PACKETS);
            self.lost += slot.lost().max(missing);
            if slot.packets > 0 {
                self.jitters.push(slot.jitter);
            }
        }
    }
}

pub(super) struct Ctx {
    pub(super) url: String,
    pub(super) scenario: Scenario,
    pub(super) shared: Mutex<Shared>,
    /// Listener threads (none: a task per listener).
    pub(super) herds: Vec<Herd>,
}

impl Ctx {
    pub(super) fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("not poisoned")
    }
}

/// A listener as the swarm drives it.
enum Listening {
    Task(AudioPeer),
    Herd(HerdPeer),
}

impl std::ops::Deref for Listening {
    type Target = Meter;

    fn deref(&self) -> &Meter {
        match self {
            Listening::Task(p) => p,
            Listening::Herd(p) => p,
        }
    }
}

impl Listening {
    /// Waits until what reached the listener's socket so far is counted. A task per
    /// listener reads as datagrams come; a herd may be behind.
    async fn settle(&self) {
        if let Listening::Herd(p) = self {
            p.settle().await;
        }
    }

    async fn close(self) {
        match self {
            Listening::Task(p) => p.close().await,
            Listening::Herd(p) => p.close(),
        }
    }
}

/// Connect, join as audience, negotiate media: the signalling, the peer, and when the join
/// was answered.
async fn connect(
    ctx: &Ctx,
    index: usize,
    identity: &str,
) -> Result<(Signal, Listening, Instant), String> {
    let s = &ctx.scenario;
    let channel = format!("swarm-{}", index % s.channels);
    let signal = Signal::connect(&ctx.url, &token(&s.signing_key, identity, "audience"))
        .await
        .map_err(|e| format!("{identity}: {e}"))?;
    signal
        .join(&channel, "audience")
        .await
        .map_err(|e| format!("{identity}: join: {e}"))?;
    let joined = Instant::now();
    let slots = s.slots.min(s.hosts).max(1);
    let peer = match ctx.herds.get(index % ctx.herds.len().max(1)) {
        Some(herd) => herd
            .join(&signal, &channel, slots)
            .await
            .map(Listening::Herd),
        None => {
            let opts = PeerOptions {
                slots,
                decode: false,
                ..PeerOptions::default()
            };
            AudioPeer::start(&signal, &channel, opts)
                .await
                .map(Listening::Task)
        }
    }
    .map_err(|e| format!("{identity}: media: {e}"))?;
    Ok((signal, peer, joined))
}

/// Waits for the first packet and records how long after the join it came; false when
/// nothing came in time.
async fn hear(ctx: &Ctx, peer: &Listening, joined: Instant) -> bool {
    let heard = peer.wait_packets(1, FIRST_AUDIO_TIMEOUT).await;
    if heard {
        let first = peer
            .stats()
            .slots
            .iter()
            .filter_map(|x| x.first_packet)
            .min();
        if let Some(first) = first {
            let us = first.saturating_duration_since(joined).as_micros() as u64;
            let _ = ctx
                .shared()
                .first_audio
                .get_or_insert_with(histogram)
                .record(us.max(1));
        }
    }
    heard
}

/// One listener's life: connect, join, negotiate, hear, stay, report.
pub(super) async fn listener(ctx: Arc<Ctx>, index: usize, mut stop: watch::Receiver<bool>) {
    let identity = format!("listener-{index}");
    let started = Instant::now();
    let (signal, peer, joined) = match connect(&ctx, index, &identity).await {
        Ok(x) => x,
        Err(e) => {
            ctx.shared().error(e);
            return;
        }
    };
    let join_us = joined.duration_since(started).as_micros() as u64;
    {
        let mut sh = ctx.shared();
        let _ = sh.join.get_or_insert_with(histogram).record(join_us.max(1));
        sh.active.push(((*peer).clone(), index));
    }
    let heard = hear(&ctx, &peer, joined).await;
    let lifetime = match ctx.scenario.kind {
        Kind::Churn => ctx.scenario.lifetime,
        _ => Duration::MAX,
    };
    let _ = tokio::time::timeout(lifetime, stop.wait_for(|v| *v)).await;
    let end = Instant::now();
    peer.settle().await;
    let stats = peer.stats();
    ctx.shared().leave(index, &identity, heard, &stats, end);
    peer.close().await;
    signal.close().await;
}
