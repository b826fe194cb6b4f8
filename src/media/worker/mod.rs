//! A media worker: one thread, one socket (shared port), the `Rtc` of every peer living on it.
//!
//! Per inbound packet from a host: one `Arc` of payload shared by every listener, a write and a
//! drain per local listener, and one queue message per other worker that has listeners in the
//! channel. No mailbox message, lock or allocation of ours per packet per listener.
//!
//! The IO-free parts live beside it: `steer` (which peer and worker a datagram is for; peers
//! moving to the worker their packets land on), `router` (routes and fan-out plans),
//! `stats` (jitter and levels); peers' str0m deadlines are `amphi_core::deadlines`.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{AbsCaptureTime, Extension, ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

mod commands;
mod events;
mod flows;
mod forward;
mod mixing;
mod player;
mod router;
mod stats;
mod steer;
pub(super) mod tcp;
mod video;

use super::egress::Egress;
use super::sdp;
use super::slots::{PeerKey, Slot, Slots};
use super::types::{Command, MediaError, PeerSpec};
use super::udp::{RecvBatch, SendBatch};
use crate::channel::Publisher;
use crate::ids::ChannelId;
use crate::messages::ToSession;
use crate::messages::{FirstAudio, SpeakerLevel};
use crate::metrics::worker::WorkerMetrics;
use crate::metrics::{Drop as DropReason, MixerCounts};
use crate::protocol::MediaEvent;
use amphi_core::deadlines::{Deadline, Deadlines};
use amphi_core::mix::codec::EncoderSettings;
use mixing::{MixOut, Mixing};
use player::Players;
pub(crate) use router::Masks;
use router::{RouteId, Router};
use stats::{Jitter, LevelWindow};
use steer::{Demux, Outbox, Refused, Steer};
use video::{PeerVideo, VideoCodec};

/// How long a server offer waits for its answer before a new offer (the client's or the
/// server's) replaces it. A client answers in milliseconds; ten seconds covers a stalled tab.
const OFFER_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Datagrams read per wake-up before the worker looks at its queues again.
const READ_BATCH: usize = 256;
/// Datagrams read per system call.
const RECV_BATCH: usize = 32;
/// How often str0m reports RTCP-derived stats per stream, and clients get quality events.
const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// How often speaker levels go to channels and counters to Prometheus.
const HOUSEKEEPING: Duration = Duration::from_millis(250);

/// Handles shared by the workers.
pub(crate) struct Shared {
    /// Set by `stop`; workers check it every housekeeping tick, so a full queue cannot keep
    /// a worker from stopping.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Server ICE ufrag → worker owning the peer, for datagrams that land on another worker.
    pub ufrags: dashmap::DashMap<String, usize>,
    pub remotes: Vec<mpsc::Sender<Remote>>,
    /// Which workers have listeners in which channel, shared by this plane's workers only:
    /// two planes in one process must not see each other's channels.
    pub masks: Masks,
}

/// Work handed from one worker to another.
pub(crate) enum Remote {
    /// A host's packet for this worker's listeners in `channel`.
    Media { channel: ChannelId, packet: Packet },
    /// A speaker's packet for the mixer of `channel`, which runs here; `minus`: the speaker
    /// receives the mix (without itself), so its mix-minus is encoded.
    MixIn {
        channel: ChannelId,
        packet: Packet,
        minus: bool,
    },
    /// A speaker's mix-minus, for that speaker if it lives here.
    MixMinus { speaker: PeerKey, packet: Packet },
    /// A datagram of a peer this worker owns that the kernel delivered to worker `from`.
    Datagram {
        source: SocketAddr,
        from: usize,
        data: Vec<u8>,
    },
    /// A peer moving here, to the worker its packets land on.
    Adopt(Moving),
    /// A receiver asked for a keyframe of `sender`'s camera, if it lives here.
    Keyframe {
        sender: PeerKey,
        kind: str0m::media::KeyframeRequestKind,
    },
    /// A command for a peer that moved here, passed on by its home worker.
    Command(Command),
    /// An ICE-TCP connection whose first frame named a peer here; the worker writes to it.
    TcpOpen {
        source: SocketAddr,
        writer: std::net::TcpStream,
    },
    /// A frame read from that connection.
    TcpIn { source: SocketAddr, data: Vec<u8> },
    /// That connection ended.
    TcpClosed { source: SocketAddr },
}

/// One host packet as forwarded: the payload is shared, never copied per listener.
#[derive(Clone)]
pub(crate) struct Packet {
    publisher: PeerKey,
    /// Sender's capture time (abs-capture-time), passed through so receivers can measure
    /// end-to-end latency on the sender's clock.
    capture: Option<AbsCaptureTime>,
    level: Option<(i8, bool)>,
    /// RTP timestamp, extended (48 kHz).
    time: u64,
    /// Extended sequence number (the mixer's jitter buffer orders by it).
    seq: u64,
    /// Start of a talk spurt (the RTP marker bit of audio).
    marker: bool,
    arrived: Instant,
    data: Arc<[u8]>,
    /// `data` is RFC 2198 RED: its primary block alone, for listeners without RED (copied
    /// once per packet, into a reused buffer)…
    red_primary: Option<Arc<[u8]>>,
    /// …and the payload type its blocks carry (the publisher's Opus).
    red_inner_pt: u8,
    /// The video codec of a video packet (a call's camera); 0 for audio.
    video: VideoCodec,
}

struct Peer {
    spec: PeerSpec,
    rtc: Rtc,
    ufrag: String,
    slots: Slots,
    /// Payload type of Opus on this peer, for writing.
    opus_pt: Option<Pt>,
    /// Payload type of RED (RFC 2198) over Opus, when the peer negotiated it.
    red_pt: Option<Pt>,
    /// Server offer waiting for the client's answer, with the slots it adds.
    /// The server's renegotiation offer awaiting the client's answer: the pending changes,
    /// the slots it adds, and when it was sent.
    pending: Option<(SdpPendingOffer, Vec<Mid>, Instant)>,
    deadline: Deadline,
    /// Its channel's route on this worker.
    route: RouteId,
    jitter: Jitter,
    level: LevelWindow,
    created: Instant,
    first_audio: Option<Instant>,
    /// Whether the peer's last offer had an m-line that sends.
    offered_send: bool,
    /// Its slot carries the mix (for a speaker, the mix without itself) rather than each
    /// speaker's own stream; set when its slots are bound.
    mixed: bool,
    /// The worker the control plane addresses this peer's commands to.
    home: usize,
    /// Its camera and video slots (a call channel's peer).
    video: PeerVideo,
    /// Who seals its audio: str0m, or the worker itself once DTLS exported keys.
    egress: Egress,
    /// Where str0m sends its media (ICE's nominated pair), from str0m's transmits.
    media_to: Option<SocketAddr>,
}

/// A peer on its way to the worker its packets land on, with its flows (nominated first).
pub(crate) struct Moving {
    key: PeerKey,
    peer: Box<Peer>,
    addrs: Vec<SocketAddr>,
}

impl Peer {
    /// RTP this peer may send: with the publish permission, on an m-line it offered to send.
    /// Anything else is dropped (and counted) before str0m spends a decryption on it; str0m
    /// would drop RTP on a receive-only m-line silently.
    fn may_send_rtp(&self) -> bool {
        self.spec.can_publish && self.offered_send
    }
}

/// RTP as opposed to RTCP, STUN or DTLS on a shared port (RFC 7983 first-byte ranges; RFC 5761
/// payload types 64–95 with the marker bit are RTCP).
fn is_rtp(data: &[u8]) -> bool {
    data.len() >= 12 && (128..=191).contains(&data[0]) && !(64..=95).contains(&(data[1] & 0x7f))
}

/// What became of one packet for one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Sent,
    /// The listener has no slot for the packet's publisher (yet).
    NoSlot,
    /// The listener lives on another worker.
    NotHere,
    /// The listener receives the mix and the packet is a speaker's own, or the reverse.
    NotWanted,
}

/// The publisher a mixed packet comes from: no participant's key (those are hashes of IDs).
const MIX_KEY: PeerKey = u64::MAX;

/// What a file playing into a channel holds its route as (no participant's key).
const PLAYER_KEY: PeerKey = u64::MAX - 1;
/// A playback's first packet waits this long, for listeners' slots to be bound to it.
const PLAY_DELAY: Duration = Duration::from_millis(60);

/// The worker running `channel`'s mixer: the same on every worker, by a hash of the ID.
pub(crate) fn mixer_worker(channel: &ChannelId, workers: usize) -> usize {
    // FNV-1a: stable across processes and workers, unlike the std hasher's random keys.
    let hash = channel
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash % workers.max(1) as u64) as usize
}

/// Peer keys are hashes of participant IDs already: hashing them again per packet per
/// listener (SipHash, the default) buys nothing.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type PeerMap<V> = HashMap<PeerKey, V, BuildHasherDefault<KeyHasher>>;

struct Worker {
    index: usize,
    socket: UdpSocket,
    /// The mixers of the channels this worker mixes for.
    mixing: Mixing,
    /// What the last mixer ticks produced; reused.
    mix_out: Vec<MixOut>,
    /// Their mix-minus packets; reused.
    mix_minus: Vec<(PeerKey, Arc<[u8]>)>,
    /// Files playing into the channels this worker mixes for.
    players: Players,
    play_out: Vec<player::Due>,
    /// Mixer counts already published.
    mix_published: MixerCounts,
    /// Buffers for RED packets' primary blocks.
    red_pool: amphi_core::mix::pool::PacketPool,
    fd: std::os::fd::RawFd,
    /// Datagrams to send, flushed at the end of every turn of the loop (or sooner when full).
    out: SendBatch,
    /// The wall-clock header values of the packet being fanned out.
    stamps: crate::media::rtp_out::Stamps,
    announced: SocketAddr,
    max_slots: usize,
    epoch: Instant,
    shared: Arc<Shared>,
    /// Boxed: a `Peer` (its `Rtc` inline) is ≈ 10 KiB, and a hash table keeps up to half its
    /// slots empty after growing (twice that while it grows): unboxed, the empty slots cost
    /// ≈ 18 KiB per peer at 300 peers (heap profile); boxed, 8 bytes each.
    peers: PeerMap<Box<Peer>>,
    demux: Demux,
    /// Moves and passed-on commands waiting for room in another worker's queue.
    outbox: Outbox<Remote>,
    timers: Deadlines<PeerKey>,
    router: Router,
    metrics: WorkerMetrics,
    /// Events drained from one `Rtc`, handled once its borrow ends; reused.
    events: Vec<Event>,
    /// Peers whose timeout is due, collected before any fires; reused.
    due: Vec<PeerKey>,
    /// ICE-TCP connections of peers here, and the address their candidate announces.
    tcp: tcp::TcpLinks,
}

/// What every worker of a plane is started with.
pub(crate) struct Settings {
    pub announced: SocketAddr,
    /// The passive ICE-TCP candidate, when the plane listens on TCP.
    pub announced_tcp: Option<SocketAddr>,
    pub max_slots: usize,
    /// How mixers encode.
    pub mix: EncoderSettings,
}

pub(crate) fn run(
    index: usize,
    socket: StdUdpSocket,
    settings: Settings,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    remotes: mpsc::Receiver<Remote>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("media worker runtime");
    rt.block_on(async move {
        let mut w = Worker::new(index, socket, settings, shared);
        w.serve(commands, remotes).await;
        let keys: Vec<PeerKey> = w.peers.keys().copied().collect();
        for key in keys {
            w.remove(key);
        }
        w.flush_out();
    });
}

/// When the loop last did its slower chores.
struct Chores {
    housekept: Instant,
    pruned: Instant,
}

impl Worker {
    fn new(index: usize, socket: StdUdpSocket, settings: Settings, shared: Arc<Shared>) -> Self {
        let socket = UdpSocket::from_std(socket).expect("non-blocking socket");
        let workers = shared.remotes.len();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        let Settings {
            announced,
            announced_tcp,
            max_slots,
            mix,
        } = settings;
        Worker {
            index,
            socket,
            fd,
            out: SendBatch::new(),
            stamps: Default::default(),
            red_pool: amphi_core::mix::pool::PacketPool::default(),
            mixing: Mixing::new(mix),
            mix_out: Vec::new(),
            mix_minus: Vec::new(),
            players: Players::default(),
            play_out: Vec::new(),
            mix_published: MixerCounts::default(),
            announced,
            max_slots,
            epoch: crate::clock::now(),
            router: Router::new(index, shared.masks.clone()),
            shared,
            peers: PeerMap::default(),
            demux: Demux::new(index),
            outbox: Outbox::new(workers),
            timers: Deadlines::default(),
            metrics: WorkerMetrics::new(index),
            events: Vec::new(),
            due: Vec::new(),
            tcp: tcp::TcpLinks::new(announced_tcp),
        }
    }

    /// The worker's loop, until it is told to stop.
    async fn serve(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
        mut remotes: mpsc::Receiver<Remote>,
    ) {
        let mut recv = RecvBatch::new(RECV_BATCH, 2048);
        let mut chores = Chores {
            housekept: crate::clock::now(),
            pruned: crate::clock::now(),
        };
        // Fairness under saturation: the select below prefers commands, then other workers'
        // packets, then the socket; due timers and housekeeping run after every batch
        // whatever branch it came from.
        while let Some(next) = self.due_work(&mut chores) {
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop) | None => break,
                    Some(cmd) => self.command(cmd),
                },
                remote = remotes.recv() => {
                    if let Some(r) = remote {
                        self.remote(r);
                    }
                    // Drain what else is queued, bounded, before the socket gets a turn.
                    for _ in 0..READ_BATCH {
                        match remotes.try_recv() {
                            Ok(r) => self.remote(r),
                            Err(_) => break,
                        }
                    }
                }
                ready = self.socket.readable() => {
                    if ready.is_ok() {
                        self.read_socket(&mut recv);
                    }
                }
                // Timers and housekeeping run at the top of the loop.
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }

    /// Runs what is due (timers, playback, mixer ticks, housekeeping) and sends what they
    /// wrote; the next deadline, or `None` once the plane is stopping.
    fn due_work(&mut self, chores: &mut Chores) -> Option<Instant> {
        self.flush_outbox();
        let now = crate::clock::now();
        if self.timers.next().is_some_and(|t| t <= now) {
            self.timeouts(now);
        }
        let mut play_due = self.players.next_due();
        if play_due.is_some_and(|t| t <= now) {
            self.play_due(now);
            play_due = self.players.next_due();
        }
        let mut mix_due = self.mixing.next_due();
        if mix_due.is_some_and(|t| t <= now) {
            self.mix_ticks(now);
            mix_due = self.mixing.next_due();
        }
        if now.saturating_duration_since(chores.housekept) >= HOUSEKEEPING {
            chores.housekept = now;
            if self
                .shared
                .stopping
                .load(std::sync::atomic::Ordering::Acquire)
            {
                return None;
            }
            self.housekeeping();
            if now.saturating_duration_since(chores.pruned) >= Duration::from_secs(5) {
                chores.pruned = now;
                self.demux.prune(now);
            }
        }
        self.flush_out();
        Some(
            self.timers
                .next()
                .unwrap_or_else(|| now + Duration::from_secs(1))
                .min(chores.housekept + HOUSEKEEPING)
                .min(mix_due.unwrap_or(now + HOUSEKEEPING))
                .min(play_due.unwrap_or(now + HOUSEKEEPING)),
        )
    }

    /// Reads the socket in batches until it runs dry or the turn's budget is spent.
    fn read_socket(&mut self, recv: &mut RecvBatch) {
        for _ in 0..READ_BATCH / RECV_BATCH {
            // Through tokio, so that it learns when the socket runs dry.
            let fd = self.fd;
            let read = self
                .socket
                .try_io(tokio::io::Interest::READABLE, || recv.recv(fd));
            match read {
                Ok(_) => {
                    for (source, data) in recv.datagrams() {
                        self.datagram(source, data);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "media socket read");
                    break;
                }
            }
        }
    }
}

// A refused message comes back whole so that it can wait its turn in order; boxing it
// would allocate for every packet handed to another worker, to spare the rare refusal.
#[allow(clippy::result_large_err)]
fn try_remote(tx: &mpsc::Sender<Remote>, msg: Remote) -> Result<(), Refused<Remote>> {
    tx.try_send(msg).map_err(|e| match e {
        mpsc::error::TrySendError::Full(m) => Refused::Full(m),
        mpsc::error::TrySendError::Closed(_) => Refused::Closed,
    })
}

/// Tells a peer's client which participant each rebound slot (audio or video) now carries.
fn announce_tracks(spec: &PeerSpec, rebound: &[(Mid, Option<PeerKey>)], publishers: &[&Publisher]) {
    for (mid, publisher) in rebound {
        let who = publisher.and_then(|k| publishers.iter().find(|p| p.key == k));
        session_event(
            spec,
            MediaEvent::Track {
                mid: mid.to_string(),
                participant: who.map(|p| p.participant.clone()),
                identity: who.map(|p| p.identity.clone()),
            },
        );
    }
}

/// Tells the peer's session about its own media; the session writes the wire frame.
fn session_event(peer: &PeerSpec, event: MediaEvent) {
    // Media events are advisory; a session too slow to take one is being dropped anyway.
    let _ = peer.session.try_send(ToSession::Media {
        channel: peer.channel.clone(),
        event,
    });
}

impl Worker {
    fn housekeeping(&mut self) {
        let mut mixed = 0;
        for peer in self.peers.values_mut() {
            mixed += usize::from(peer.mixed && peer.spec.can_subscribe);
            if let Some(dbov) = peer.level.loudest.take() {
                let voice = std::mem::take(&mut peer.level.voice);
                let _ = peer.spec.levels.try_send(SpeakerLevel {
                    participant: peer.spec.participant.clone(),
                    dbov,
                    voice,
                });
            }
        }
        let router = &self.router;
        self.mixing
            .set_expected_loss(|route| router.get(route).map(|r| r.bits.expected_loss_percent()));
        self.mixing.take_levels(|route, key, dbov| {
            let Some(r) = router.get(route) else {
                return;
            };
            let (Some(levels), Some(p)) = (&r.levels, r.publishers.iter().find(|p| p.key == key))
            else {
                return;
            };
            let _ = levels.try_send(SpeakerLevel {
                participant: p.participant.clone(),
                dbov,
                // What a sender's voice-activity flag would say, read from the level.
                voice: dbov < 50,
            });
        });
        let counts = self.mixing.counts;
        self.metrics.mixer(counts.since(&self.mix_published));
        self.mix_published = counts;
        self.metrics.mixing_channels(self.mixing.running());
        self.metrics.mixed_listeners(mixed);
        for frames in self.mixing.buffer_delays() {
            self.metrics.mixer_buffer(frames);
        }
        self.metrics.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::is_rtp;

    #[test]
    fn rtp_is_told_from_rtcp_stun_and_dtls() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 111;
        assert!(is_rtp(&rtp));
        rtp[1] = 111 | 0x80; // the marker bit
        assert!(is_rtp(&rtp));
        rtp[1] = 201; // a receiver report
        assert!(!is_rtp(&rtp));
        rtp[1] = 200; // a sender report
        assert!(!is_rtp(&rtp));
        assert!(!is_rtp(&[0x00; 20]), "STUN");
        assert!(!is_rtp(&[22; 20]), "DTLS");
        assert!(!is_rtp(&[0x80, 111]), "too short");
    }
}
