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

mod mixing;
mod player;
mod router;
mod stats;
mod steer;

use super::sdp;
use super::slots::{PeerKey, Slots};
use super::types::{Command, MediaError, PeerSpec};
use super::udp::{RecvBatch, SendBatch};
use crate::channel::Publisher;
use crate::ids::ChannelId;
use crate::messages::ToSession;
use crate::messages::{FirstAudio, SpeakerLevel};
use crate::metrics::{Drop as DropReason, MixerCounts, WorkerMetrics};
use crate::protocol::MediaEvent;
use amphi_core::deadlines::{Deadline, Deadlines};
use amphi_core::mix::codec::EncoderSettings;
use mixing::{MixOut, Mixing};
use player::Players;
pub(crate) use router::Masks;
use router::{RouteId, Router};
use stats::{Jitter, LevelWindow};
use steer::{Demux, Outbox, Refused, Steer};

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
    Adopt(Box<Moving>),
    /// A command for a peer that moved here, passed on by its home worker.
    Command(Command),
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
}

struct Peer {
    spec: PeerSpec,
    rtc: Rtc,
    ufrag: String,
    slots: Slots,
    /// Payload type of Opus on this peer, for writing.
    opus_pt: Option<Pt>,
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
}

/// A peer on its way to the worker its packets land on, with its flows (nominated first).
pub(crate) struct Moving {
    key: PeerKey,
    peer: Peer,
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
    /// Files playing into the channels this worker mixes for.
    players: Players,
    play_out: Vec<player::Due>,
    /// Mixer counts already published.
    mix_published: MixerCounts,
    fd: std::os::fd::RawFd,
    /// Datagrams to send, flushed at the end of every turn of the loop (or sooner when full).
    out: SendBatch,
    local: SocketAddr,
    announced: SocketAddr,
    max_slots: usize,
    epoch: Instant,
    shared: Arc<Shared>,
    peers: PeerMap<Peer>,
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
}

/// What every worker of a plane is started with.
pub(crate) struct Settings {
    pub announced: SocketAddr,
    pub max_slots: usize,
    /// How mixers encode.
    pub mix: EncoderSettings,
}

pub(crate) fn run(
    index: usize,
    socket: StdUdpSocket,
    settings: Settings,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
    mut remotes: mpsc::Receiver<Remote>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("media worker runtime");
    rt.block_on(async move {
        let local = socket.local_addr().expect("bound socket");
        let socket = UdpSocket::from_std(socket).expect("non-blocking socket");
        let workers = shared.remotes.len();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        let Settings {
            announced,
            max_slots,
            mix,
        } = settings;
        let mut w = Worker {
            index,
            socket,
            fd,
            out: SendBatch::new(),
            mixing: Mixing::new(mix),
            mix_out: Vec::new(),
            players: Players::default(),
            play_out: Vec::new(),
            mix_published: MixerCounts::default(),
            local,
            announced,
            max_slots,
            epoch: Instant::now(),
            router: Router::new(index, shared.masks.clone()),
            shared,
            peers: PeerMap::default(),
            demux: Demux::new(index),
            outbox: Outbox::new(workers),
            timers: Deadlines::default(),
            metrics: WorkerMetrics::new(index),
            events: Vec::new(),
            due: Vec::new(),
        };
        let mut recv = RecvBatch::new(RECV_BATCH, 2048);
        let mut pruned = Instant::now();
        let mut housekept = Instant::now();
        loop {
            w.flush_outbox();
            // Fairness under saturation: the select below prefers commands, then other
            // workers' packets, then the socket; due timers and housekeeping run after every
            // batch whatever branch it came from.
            let now = Instant::now();
            if w.timers.next().is_some_and(|t| t <= now) {
                w.timeouts(now);
            }
            let mut play_due = w.players.next_due();
            if play_due.is_some_and(|t| t <= now) {
                w.play_due(now);
                play_due = w.players.next_due();
            }
            let mut mix_due = w.mixing.next_due();
            if mix_due.is_some_and(|t| t <= now) {
                w.mix_ticks(now);
                mix_due = w.mixing.next_due();
            }
            if now.saturating_duration_since(housekept) >= HOUSEKEEPING {
                housekept = now;
                if w.shared.stopping.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                w.housekeeping();
                if now.saturating_duration_since(pruned) >= Duration::from_secs(5) {
                    pruned = now;
                    w.demux.prune(now);
                }
            }
            w.flush_out();
            let next = w
                .timers
                .next()
                .unwrap_or_else(|| now + Duration::from_secs(1))
                .min(housekept + HOUSEKEEPING)
                .min(mix_due.unwrap_or(now + HOUSEKEEPING))
                .min(play_due.unwrap_or(now + HOUSEKEEPING));
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop) | None => break,
                    Some(cmd) => w.command(cmd),
                },
                remote = remotes.recv() => {
                    if let Some(r) = remote {
                        w.remote(r);
                    }
                    // Drain what else is queued, bounded, before the socket gets a turn.
                    for _ in 0..READ_BATCH {
                        match remotes.try_recv() {
                            Ok(r) => w.remote(r),
                            Err(_) => break,
                        }
                    }
                }
                ready = w.socket.readable() => {
                    if ready.is_ok() {
                        for _ in 0..READ_BATCH / RECV_BATCH {
                            // Through tokio, so that it learns when the socket runs dry.
                            let fd = w.fd;
                            let read = w.socket.try_io(tokio::io::Interest::READABLE, || {
                                recv.recv(fd)
                            });
                            match read {
                                Ok(_) => {
                                    for (source, data) in recv.datagrams() {
                                        w.datagram(source, data);
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
                // Timers and housekeeping run at the top of the loop.
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
        let keys: Vec<PeerKey> = w.peers.keys().copied().collect();
        for key in keys {
            w.remove(key);
        }
        w.flush_out();
    });
}

fn try_remote(tx: &mpsc::Sender<Remote>, msg: Remote) -> Result<(), Refused<Remote>> {
    tx.try_send(msg).map_err(|e| match e {
        mpsc::error::TrySendError::Full(m) => Refused::Full(m),
        mpsc::error::TrySendError::Closed(_) => Refused::Closed,
    })
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
    fn command(&mut self, cmd: Command) {
        let peer = match &cmd {
            Command::Offer { spec, .. } => Some(spec.key),
            Command::Answer { key, .. }
            | Command::Candidate { key, .. }
            | Command::Permissions { key, .. }
            | Command::Audio { key, .. }
            | Command::Remove { key } => Some(*key),
            _ => None,
        };
        if let Some(key) = peer {
            let removing = matches!(cmd, Command::Remove { .. });
            if let Some(to) = self.demux.moved_to(key, removing) {
                let remotes = &self.shared.remotes;
                let msg = Remote::Command(cmd);
                self.outbox.post(to, msg, |w, m| try_remote(&remotes[w], m));
                return;
            }
        }
        match cmd {
            Command::Offer {
                spec,
                sdp,
                sends,
                reply,
            } => {
                let _ = reply.send(self.offer(*spec, &sdp, sends));
            }
            Command::Answer { key, sdp, reply } => {
                let _ = reply.send(self.answer(key, &sdp));
            }
            Command::Candidate { key, candidate } => {
                if let Some(peer) = self.peers.get_mut(&key) {
                    let c = candidate.trim().trim_start_matches("a=");
                    if let Ok(c) = Candidate::from_sdp_string(c) {
                        peer.rtc.add_remote_candidate(c);
                        self.drain(key);
                    }
                }
            }
            Command::Permissions {
                key,
                can_publish,
                can_subscribe,
            } => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                peer.spec.can_publish = can_publish;
                let was = peer.spec.can_subscribe;
                peer.spec.can_subscribe = can_subscribe;
                if was != can_subscribe {
                    self.listen(key, can_subscribe);
                }
                self.assign_slots(key);
            }
            Command::Remove { key } => self.remove(key),
            Command::Audio { key, audio } => {
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.spec.audio = audio;
                    self.assign_slots(key);
                }
            }
            Command::Routes {
                channel,
                publishers,
                mix,
                levels,
            } => {
                let listeners =
                    self.router
                        .set_publishers(&channel, publishers.clone(), mix, Some(levels));
                if let Some(route) = self.router.find(&channel) {
                    if !mix.mixer && self.mixing.is_mixing(route) {
                        // Back to forwarding: the mixer and its hold on the route go.
                        self.mixing.stop(route);
                        self.router.detach(route, MIX_KEY);
                    }
                    self.mixing
                        .retain_speakers(route, |k| publishers.iter().any(|p| p.key == k));
                    self.mixing.set_gains(route, &publishers);
                }
                for &key in listeners.iter() {
                    self.assign_slots(key);
                }
            }
            Command::ChannelClosed { channel } => {
                if let Some(route) = self.router.find(&channel) {
                    if self.mixing.is_mixing(route) {
                        // A recording of it is finished here.
                        self.mixing.stop(route);
                        self.router.detach(route, MIX_KEY);
                    }
                    self.stop_playing(route);
                }
                self.router.channel_closed(&channel);
            }
            Command::Record { channel, recorder } => {
                // Nothing to stop in a channel this worker has no route for.
                let route = match (self.router.find(&channel), &recorder) {
                    (None, None) => return,
                    _ => self.router.open(&channel),
                };
                if !self.mixing.is_mixing(route) {
                    if recorder.is_none() {
                        return;
                    }
                    // The mixer holds the route while it runs.
                    self.router.hold(route);
                }
                self.mixing.record(route, recorder, Instant::now());
            }
            Command::Play { channel, play } => match play {
                Some((key, packets, done)) => {
                    let route = self.router.open(&channel);
                    if !self.players.is_playing(route) {
                        self.router.hold(route);
                    }
                    let start = Instant::now() + PLAY_DELAY;
                    self.players.play(route, key, packets, start, done);
                }
                None => {
                    if let Some(route) = self.router.find(&channel) {
                        self.stop_playing(route);
                    }
                }
            },
            Command::Stop => {}
        }
    }

    /// Stops the file playing into `route`, if one is, and lets go of the route.
    fn stop_playing(&mut self, route: RouteId) {
        if self.players.is_playing(route) {
            self.players.stop(route);
            self.router.detach(route, PLAYER_KEY);
        }
    }

    /// Sends the packets of files playing into channels that are due: to the listeners
    /// (forwarded) and to the mixer, as the channel's mixdown says.
    fn play_due(&mut self, now: Instant) {
        let mut out = std::mem::take(&mut self.play_out);
        let mut ended = Vec::new();
        self.players.due(now, &mut out, &mut ended);
        for d in out.drain(..) {
            let Some(mix) = self.router.get(d.route).map(|r| r.mix) else {
                continue;
            };
            let packet = Packet {
                publisher: d.key,
                capture: Some(AbsCaptureTime {
                    capture_time: std::time::SystemTime::now(),
                    clock_offset: None,
                }),
                level: None,
                time: player::time_of(d.index),
                seq: d.index,
                marker: d.index == 0,
                arrived: now,
                data: d.data,
            };
            if mix.forward {
                self.send_to_other_workers(d.route, &packet);
                self.fan_out(d.route, &packet);
            }
            if mix.mixer {
                // Players run on their channel's mixer worker: the mixer is here.
                self.mix_here(d.route, &packet, false);
            }
        }
        for route in ended {
            self.router.detach(route, PLAYER_KEY);
        }
        self.play_out = out;
    }

    /// Makes a peer one of its channel's listeners on this worker, or not.
    fn listen(&mut self, key: PeerKey, on: bool) {
        let Some(route) = self.peers.get(&key).map(|p| p.route) else {
            return;
        };
        if on {
            self.router.add_listener(route, key);
        } else {
            self.router.remove_listener(route, key);
        }
    }

    fn offer(&mut self, spec: PeerSpec, sdp: &str, sends: bool) -> Result<String, MediaError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| sdp::parse_error(&e))?;
        let key = spec.key;
        if !self.peers.contains_key(&key) {
            // Audio only: level (speaking events), mid (demultiplexing) and absolute send time.
            // Transport-wide congestion control feedback cost ~30% of the forwarding CPU and
            // steers nothing for a fixed-rate voice codec, so it is not negotiated. Without
            // abs-send-time, str0m receivers delivered only a fifth of the frames (measured
            // with the forward bench), so that one stays.
            // RTP mode: the server forwards packets as they arrive (no reordering buffer, no
            // depacketizing and packetizing again) with its own sequence numbers and
            // timestamps per slot, and the payload is shared by every listener.
            let mut rtc = Rtc::builder()
                .set_rtp_mode(true)
                .set_ice_lite(true)
                .clear_codecs()
                .enable_opus(true, false)
                .clear_extension_map()
                .set_extension(1, Extension::AudioLevel)
                .set_extension(4, Extension::RtpMid)
                .set_extension(2, Extension::AbsoluteSendTime)
                .set_extension(5, Extension::AbsoluteCaptureTime)
                .set_stats_interval(Some(STATS_INTERVAL))
                .build(Instant::now());
            let candidate = Candidate::host(self.announced, "udp")
                .map_err(|e| MediaError::Negotiation(e.to_string()))?;
            rtc.add_local_candidate(candidate);
            let ufrag = rtc.direct_api().local_ice_credentials().ufrag.clone();
            self.demux.add(key, &ufrag, Vec::new());
            self.shared.ufrags.insert(ufrag.clone(), self.index);
            let route = self.router.attach(&spec.channel);
            let subscribe = spec.can_subscribe;
            self.peers.insert(
                key,
                Peer {
                    spec,
                    rtc,
                    ufrag,
                    slots: Slots::default(),
                    opus_pt: None,
                    pending: None,
                    deadline: Deadline::default(),
                    route,
                    jitter: Jitter::default(),
                    level: LevelWindow::default(),
                    created: Instant::now(),
                    first_audio: None,
                    offered_send: sends,
                    mixed: false,
                    home: self.index,
                },
            );
            if subscribe {
                self.router.add_listener(route, key);
            }
            self.metrics.peers(1);
        } else if let Some(peer) = self.peers.get_mut(&key) {
            // Crossed offers: ours stands (the server is the impolite side), the client answers
            // it and offers again; both sides then agree on one description.
            if peer
                .pending
                .as_ref()
                .is_some_and(|p| p.2.elapsed() < OFFER_ANSWER_TIMEOUT)
            {
                return Err(MediaError::OfferPending);
            }
            // An offer never answered (lost, or a client that ignores renegotiation) must not
            // block the client's own offers forever: dropping it rolls its changes back.
            peer.pending = None;
            peer.offered_send = sends;
            peer.spec.can_publish = spec.can_publish;
            let (was, now) = (peer.spec.can_subscribe, spec.can_subscribe);
            peer.spec.can_subscribe = now;
            if was != now {
                self.listen(key, now);
            }
        }
        let fresh = !self.peers.get(&key).is_some_and(|p| p.rtc.is_connected());
        let peer = self.peers.get_mut(&key).expect("inserted above");
        let answer = match peer.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                // A peer that never negotiated must not linger in the maps.
                if fresh && peer.slots.is_empty() {
                    self.remove(key);
                }
                return Err(MediaError::Negotiation(e.to_string()));
            }
        };
        self.drain(key);
        self.assign_slots(key);
        Ok(answer.to_sdp_string())
    }

    fn answer(&mut self, key: PeerKey, sdp: &str) -> Result<(), MediaError> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| sdp::parse_error(&e))?;
        let peer = self.peers.get_mut(&key).ok_or(MediaError::NoPeer)?;
        let (pending, mids, _) = peer.pending.take().ok_or(MediaError::NoPendingOffer)?;
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| MediaError::Negotiation(e.to_string()))?;
        for mid in mids {
            peer.slots.add(mid);
        }
        self.drain(key);
        self.assign_slots(key);
        Ok(())
    }

    /// Binds the channel's publishers to this listener's slots, tells the client what moved,
    /// and asks for more slots by renegotiation when it has too few.
    fn assign_slots(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let publishers: Vec<&Publisher> = match self.router.get(peer.route) {
            Some(route) if peer.spec.can_subscribe => {
                route.publishers.iter().filter(|p| p.key != key).collect()
            }
            _ => Vec::new(),
        };
        // The mix: one slot carries it (for a speaker, the mix without itself).
        let mixed = self
            .router
            .get(peer.route)
            .is_some_and(|r| peer.spec.audio.receives_mix(r.mix.mixing));
        peer.mixed = mixed;
        let keys: Vec<PeerKey> = if mixed {
            if publishers.is_empty() {
                Vec::new()
            } else {
                vec![MIX_KEY]
            }
        } else {
            publishers.iter().map(|p| p.key).collect()
        };
        let changes = peer.slots.assign(&keys);
        for (mid, publisher) in &changes.rebound {
            let who = publisher.and_then(|k| publishers.iter().find(|p| p.key == k));
            session_event(
                &peer.spec,
                MediaEvent::Track {
                    mid: mid.to_string(),
                    participant: who.map(|p| p.participant.clone()),
                    identity: who.map(|p| p.identity.clone()),
                },
            );
        }
        let room = self.max_slots.saturating_sub(peer.slots.len());
        let wanted = changes.missing.min(room);
        if peer
            .pending
            .as_ref()
            .is_some_and(|p| p.2.elapsed() >= OFFER_ANSWER_TIMEOUT)
        {
            // Rolled back; the offer below replaces it.
            peer.pending = None;
        }
        if wanted > 0 && peer.pending.is_none() && peer.rtc.is_connected() {
            let mut api = peer.rtc.sdp_api();
            let mids: Vec<Mid> = (0..wanted)
                .map(|_| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None))
                .collect();
            if let Some((offer, pending)) = api.apply() {
                peer.pending = Some((pending, mids, Instant::now()));
                session_event(
                    &peer.spec,
                    MediaEvent::MediaOffer {
                        sdp: offer.to_sdp_string(),
                    },
                );
            }
            self.drain(key);
        }
    }

    fn remove(&mut self, key: PeerKey) {
        let Some(mut peer) = self.take_peer(key) else {
            return;
        };
        self.demux.remove(key, &peer.ufrag);
        peer.rtc.disconnect();
        self.shared.ufrags.remove(&peer.ufrag);
    }

    /// Takes a peer out of this worker's tables but the demultiplexer's, to be moved or
    /// dropped.
    fn take_peer(&mut self, key: PeerKey) -> Option<Peer> {
        let peer = self.peers.remove(&key)?;
        // Its timer entry stays queued and finds nobody when it comes due.
        self.router.detach(peer.route, key);
        self.metrics.peers(-1);
        Some(peer)
    }

    /// A datagram read from this worker's socket.
    fn datagram(&mut self, source: SocketAddr, data: &[u8]) {
        let shared = &self.shared;
        let owner_of = |ufrag: &str| shared.ufrags.get(ufrag).map(|w| *w);
        match self.demux.read(source, data, Instant::now(), owner_of) {
            Steer::Local(key) => self.input(key, source, data),
            Steer::HandOver(w) => self.hand_over(w, source, data),
            Steer::Unknown => self.metrics.drop(DropReason::UnknownSource, 1),
        }
    }

    /// A datagram worker `from` read for a peer it believed is here.
    fn handed_over(&mut self, source: SocketAddr, from: usize, data: &[u8]) {
        let shared = &self.shared;
        let owner_of = |ufrag: &str| shared.ufrags.get(ufrag).map(|w| *w);
        match self.demux.handed_over(source, from, data, owner_of) {
            (Steer::Local(key), nominated) => {
                self.input(key, source, data);
                if nominated {
                    self.move_peer(key, from, source);
                }
            }
            (Steer::HandOver(w), _) => self.hand_over(w, source, data),
            (Steer::Unknown, _) => self.metrics.drop(DropReason::UnknownSource, 1),
        }
    }

    fn hand_over(&mut self, worker: usize, source: SocketAddr, data: &[u8]) {
        self.metrics.handover();
        let msg = Remote::Datagram {
            source,
            from: self.index,
            data: data.to_vec(),
        };
        if self.shared.remotes[worker].try_send(msg).is_err() {
            self.metrics.drop(DropReason::QueueFull, 1);
        }
    }

    /// Moves a peer whose nominated flow lands on worker `to`. A peer moves once, from its
    /// home, so a command is passed on one hop at most and never back.
    fn move_peer(&mut self, key: PeerKey, to: usize, flow: SocketAddr) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        // Moving behind queued messages would let a command overtake the move; moving into
        // a full queue would strand the peer. Either way it stays, and the next nominating
        // request handed over tries again.
        if peer.home != self.index
            || to == self.index
            || !peer.rtc.is_alive()
            || !self.outbox.is_empty_for(to)
        {
            return;
        }
        let shared = self.shared.clone();
        let Ok(permit) = shared.remotes[to].try_reserve() else {
            return;
        };
        let Some(peer) = self.take_peer(key) else {
            return;
        };
        let addrs = self
            .demux
            .moved_away(key, &peer.ufrag, to, flow, Instant::now());
        let ufrag = peer.ufrag.clone();
        permit.send(Remote::Adopt(Box::new(Moving { key, peer, addrs })));
        // After the move is queued: a datagram handed to `to` from now on finds it there.
        shared.ufrags.insert(ufrag, to);
        self.metrics.peer_moved();
    }

    /// A peer moved here by its home worker.
    fn adopt(&mut self, moving: Moving) {
        let Moving {
            key,
            mut peer,
            addrs,
        } = moving;
        self.demux.add(key, &peer.ufrag, addrs);
        self.timers.adopt(key, &mut peer.deadline);
        peer.route = self.router.attach(&peer.spec.channel);
        let (route, listens) = (peer.route, peer.spec.can_subscribe);
        self.peers.insert(key, peer);
        self.metrics.peers(1);
        if listens {
            self.router.add_listener(route, key);
        }
        // The routes this worker holds may be newer than the ones the peer left with.
        self.assign_slots(key);
    }

    /// Sends what the last turn produced, in one system call per `SendBatch::FLUSH_AT`.
    fn flush_out(&mut self) {
        let flushed = self.out.flush(self.fd);
        self.metrics
            .drop(DropReason::SocketFull, flushed.dropped as u64);
    }

    fn flush_outbox(&mut self) {
        let remotes = &self.shared.remotes;
        self.outbox.flush(|w, m| try_remote(&remotes[w], m));
    }

    fn input(&mut self, key: PeerKey, source: SocketAddr, data: &[u8]) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.may_send_rtp() && is_rtp(data) {
            self.metrics.drop(DropReason::NotPermitted, 1);
            return;
        }
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if peer.rtc.accepts(&input) {
            if let Err(e) = peer.rtc.handle_input(input) {
                tracing::debug!(error = %e, "peer input");
            }
            self.drain(key);
        }
    }

    fn remote(&mut self, r: Remote) {
        match r {
            Remote::Media { channel, packet } => {
                if let Some(route) = self.router.find(&channel) {
                    self.fan_out(route, &packet);
                }
            }
            Remote::MixIn {
                channel,
                packet,
                minus,
            } => {
                if let Some(route) = self.router.find(&channel) {
                    self.mix_here(route, &packet, minus);
                }
            }
            Remote::MixMinus { speaker, packet } => {
                self.write(speaker, &packet);
            }
            Remote::Datagram { source, from, data } => self.handed_over(source, from, &data),
            Remote::Adopt(moving) => self.adopt(*moving),
            Remote::Command(cmd) => self.command(cmd),
        }
    }

    fn timeouts(&mut self, now: Instant) {
        // Due peers are collected first: str0m may hand back the same deadline, which must
        // wait for the next pass rather than spin in this one.
        let mut due = std::mem::take(&mut self.due);
        while let Some((at, key)) = self.timers.pop_due(now) {
            if let Some(peer) = self.peers.get_mut(&key) {
                if self.timers.fire(key, &mut peer.deadline, at, now) {
                    due.push(key);
                }
            }
        }
        for key in due.drain(..) {
            if let Some(peer) = self.peers.get_mut(&key) {
                let _ = peer.rtc.handle_input(Input::Timeout(Instant::now()));
                self.drain(key);
            }
        }
        self.due = due;
    }

    /// Drains one peer's output (str0m's contract after every mutation), transmitting and
    /// collecting events, then handles the events.
    fn drain(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        // str0m asks for a timeout "now" after each packet it sends (its pacer wants time to
        // move before the next); giving it here, a couple of times at most, saves a timer
        // entry and a wake-up per packet per listener.
        let mut immediate = 0;
        let deadline = loop {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    let now = Instant::now();
                    if t <= now && immediate < 2 && peer.rtc.is_alive() {
                        immediate += 1;
                        let _ = peer.rtc.handle_input(Input::Timeout(now));
                        continue;
                    }
                    break t;
                }
                Ok(Output::Transmit(t)) => {
                    if self.out.push(t.destination, t.contents.into()) {
                        let flushed = self.out.flush(self.fd);
                        self.metrics
                            .drop(DropReason::SocketFull, flushed.dropped as u64);
                    }
                }
                Ok(Output::Event(e)) => self.events.push(e),
                Err(e) => {
                    tracing::debug!(error = %e, "peer failed");
                    peer.rtc.disconnect();
                    break Instant::now();
                }
            }
        };
        self.timers.set(key, &mut peer.deadline, deadline);
        let alive = peer.rtc.is_alive();
        if !self.events.is_empty() {
            let mut events = std::mem::take(&mut self.events);
            // str0m reports `Connected` before the `MediaAdded` events it held back until
            // SRTP was ready: slots are bound once the whole batch is in, or a listener
            // would be asked to renegotiate for a slot it already offered.
            let rebind = events
                .iter()
                .any(|e| matches!(e, Event::Connected | Event::MediaAdded(_)));
            for e in events.drain(..) {
                self.event(key, e);
            }
            self.events = events;
            if rebind && alive {
                self.assign_slots(key);
            }
        }
        if !alive {
            if let Some(peer) = self.peers.get(&key) {
                session_event(&peer.spec, MediaEvent::MediaState { state: "closed" });
            }
            self.remove(key);
        }
    }

    fn event(&mut self, key: PeerKey, e: Event) {
        match e {
            Event::RtpPacket(rtp) => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                let route = peer.route;
                let jitter = peer
                    .jitter
                    .update(rtp.timestamp, self.epoch, rtp.time.numer());
                if peer.jitter.packets % 50 == 0 {
                    self.metrics.inbound_jitter(jitter);
                }
                let hears_mix = peer.mixed;
                let (muted, mix) = match self.router.get(route) {
                    Some(r) => match r.publishers.iter().find(|p| p.key == key) {
                        Some(p) => (p.muted, r.mix),
                        None => {
                            self.metrics.drop(DropReason::NotPermitted, 1);
                            return;
                        }
                    },
                    None => return,
                };
                if muted {
                    self.metrics.drop(DropReason::Muted, 1);
                    return;
                }
                let ext = &rtp.header.ext_vals;
                // Levels only from audio that is forwarded (a muted host is not speaking), and
                // from the mixer's decoded audio while it runs (it measures what it mixes).
                if let (false, Some(level), Some(peer)) =
                    (mix.mixer, ext.audio_level, self.peers.get_mut(&key))
                {
                    let dbov = level.unsigned_abs().min(127);
                    let w = &mut peer.level;
                    w.loudest = Some(w.loudest.map_or(dbov, |l| l.min(dbov)));
                    w.voice |= ext.voice_activity.unwrap_or(dbov < 50);
                }
                let packet = Packet {
                    publisher: key,
                    capture: ext.abs_capture_time,
                    level: ext
                        .audio_level
                        .map(|l| (l, ext.voice_activity.unwrap_or(false))),
                    time: rtp.time.numer(),
                    seq: *rtp.seq_no,
                    marker: rtp.header.marker,
                    arrived: rtp.timestamp,
                    data: rtp.payload,
                };
                if mix.forward {
                    self.send_to_other_workers(route, &packet);
                    self.fan_out(route, &packet);
                }
                if mix.mixer {
                    self.mix_in(route, packet, hears_mix);
                }
            }
            Event::MediaAdded(added) => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                if matches!(added.direction, Direction::SendOnly | Direction::SendRecv) {
                    peer.slots.add(added.mid);
                }
                if peer.opus_pt.is_none() {
                    peer.opus_pt = peer
                        .rtc
                        .codec_config()
                        .find(|p| p.spec().codec == str0m::format::Codec::Opus)
                        .map(|p| p.pt());
                }
            }
            Event::IceConnectionStateChange(state) => {
                let Some(peer) = self.peers.get(&key) else {
                    return;
                };
                let name = match state {
                    IceConnectionState::Connected | IceConnectionState::Completed => "connected",
                    IceConnectionState::Disconnected => "disconnected",
                    _ => return,
                };
                session_event(&peer.spec, MediaEvent::MediaState { state: name });
            }
            Event::MediaEgressStats(st) => {
                // What the listener reports about the audio we send it (RTCP receiver reports).
                let jitter = st.remote.as_ref().map(|r| f64::from(r.jitter) / 48_000.0);
                self.metrics.receiver_report(st.rtt, st.loss, jitter);
                if let Some(peer) = self.peers.get(&key) {
                    if let (true, Some(loss), Some(route)) =
                        (peer.mixed, st.loss, self.router.get(peer.route))
                    {
                        // The mix's encoder learns what its listeners lose.
                        route.bits.report_loss(loss);
                    }
                    session_event(
                        &peer.spec,
                        MediaEvent::Quality {
                            direction: "receive",
                            mid: st.mid.to_string(),
                            rtt_ms: st.rtt.map(|d| d.as_secs_f64() * 1000.0),
                            loss: st.loss,
                            jitter_ms: jitter.map(|j| j * 1000.0),
                        },
                    );
                }
            }
            Event::MediaIngressStats(st) => {
                if let Some(peer) = self.peers.get(&key) {
                    session_event(
                        &peer.spec,
                        MediaEvent::Quality {
                            direction: "send",
                            mid: st.mid.to_string(),
                            rtt_ms: st.rtt.map(|d| d.as_secs_f64() * 1000.0),
                            loss: st.loss,
                            jitter_ms: Some(f64::from(st.jitter) / 48.0),
                        },
                    );
                }
            }
            _ => {}
        }
    }

    fn send_to_other_workers(&mut self, route: RouteId, packet: &Packet) {
        let Some(plan) = self.router.plan(route) else {
            return;
        };
        if plan.others == 0 {
            return;
        }
        let channel = &self.router.get(route).expect("planned above").channel;
        for (w, tx) in self.shared.remotes.iter().enumerate() {
            if plan.others & (1u64 << (w % 64)) != 0 {
                let msg = Remote::Media {
                    channel: channel.clone(),
                    packet: packet.clone(),
                };
                if tx.try_send(msg).is_err() {
                    self.metrics.drop(DropReason::QueueFull, 1);
                }
            }
        }
    }

    /// Writes one packet to every local listener of the route but its publisher.
    fn fan_out(&mut self, route: RouteId, packet: &Packet) {
        // A snapshot: listeners that leave while it is walked are skipped, joiners wait for
        // the next packet.
        let Some(plan) = self.router.plan(route) else {
            return;
        };
        // The mix goes to listeners; a speaker gets its own mix-minus instead.
        let speakers = match (packet.publisher, self.router.get(route)) {
            (MIX_KEY, Some(r)) => Some(r.publishers.clone()),
            _ => None,
        };
        let (mut forwarded, mut no_slot) = (0u64, 0u64);
        for &l in plan.listeners.iter() {
            let speaks = speakers
                .as_ref()
                .is_some_and(|s| s.iter().any(|p| p.key == l));
            if l == packet.publisher || speaks {
                continue;
            }
            match self.write(l, packet) {
                Written::Sent => forwarded += 1,
                Written::NoSlot => no_slot += 1,
                Written::NotHere | Written::NotWanted => {}
            }
        }
        self.metrics.forwarded(forwarded);
        self.metrics.drop(DropReason::NoSlot, no_slot);
        if forwarded > 0 {
            self.metrics
                .forward_latency(Instant::now().saturating_duration_since(packet.arrived));
        }
    }

    /// Writes one packet to listener `l` on the slot carrying its publisher.
    fn write(&mut self, l: PeerKey, packet: &Packet) -> Written {
        let Some(peer) = self.peers.get_mut(&l) else {
            return Written::NotHere;
        };
        if peer.mixed != (packet.publisher == MIX_KEY) {
            // It receives the mix and this is a speaker's own stream, or the other way round.
            return Written::NotWanted;
        }
        let (Some(pt), Some(slot)) = (peer.opus_pt, peer.slots.for_publisher(packet.publisher))
        else {
            return Written::NoSlot;
        };
        let (mid, seq) = (slot.mid, slot.next_seq());
        let time = slot.map_time(packet.time);
        let mut api = peer.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return Written::NoSlot;
        };
        let ext = ExtensionValues {
            audio_level: packet.level.map(|l| l.0),
            voice_activity: packet.level.map(|l| l.1),
            abs_capture_time: packet.capture,
            abs_send_time: Some(packet.arrived),
            ..ExtensionValues::default()
        };
        // The server's own sequence numbers and timeline per slot: a listener sees one
        // continuous stream per slot whoever speaks on it.
        let write = RtpWrite::new(
            pt,
            SeqNo::from(seq),
            time as u32,
            packet.arrived,
            packet.data.clone(),
        )
        .marker(packet.marker)
        .ext_vals(ext);
        stream.write_rtp(write);
        // str0m queues a written packet until time moves on: moving it now sends the packet
        // in this turn instead of at a timer queued (and popped) per packet.
        let _ = peer.rtc.handle_input(Input::Timeout(Instant::now()));
        if peer.first_audio.is_none() {
            let now = Instant::now();
            peer.first_audio = Some(now);
            let _ = peer.spec.first_audio.try_send(FirstAudio {
                participant: peer.spec.participant.clone(),
            });
            self.metrics
                .first_audio(now.saturating_duration_since(peer.created));
        }
        self.drain(l);
        Written::Sent
    }

    /// A speaker's packet in a mixing channel: to the channel's mixer, here or on the worker
    /// that runs it (one mixer per channel, so one encode of the mix).
    fn mix_in(&mut self, route: RouteId, packet: Packet, minus: bool) {
        let Some(channel) = self.router.get(route).map(|r| r.channel.clone()) else {
            return;
        };
        let at = mixer_worker(&channel, self.shared.remotes.len());
        if at == self.index {
            self.mix_here(route, &packet, minus);
        } else if self.shared.remotes[at]
            .try_send(Remote::MixIn {
                channel,
                packet,
                minus,
            })
            .is_err()
        {
            self.metrics.drop(DropReason::QueueFull, 1);
        }
    }

    fn mix_here(&mut self, route: RouteId, packet: &Packet, minus: bool) {
        // Every worker learns who is on stage and whether the mixer runs: a packet that raced
        // a switch back to forwarding is not mixed.
        let Some(gain) = self.router.get(route).filter(|r| r.mix.mixer).map(|r| {
            let speaker = r.publishers.iter().find(|p| p.key == packet.publisher);
            speaker.map_or(1000, |p| p.gain_permille)
        }) else {
            return;
        };
        if !self.mixing.is_mixing(route) {
            // The mixer holds the route while it runs.
            self.router.hold(route);
        }
        let arrival = packet.arrived.saturating_duration_since(self.epoch);
        let capture = packet.capture.map(|c| c.capture_time);
        self.mixing.push(
            route,
            packet.publisher,
            gain,
            minus,
            packet.seq,
            packet.time,
            arrival,
            &packet.data,
            capture,
            Instant::now(),
        );
    }

    /// Runs the mixer ticks due and sends what they made: the mix to every listener (here and
    /// on the other workers), each speaker's mix-minus to that speaker.
    fn mix_ticks(&mut self, now: Instant) {
        let mut outs = std::mem::take(&mut self.mix_out);
        let ticks = self.mixing.counts.ticks;
        self.mixing.tick_due(now, &mut outs);
        let ran = self.mixing.counts.ticks - ticks;
        if ran > 0 {
            let spent = now.elapsed() / ran as u32;
            self.metrics.mixer_tick(spent);
        }
        for out in outs.drain(..) {
            let capture = out.capture.map(|capture_time| AbsCaptureTime {
                capture_time,
                clock_offset: None,
            });
            let packet = |data: Arc<[u8]>| Packet {
                publisher: MIX_KEY,
                capture,
                level: Some((-(out.level.min(127) as i8), out.level < 50)),
                time: out.time,
                seq: 0,
                marker: false,
                arrived: now,
                data,
            };
            let total = packet(out.total.clone());
            self.send_to_other_workers(out.route, &total);
            self.fan_out(out.route, &total);
            let others = self.router.plan(out.route).map_or(0, |p| p.others);
            for (speaker, data) in &out.minus {
                let minus = packet(data.clone());
                if self.write(*speaker, &minus) == Written::NotHere {
                    // The speaker lives on another worker (with listeners in the channel).
                    for (w, tx) in self.shared.remotes.iter().enumerate() {
                        if others & (1u64 << (w % 64)) != 0 {
                            let msg = Remote::MixMinus {
                                speaker: *speaker,
                                packet: minus.clone(),
                            };
                            if tx.try_send(msg).is_err() {
                                self.metrics.drop(DropReason::QueueFull, 1);
                            }
                        }
                    }
                }
            }
        }
        self.mix_out = outs;
    }

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
