//! The mixers one worker runs (one per mixing channel it is the mixer worker of), on a
//! drift-free 20 ms tick: deadlines counted from a fixed origin, a late tick counted and run,
//! and a silent channel not ticking at all until its next packet. No IO: the worker feeds
//! packets in and writes what comes out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use amphi_core::mix::codec::{EncoderSettings, OpusDecoder, OpusEncoder};
use amphi_core::mix::mixer::Mixer;
use amphi_core::mix::pool::PacketPool;
use amphi_core::mix::{FRAME_TICKS, MAX_PACKET};

use super::router::RouteId;
use crate::channel::Publisher;
use crate::ids::PeerKey;
use crate::media::record::Recorder;
use crate::metrics::MixerCounts;

const TICK: Duration = Duration::from_millis(20);
/// Ticks run at once to catch up after a stall; beyond that the clock restarts.
const MAX_CATCH_UP: u64 = 5;
/// Speakers one mixer takes; more are left out of the mix.
const MAX_SPEAKERS: usize = 32;

struct MixState {
    mixer: Mixer<OpusDecoder, OpusEncoder>,
    origin: Instant,
    ticks: u64,
    running: bool,
    /// Each speaker's loudest decoded frame since the levels were last taken (-dBov).
    loudest: Vec<(PeerKey, u8)>,
    /// The mix being recorded: every tick's shared encode goes to it too.
    recorder: Option<Recorder>,
}

impl MixState {
    /// A stopped mixer; `wake` sets its tick origin.
    fn new(settings: EncoderSettings, now: Instant) -> Self {
        Self {
            mixer: Mixer::new(OpusEncoder::new(settings), MAX_SPEAKERS),
            origin: now,
            ticks: 0,
            running: false,
            loudest: Vec::with_capacity(MAX_SPEAKERS),
            recorder: None,
        }
    }

    fn wake(&mut self, now: Instant) {
        if !self.running {
            // A silent mixer wakes on a packet: its first tick comes half a frame later, so
            // that ticks fall between that speaker's arrivals, not on them.
            self.running = true;
            self.origin = now.checked_sub(TICK / 2).unwrap_or(now);
            self.ticks = 0;
        }
    }
}

/// What one tick of one channel's mixer produced.
pub(super) struct MixOut {
    pub route: RouteId,
    /// RTP time of the mix (the mixer's own timeline, 48 kHz).
    pub time: u64,
    pub capture: Option<SystemTime>,
    /// dBov of the mix.
    pub level: u8,
    /// The shared encode, for every mixed listener.
    pub total: Arc<[u8]>,
    /// Where this tick's mix-minus packets (each speaker's mix without itself) are in the
    /// list `tick_due` filled beside.
    pub minus: std::ops::Range<usize>,
}

pub(super) struct Mixing {
    settings: EncoderSettings,
    /// Shared buffers for the encodes, reused once sent: no allocation per tick.
    pool: PacketPool,
    mixers: HashMap<RouteId, MixState>,
    pub counts: MixerCounts,
}

impl Mixing {
    pub(super) fn new(settings: EncoderSettings) -> Self {
        Self {
            settings,
            pool: PacketPool::for_bitrate(settings.bitrate_bps),
            mixers: HashMap::new(),
            counts: MixerCounts::default(),
        }
    }

    /// A speaker's packet for the mixer of `route`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push(
        &mut self,
        route: RouteId,
        speaker: PeerKey,
        gain_permille: u16,
        minus: bool,
        seq: u64,
        rtp_time: u64,
        arrival: Duration,
        payload: &[u8],
        capture: Option<SystemTime>,
        now: Instant,
    ) {
        let settings = self.settings;
        let state = self
            .mixers
            .entry(route)
            .or_insert_with(|| MixState::new(settings, now));
        if !state
            .mixer
            .push(speaker, seq, rtp_time, arrival, payload, capture)
            && state
                .mixer
                .add_speaker(speaker, OpusDecoder::new(), OpusEncoder::new(settings))
        {
            state
                .mixer
                .set_gain(speaker, f32::from(gain_permille) / 1000.0);
            state
                .mixer
                .push(speaker, seq, rtp_time, arrival, payload, capture);
        }
        state.mixer.set_minus(speaker, minus);
        state.wake(now);
    }

    /// Starts (`Some`) or stops recording `route`'s mix. A recorded mixer ticks through
    /// silence, so the file keeps time.
    pub(super) fn record(&mut self, route: RouteId, recorder: Option<Recorder>, now: Instant) {
        let settings = self.settings;
        let state = self
            .mixers
            .entry(route)
            .or_insert_with(|| MixState::new(settings, now));
        state.mixer.set_always_encode(recorder.is_some());
        if recorder.is_some() {
            state.wake(now);
        }
        // The old recorder, if any, is dropped here: its file is finished.
        state.recorder = recorder;
    }

    /// Keeps in `route`'s mix only the speakers `on_stage` accepts.
    pub(super) fn retain_speakers(&mut self, route: RouteId, on_stage: impl FnMut(u64) -> bool) {
        if let Some(state) = self.mixers.get_mut(&route) {
            state.mixer.retain_speakers(on_stage);
        }
    }

    /// Speakers' levels in the mix, as moderators set them.
    pub(super) fn set_gains(&mut self, route: RouteId, publishers: &[Publisher]) {
        if let Some(state) = self.mixers.get_mut(&route) {
            for p in publishers {
                state
                    .mixer
                    .set_gain(p.key, f32::from(p.gain_permille) / 1000.0);
            }
        }
    }

    /// Sizes each running mixer's FEC to what its listeners report (`loss` gives a route's
    /// expected loss in percent); never below the configured expectation.
    pub(super) fn set_expected_loss(&mut self, mut loss: impl FnMut(RouteId) -> Option<i32>) {
        let floor = self.settings.expected_loss_percent;
        for (&route, state) in &mut self.mixers {
            if let (true, Some(percent)) = (state.running, loss(route)) {
                state.mixer.set_expected_loss(percent.max(floor));
            }
        }
    }

    /// Each speaker's loudest decoded level (-dBov) since the last call, per route: what
    /// drives `active_speaker` and `audio_levels` while the mixer runs.
    pub(super) fn take_levels(&mut self, mut level: impl FnMut(RouteId, PeerKey, u8)) {
        for (&route, state) in &mut self.mixers {
            for (key, dbov) in state.loudest.drain(..) {
                level(route, key, dbov);
            }
        }
    }

    /// The route stopped mixing (or closed): its mixer goes.
    pub(super) fn stop(&mut self, route: RouteId) {
        self.mixers.remove(&route);
    }

    /// Channels whose mixer runs now.
    pub(super) fn running(&self) -> usize {
        self.mixers.values().filter(|s| s.running).count()
    }

    /// Frames waiting in each speaker's jitter buffer.
    pub(super) fn buffer_delays(&self) -> impl Iterator<Item = usize> + '_ {
        self.mixers
            .values()
            .filter(|s| s.running)
            .flat_map(|s| s.mixer.speakers().map(|sp| sp.delay_frames))
    }

    pub(super) fn is_mixing(&self, route: RouteId) -> bool {
        self.mixers.contains_key(&route)
    }

    /// When the next tick is due, if any mixer runs.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.mixers
            .values()
            .filter(|s| s.running)
            .map(|s| s.origin + TICK * (s.ticks + 1) as u32)
            .min()
    }

    /// Runs every tick due at `now`, appending what they produced to `out` and their
    /// mix-minus packets to `minus`.
    pub(super) fn tick_due(
        &mut self,
        now: Instant,
        out: &mut Vec<MixOut>,
        minus: &mut Vec<(PeerKey, Arc<[u8]>)>,
    ) {
        let pool = &mut self.pool;
        for (&route, state) in &mut self.mixers {
            if !state.running {
                continue;
            }
            let mut ran = 0;
            while state.running && state.origin + TICK * (state.ticks + 1) as u32 <= now {
                if ran == MAX_CATCH_UP {
                    // Too far behind (a stalled thread): restart the clock from here.
                    state.origin = now;
                    state.ticks = 0;
                    break;
                }
                if ran > 0 {
                    self.counts.late += 1;
                }
                ran += 1;
                state.ticks += 1;
                self.counts.ticks += 1;
                let tick = state.mixer.tick();
                self.counts.encodes += u64::from(tick.encodes);
                self.counts.decodes += u64::from(tick.decodes);
                self.counts.concealed += u64::from(tick.concealed);
                self.counts.fec += u64::from(tick.fec);
                self.counts.limited += u64::from(tick.limited);
                for s in state.mixer.speakers().filter(|s| s.active) {
                    match state.loudest.iter_mut().find(|(k, _)| *k == s.key) {
                        Some((_, l)) => *l = (*l).min(s.level),
                        None => state.loudest.push((s.key, s.level)),
                    }
                }
                if tick.silent {
                    if state.mixer.is_idle() {
                        state.running = false;
                    }
                    continue;
                }
                let total = pool.share(state.mixer.total());
                if let Some(rec) = &mut state.recorder {
                    if !rec.push(&total) {
                        // It ended by itself (a limit, a write error) and has reported so.
                        state.recorder = None;
                        state.mixer.set_always_encode(false);
                    }
                }
                let first = minus.len();
                for s in state.mixer.speakers() {
                    if let Some(p) = state.mixer.mix_minus(s.key) {
                        if !p.is_empty() && p.len() <= MAX_PACKET {
                            minus.push((s.key, pool.share(p)));
                        }
                    }
                }
                out.push(MixOut {
                    route,
                    time: state.ticks * FRAME_TICKS,
                    capture: tick.capture,
                    level: state.mixer.level(),
                    total,
                    minus: first..minus.len(),
                });
            }
        }
    }
}
