//! Prometheus metrics: names, buckets that fit audio, and the per-worker handles the hot path
//! records into (counters are summed locally and flushed every housekeeping tick).

use metrics::{counter, gauge, histogram, LocalRecorderGuard};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub const FORWARD_LATENCY: &str = "amphi_forward_latency_seconds";
pub const INBOUND_JITTER: &str = "amphi_inbound_jitter_seconds";
pub const PACKETS_FORWARDED: &str = "amphi_packets_forwarded_total";
pub const PACKETS_DROPPED: &str = "amphi_packets_dropped_total";
pub const PEERS: &str = "amphi_peers";
pub const RED_IN: &str = "amphi_red_packets_total";
pub const RED_OUT: &str = "amphi_red_forwarded_total";
pub const VIDEO_IN: &str = "amphi_video_packets_total";
pub const KEYFRAME_REQUESTS: &str = "amphi_keyframe_requests_total";
pub const ADMISSION_REFUSED: &str = "amphi_admission_refused_total";
pub const HANDOVERS: &str = "amphi_media_handovers_total";
pub const SEALED: &str = "amphi_media_sealed_total";
pub const MIXER_TICK: &str = "amphi_mixer_tick_seconds";
pub const MIXER_TICKS: &str = "amphi_mixer_ticks_total";
pub const MIXER_LATE_TICKS: &str = "amphi_mixer_late_ticks_total";
pub const MIXER_ENCODES: &str = "amphi_mixer_encodes_total";
pub const MIXER_DECODES: &str = "amphi_mixer_decodes_total";
pub const MIXER_CONCEALED: &str = "amphi_mixer_concealed_frames_total";
pub const MIXER_FEC: &str = "amphi_mixer_fec_frames_total";
pub const MIXER_LIMITED: &str = "amphi_mixer_limited_frames_total";
pub const MIXER_JITTER_BUFFER: &str = "amphi_mixer_jitter_buffer_frames";
pub const MIXING_CHANNELS: &str = "amphi_mixing_channels";
pub const MIXED_LISTENERS: &str = "amphi_mixed_listeners";
pub const PEER_MOVES: &str = "amphi_media_peer_moves_total";
pub const TCP_CONNECTIONS: &str = "amphi_media_tcp_connections";
pub const CHANNELS: &str = "amphi_channels";
pub const PARTICIPANTS: &str = "amphi_participants";
pub const JOIN_LATENCY: &str = "amphi_join_latency_seconds";
pub const FIRST_AUDIO_LATENCY: &str = "amphi_first_audio_latency_seconds";
pub const RECEIVER_JITTER: &str = "amphi_receiver_jitter_seconds";
pub const RECEIVER_LOSS: &str = "amphi_receiver_loss_ratio";
pub const RTT: &str = "amphi_rtt_seconds";
pub const CALL_SETUP_RING: &str = "amphi_call_ring_seconds";
pub const CALL_SETUP_ANSWER: &str = "amphi_call_answer_seconds";
pub const CALL_SETUP_FIRST_AUDIO: &str = "amphi_call_first_audio_seconds";
pub const CALL_DURATION: &str = "amphi_call_duration_seconds";
pub const CALLS_PLACED: &str = "amphi_calls_placed_total";
pub const CALLS_ENDED: &str = "amphi_calls_ended_total";
pub const CALLS_ACTIVE: &str = "amphi_calls_active";
pub const CALL_INVITES_OFFLINE: &str = "amphi_call_invites_offline_total";

/// From 50 µs (a forward on an idle core) to 2.5 s (a stalled worker).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];
/// Jitter that matters for audio lies between a tenth of a frame and a few frames.
const JITTER_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 1.0,
];

/// A mixer tick: tens of microseconds per speaker; a tick near 20 ms is late.
const MIXER_TICK_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.02,
    0.05,
];
/// Frames waiting in a speaker's jitter buffer (its delay, 20 ms each; the target is 1–10).
const JITTER_BUFFER_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0];

/// Loss fractions from RTCP receiver reports: nothing, a trace, then what users hear.
const LOSS_BUCKETS: &[f64] = &[0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
/// Round trips from loopback (sub-millisecond) to intercontinental.
const RTT_BUCKETS: &[f64] = &[
    0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6,
];

/// Call setup steps: a ring reaches a phone in milliseconds, a person answers in seconds.
const CALL_SETUP_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Calls last from seconds to hours.
const CALL_DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

/// One server's Prometheus recorder. A process may run several servers (the test binary,
/// an embedding application): each server's threads record into its own recorder, entered
/// when the thread starts, so one server's `/metrics` never counts another's traffic.
#[derive(Clone)]
pub struct Metrics {
    /// Leaked once per server: threads that outlive any scope we control (HTTP workers) hold
    /// it as their local recorder until they end.
    recorder: &'static PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder: &'static PrometheusRecorder = Box::leak(Box::new(builder().build_recorder()));
        let handle = recorder.handle();
        metrics::with_local_recorder(recorder, describe);
        Self { recorder, handle }
    }

    /// This thread records here while the guard lives.
    pub fn enter(&self) -> LocalRecorderGuard<'static> {
        metrics::set_default_local_recorder(self.recorder)
    }

    /// This thread records here until it ends: for threads the server does not start itself
    /// but owns for its whole life (the HTTP workers).
    pub fn enter_for_thread(&self) {
        std::mem::forget(self.enter());
    }

    /// Also the process's recorder, for threads nobody entered (the binary runs one server).
    /// False when an embedding application installed its own first.
    pub fn install_global(&self) -> bool {
        metrics::set_global_recorder(self.recorder).is_ok()
    }

    /// The exposition text for `/metrics`.
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        text.push_str(&crate::process_metrics::render());
        text
    }
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("latency_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Suffix("jitter_seconds".into()), JITTER_BUCKETS)
        })
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RECEIVER_LOSS.into()), LOSS_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RTT.into()), RTT_BUCKETS))
        .and_then(|b| {
            [CALL_SETUP_RING, CALL_SETUP_ANSWER, CALL_SETUP_FIRST_AUDIO]
                .into_iter()
                .try_fold(b, |b, name| {
                    b.set_buckets_for_metric(Matcher::Full(name.into()), CALL_SETUP_BUCKETS)
                })
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(CALL_DURATION.into()), CALL_DURATION_BUCKETS)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(MIXER_TICK.into()), MIXER_TICK_BUCKETS)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(MIXER_JITTER_BUFFER.into()),
                JITTER_BUFFER_BUCKETS,
            )
        })
        .expect("static buckets are valid")
}

/// Counts a refusal at capacity of `what` (participants, peers, calls).
/// Every series recorded only when something happens (a channel, a join, a call, a refusal)
/// at zero from start-up, so dashboards and alerts see a value on a fresh server; `roles`
/// are the role table's names (the participants gauge's label).
pub fn register_series<'a>(roles: impl IntoIterator<Item = &'a str>) {
    gauge!(CHANNELS).increment(0.0);
    for role in roles {
        gauge!(PARTICIPANTS, "role" => role.to_string()).increment(0.0);
    }
    gauge!(CALLS_ACTIVE).increment(0.0);
    counter!(CALLS_PLACED).increment(0);
    counter!(CALL_INVITES_OFFLINE).increment(0);
    for reason in amphi_proto::calls::EndReason::ALL {
        counter!(CALLS_ENDED, "reason" => reason.as_str()).increment(0);
    }
    for what in ["participants", "peers", "calls"] {
        counter!(ADMISSION_REFUSED, "what" => what).increment(0);
    }
    for name in [
        JOIN_LATENCY,
        CALL_DURATION,
        CALL_SETUP_RING,
        CALL_SETUP_ANSWER,
        CALL_SETUP_FIRST_AUDIO,
    ] {
        // A handle registers the histogram; nothing is observed.
        drop(histogram!(name));
    }
}

/// A media packet or connection dropped outside a worker (the ICE-TCP acceptor).
pub fn media_drop(reason: Drop, n: u64) {
    counter!(PACKETS_DROPPED, "reason" => reason.label()).increment(n);
}

/// ICE-TCP connections open (named a peer, not yet closed).
pub fn tcp_connections(delta: f64) {
    gauge!(TCP_CONNECTIONS).increment(delta);
}

pub fn admission_refused(what: &'static str) {
    counter!(ADMISSION_REFUSED, "what" => what).increment(1);
}

fn describe() {
    use metrics::{describe_histogram, Unit};
    describe_histogram!(
        FORWARD_LATENCY,
        Unit::Seconds,
        "Host packet in to packet out to listeners, inside the server"
    );
    describe_histogram!(
        INBOUND_JITTER,
        Unit::Seconds,
        "RFC 3550 inter-arrival jitter of published tracks"
    );
    describe_histogram!(JOIN_LATENCY, Unit::Seconds, "Join request to join reply");
    describe_histogram!(
        FIRST_AUDIO_LATENCY,
        Unit::Seconds,
        "Media offer to the first packet forwarded to that listener"
    );
    describe_histogram!(
        RECEIVER_JITTER,
        Unit::Seconds,
        "Jitter listeners report in RTCP receiver reports"
    );
    describe_histogram!(RECEIVER_LOSS, "Loss fraction listeners report in RTCP");
    describe_histogram!(RTT, Unit::Seconds, "Round trip time to peers (RTCP)");
    describe_calls();
    metrics::describe_counter!(
        SEALED,
        "Audio packets a media worker sealed (SRTP) and sent itself, without str0m"
    );
}

fn describe_calls() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        CALL_SETUP_RING,
        Unit::Seconds,
        "Call request to the callee's first device ringing"
    );
    describe_histogram!(
        CALL_SETUP_ANSWER,
        Unit::Seconds,
        "Ringing to the callee answering"
    );
    describe_histogram!(
        CALL_SETUP_FIRST_AUDIO,
        Unit::Seconds,
        "A member connected to a call to the first audio reaching it"
    );
    describe_histogram!(CALL_DURATION, Unit::Seconds, "Connected call duration");
    describe_counter!(CALLS_PLACED, "Calls placed");
    describe_counter!(CALLS_ENDED, "Calls ended, by reason");
    describe_gauge!(CALLS_ACTIVE, "Calls in progress");
    describe_counter!(
        CALL_INVITES_OFFLINE,
        "Invitations to callees with no live session (sent as invite_offline webhooks)"
    );
    describe_counter!(PACKETS_FORWARDED, "Packets written to listeners");
    describe_counter!(PACKETS_DROPPED, "Packets not forwarded, by reason");
    describe_gauge!(PEERS, "WebRTC peer connections");
    describe_counter!(
        RED_IN,
        "RFC 2198 RED packets received from publishers (forwarded as RED or unwrapped to Opus)"
    );
    describe_counter!(
        RED_OUT,
        "RED packets written to listeners: as=\"red\" as they came, as=\"opus\" their primary block"
    );
    describe_counter!(
        VIDEO_IN,
        "Video packets received from call members and forwarded to the others"
    );
    describe_counter!(
        KEYFRAME_REQUESTS,
        "Keyframe requests (PLI/FIR) sent to video senders, for their receivers"
    );
    describe_counter!(
        ADMISSION_REFUSED,
        "Joins, media connections and calls refused because the server was at its configured capacity"
    );
    describe_histogram!(
        MIXER_TICK,
        Unit::Seconds,
        "One mixer tick (decode, sum, encode)"
    );
    describe_counter!(MIXER_TICKS, "Mixer ticks run");
    describe_counter!(
        MIXER_LATE_TICKS,
        "Mixer ticks run after their 20 ms deadline had passed (catching up)"
    );
    describe_counter!(
        MIXER_ENCODES,
        "Opus encodes by mixers: one mix per tick plus one mix-minus per speaker"
    );
    describe_counter!(MIXER_DECODES, "Speaker frames decoded by mixers");
    describe_counter!(
        MIXER_CONCEALED,
        "Lost speaker frames, concealed or rebuilt from in-band FEC by mixers"
    );
    describe_counter!(
        MIXER_FEC,
        "Lost speaker frames whose next packet was there for its in-band FEC"
    );
    describe_counter!(MIXER_LIMITED, "Mix frames the limiter turned down");
    describe_histogram!(
        MIXER_JITTER_BUFFER,
        "Frames waiting in speakers' jitter buffers, sampled four times a second"
    );
    describe_gauge!(
        MIXING_CHANNELS,
        "Channels with a running mixer, per media worker"
    );
    describe_gauge!(
        MIXED_LISTENERS,
        "Peers receiving a mix (or a mix-minus) rather than speakers' own streams, per media worker"
    );
    describe_counter!(
        HANDOVERS,
        "Datagrams read by a media worker other than the one owning their peer"
    );
    describe_counter!(
        PEER_MOVES,
        "Peers moved to the media worker their nominated flow lands on"
    );
    describe_gauge!(
        TCP_CONNECTIONS,
        "ICE-TCP connections open (clients whose network blocks UDP)"
    );
    describe_gauge!(CHANNELS, "Live channels");
    describe_gauge!(PARTICIPANTS, "Participants in channels, by role");
}

#[derive(Debug, Clone, Copy)]
pub enum Drop {
    NotPermitted,
    Muted,
    NoSlot,
    SocketFull,
    QueueFull,
    UnknownSource,
    /// A RED payload whose block headers do not fit it.
    Malformed,
    /// Video in a call whose media is audio.
    VideoOff,
    /// An ICE-TCP connection refused or closed: over the connection limit, a first frame
    /// that is no binding request, or a frame too large.
    TcpRefused,
}

impl Drop {
    const ALL: [Drop; 9] = [
        Drop::NotPermitted,
        Drop::Muted,
        Drop::NoSlot,
        Drop::SocketFull,
        Drop::QueueFull,
        Drop::UnknownSource,
        Drop::Malformed,
        Drop::VideoOff,
        Drop::TcpRefused,
    ];

    fn label(self) -> &'static str {
        match self {
            Drop::NotPermitted => "not_permitted",
            Drop::Muted => "muted",
            Drop::NoSlot => "no_slot",
            Drop::SocketFull => "socket_full",
            Drop::QueueFull => "queue_full",
            Drop::UnknownSource => "unknown_source",
            Drop::Malformed => "malformed",
            Drop::VideoOff => "video_off",
            Drop::TcpRefused => "tcp_refused",
        }
    }
}

/// What mixers did, as counts (cumulative in the worker, deltas when recorded).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MixerCounts {
    pub ticks: u64,
    pub late: u64,
    pub encodes: u64,
    pub decodes: u64,
    pub concealed: u64,
    pub fec: u64,
    pub limited: u64,
}

impl MixerCounts {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &MixerCounts) -> MixerCounts {
        MixerCounts {
            ticks: self.ticks - earlier.ticks,
            late: self.late - earlier.late,
            encodes: self.encodes - earlier.encodes,
            decodes: self.decodes - earlier.decodes,
            concealed: self.concealed - earlier.concealed,
            fec: self.fec - earlier.fec,
            limited: self.limited - earlier.limited,
        }
    }
}

pub mod worker;
