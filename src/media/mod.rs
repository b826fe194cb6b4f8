//! The media plane: WebRTC (str0m) peers on media workers, one UDP port for all of them.
//!
//! - `MediaPlane` — the handle the control plane uses: offers, answers, removals, routes.
//! - `worker`     — one thread per core owning a socket (same port, SO_REUSEPORT) and the
//!   `Rtc` of each peer placed on it; forwards host audio to listeners.
//! - `slots`      — a listener's receive slots and timestamp continuity (plain logic).
//! - `error`      — `MediaError`, what the handle reports.
//! - `types`      — what the handle and the workers exchange: `PeerSpec`, commands, `MediaError`.
//! - `sdp`        — offer inspection (send directions) before anything is negotiated.
//! - `udp`        — datagrams in batches (`sendmmsg`, `recvmmsg`).

mod egress;
pub mod error;
pub mod record;
mod rtp_out;
pub mod sdp;
pub mod slots;
mod srtp;
mod tcp;
mod types;
pub mod udp;
mod worker;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

pub use crate::channel::{Mixdown, Publisher};
use crate::config::MediaConfig;
use crate::ids::ChannelId;
pub use crate::ids::{peer_key, PeerKey};
pub use crate::messages::{FirstAudio, SpeakerLevel};
use crate::protocol::AudioMode;
use types::Command;
pub use types::{MediaError, PeerSpec, PlaybackDone};

/// Takes one of `max` places in `count`; false when all are taken.
fn take_place(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}
use worker::Shared;

pub struct MediaPlane {
    commands: Vec<mpsc::Sender<Command>>,
    /// Per worker, commands that must not be lost and found its queue full, in order. While
    /// one is waiting, every later command for that worker waits behind it, so a removal can
    /// never overtake what was sent before it. Bounded by what must not be lost: one removal
    /// and a few permission or route changes per peer and channel.
    backlogs: Vec<Arc<std::sync::Mutex<std::collections::VecDeque<Command>>>>,
    shared: Arc<Shared>,
    owners: DashMap<PeerKey, usize>,
    next: AtomicUsize,
    addr: SocketAddr,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    limits: MediaConfig,
    /// Recordings and playbacks running, each held to its configured maximum.
    recordings: Arc<AtomicUsize>,
    playbacks: Arc<AtomicUsize>,
}

impl MediaPlane {
    /// Binds the media port and starts the workers.
    pub fn start(
        config: &MediaConfig,
        metrics: &crate::metrics::Metrics,
    ) -> std::io::Result<Arc<Self>> {
        init_crypto();
        // Workers are tracked as bits of a u64 per channel, hence the cap.
        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
        .min(64);
        let wanted = SocketAddr::new(config.bind_ip, config.udp_port);
        if config.udp_port != 0 {
            ensure_port_free(wanted)?;
        }
        let first = bind(wanted, config)?;
        let bound = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(bind(bound, config)?);
        }
        let announced = SocketAddr::new(announced_ip(config), bound.port());
        let tcp = match config.ice_tcp {
            true => Some(bind_tcp(config, bound)?),
            false => None,
        };
        let announced_tcp = match &tcp {
            Some(l) => Some(SocketAddr::new(announced.ip(), l.local_addr()?.port())),
            None => None,
        };
        let mut commands = Vec::new();
        let mut command_rxs = Vec::new();
        let mut remotes = Vec::new();
        let mut remote_rxs = Vec::new();
        for _ in 0..workers {
            // Control messages are few; 1,024 absorbs a burst of joins.
            let (tx, rx) = mpsc::channel(1024);
            commands.push(tx);
            command_rxs.push(rx);
            let (tx, rx) = mpsc::channel(config.worker_queue);
            remotes.push(tx);
            remote_rxs.push(rx);
        }
        let shared = Arc::new(Shared {
            stopping: std::sync::atomic::AtomicBool::new(false),
            ufrags: DashMap::new(),
            remotes,
            masks: Arc::default(),
        });
        let mut threads = Vec::new();
        for (index, ((socket, commands), remotes)) in sockets
            .into_iter()
            .zip(command_rxs)
            .zip(remote_rxs)
            .enumerate()
        {
            let shared = shared.clone();
            let metrics = metrics.clone();
            let settings = worker::Settings {
                announced,
                announced_tcp,
                max_slots: config.max_slots,
                mix: amphi_core::mix::codec::EncoderSettings {
                    bitrate_bps: config.mix_bitrate,
                    complexity: config.mix_complexity,
                    ..Default::default()
                },
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("amphi-media-{index}"))
                    .spawn(move || {
                        let _entered = metrics.enter();
                        worker::run(index, socket, settings, shared, commands, remotes)
                    })?,
            );
        }
        if let Some(listener) = tcp {
            let (shared, metrics) = (shared.clone(), metrics.clone());
            let max = config.max_peers;
            threads.push(
                std::thread::Builder::new()
                    .name("amphi-media-tcp".into())
                    .spawn(move || tcp::run(listener, shared, max, metrics))?,
            );
        }
        tracing::info!(%announced, ?announced_tcp, workers, "media workers listening on UDP {bound}");
        Ok(Arc::new(Self {
            backlogs: commands.iter().map(|_| Arc::default()).collect(),
            commands,
            shared,
            owners: DashMap::new(),
            next: AtomicUsize::new(0),
            addr: announced,
            threads: std::sync::Mutex::new(threads),
            limits: config.clone(),
            recordings: Arc::default(),
            playbacks: Arc::default(),
        }))
    }

    /// The address announced in ICE candidates.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn worker_for(&self, key: PeerKey) -> usize {
        *self
            .owners
            .entry(key)
            .or_insert_with(|| self.next.fetch_add(1, Ordering::Relaxed) % self.commands.len())
    }

    fn try_send(&self, worker: usize, cmd: Command) -> Result<(), MediaError> {
        let backlog = self.backlogs[worker]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !backlog.is_empty() {
            // Going first would overtake commands queued before this one.
            return Err(MediaError::Busy);
        }
        self.commands[worker]
            .try_send(cmd)
            .map_err(|_| MediaError::Busy)
    }

    /// Sends a command that must not be lost, waiting for room instead of dropping it, and
    /// never ahead of commands sent before it.
    fn send_reliably(&self, worker: usize, cmd: Command) {
        let mut backlog = self.backlogs[worker]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !backlog.is_empty() {
            backlog.push_back(cmd);
            return;
        }
        let Err(mpsc::error::TrySendError::Full(cmd)) = self.commands[worker].try_send(cmd) else {
            return;
        };
        backlog.push_back(cmd);
        drop(backlog);
        let tx = self.commands[worker].clone();
        let backlog = self.backlogs[worker].clone();
        actix_rt::spawn(async move {
            // One drainer per backlog: it exists from the first command queued until empty.
            loop {
                let Ok(permit) = tx.reserve().await else {
                    return;
                };
                let mut queue = backlog.lock().unwrap_or_else(|e| e.into_inner());
                let Some(cmd) = queue.pop_front() else {
                    return;
                };
                permit.send(cmd);
                if queue.is_empty() {
                    return;
                }
            }
        });
    }

    /// Creates the peer (or renegotiates it) from a client offer. The command is queued
    /// before this returns, so later commands for the same peer (a removal, a permission
    /// change) reach its worker after it; the receiver resolves to the answer SDP.
    pub fn offer(
        &self,
        spec: PeerSpec,
        sdp: String,
    ) -> Result<oneshot::Receiver<Result<String, MediaError>>, MediaError> {
        let shape = sdp::check_offer(&sdp, spec.can_publish, spec.video)?;
        // A new peer past capacity is refused; a known one may always renegotiate. The count
        // is of peers the plane knows, so the limit may be passed by the few offers racing it.
        if !self.owners.contains_key(&spec.key) && self.owners.len() >= self.limits.max_peers {
            crate::metrics::admission_refused("peers");
            return Err(MediaError::Full(self.limits.max_peers));
        }
        let worker = self.worker_for(spec.key);
        let (reply, rx) = oneshot::channel();
        self.try_send(
            worker,
            Command::Offer {
                spec: Box::new(spec),
                sdp,
                sends: shape.sending + shape.video_sending > 0,
                reply,
            },
        )?;
        Ok(rx)
    }

    pub async fn answer(&self, key: PeerKey, sdp: String) -> Result<(), MediaError> {
        let worker = *self.owners.get(&key).ok_or(MediaError::NoPeer)?;
        let (reply, rx) = oneshot::channel();
        self.try_send(worker, Command::Answer { key, sdp, reply })?;
        rx.await.map_err(|_| MediaError::Busy)?
    }

    pub fn candidate(&self, key: PeerKey, candidate: String) -> Result<(), MediaError> {
        let worker = *self.owners.get(&key).ok_or(MediaError::NoPeer)?;
        self.try_send(worker, Command::Candidate { key, candidate })
    }

    pub fn permissions(&self, key: PeerKey, can_publish: bool, can_subscribe: bool) {
        if let Some(worker) = self.owners.get(&key).map(|w| *w) {
            self.send_reliably(
                worker,
                Command::Permissions {
                    key,
                    can_publish,
                    can_subscribe,
                },
            );
        }
    }

    pub fn remove(&self, key: PeerKey) {
        if let Some((_, worker)) = self.owners.remove(&key) {
            self.send_reliably(worker, Command::Remove { key });
        }
    }

    /// What a peer receives changed (`set_audio`).
    pub fn audio(&self, key: PeerKey, audio: AudioMode) {
        if let Some(worker) = self.owners.get(&key).map(|w| *w) {
            self.send_reliably(worker, Command::Audio { key, audio });
        }
    }

    /// Tells every worker who is on stage in `channel`, and how its audio is mixed.
    pub fn routes(
        &self,
        channel: &ChannelId,
        publishers: Arc<[Publisher]>,
        mix: Mixdown,
        levels: actix::Recipient<SpeakerLevel>,
    ) {
        for w in 0..self.commands.len() {
            self.send_reliably(
                w,
                Command::Routes {
                    channel: channel.clone(),
                    publishers: publishers.clone(),
                    mix,
                    levels: levels.clone(),
                },
            );
        }
    }

    /// Starts recording `channel`'s mix to `file` (created by the caller, named `name`);
    /// `done` hears how it ended. Refused when `media.max_recordings` are running.
    pub fn record(
        &self,
        channel: &ChannelId,
        name: &str,
        file: std::fs::File,
        done: record::RecordingDone,
    ) -> Result<(), MediaError> {
        if !take_place(&self.recordings, self.limits.max_recordings) {
            return Err(MediaError::TooMany(
                "recordings",
                self.limits.max_recordings,
            ));
        }
        let limits = record::RecordLimits {
            max_bytes: self.limits.max_recording_bytes,
            max_duration: self.limits.max_recording_duration,
        };
        let recorder = record::Recorder::start(name, file, limits, self.recordings.clone(), done)
            .inspect_err(|_| {
                self.recordings.fetch_sub(1, Ordering::AcqRel);
            })
            .map_err(|e| MediaError::Io(e.to_string()))?;
        let at = self.mixer_worker(channel);
        self.send_reliably(
            at,
            Command::Record {
                channel: channel.clone(),
                recorder: Some(recorder),
            },
        );
        Ok(())
    }

    /// Stops recording `channel`'s mix; the file is finished and `done` hears of it.
    pub fn stop_recording(&self, channel: &ChannelId) {
        let at = self.mixer_worker(channel);
        self.send_reliably(
            at,
            Command::Record {
                channel: channel.clone(),
                recorder: None,
            },
        );
    }

    /// Plays `packets` (20 ms Opus frames) into `channel` as the speaker `key`, which the
    /// channel puts on stage. `done` hears when it ends. Refused when `media.max_playbacks`
    /// are running.
    pub fn play(
        &self,
        channel: &ChannelId,
        key: PeerKey,
        packets: Arc<[Arc<[u8]>]>,
        done: PlaybackDone,
    ) -> Result<(), MediaError> {
        if !take_place(&self.playbacks, self.limits.max_playbacks) {
            return Err(MediaError::TooMany("playbacks", self.limits.max_playbacks));
        }
        let playbacks = self.playbacks.clone();
        let done: PlaybackDone = Box::new(move |end| {
            playbacks.fetch_sub(1, Ordering::AcqRel);
            done(end);
        });
        let at = self.mixer_worker(channel);
        self.send_reliably(
            at,
            Command::Play {
                channel: channel.clone(),
                play: Some((key, packets, done)),
            },
        );
        Ok(())
    }

    pub fn stop_playing(&self, channel: &ChannelId) {
        let at = self.mixer_worker(channel);
        self.send_reliably(
            at,
            Command::Play {
                channel: channel.clone(),
                play: None,
            },
        );
    }

    fn mixer_worker(&self, channel: &ChannelId) -> usize {
        worker::mixer_worker(channel, self.commands.len())
    }

    /// Starts or stops forwarding the video of `channel`'s members (a call's media).
    pub fn video(&self, channel: &ChannelId, on: bool) {
        for w in 0..self.commands.len() {
            self.send_reliably(
                w,
                Command::Video {
                    channel: channel.clone(),
                    on,
                },
            );
        }
    }

    pub fn channel_closed(&self, channel: &ChannelId) {
        for w in 0..self.commands.len() {
            self.send_reliably(
                w,
                Command::ChannelClosed {
                    channel: channel.clone(),
                },
            );
        }
    }

    /// Stops the workers and waits for their threads.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        for tx in &self.commands {
            let _ = tx.try_send(Command::Stop);
        }
        let threads = std::mem::take(&mut *self.threads.lock().expect("not poisoned"));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for MediaPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn init_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| crate::dtls::provider().install_process_default());
}

/// Every worker binds the port with SO_REUSEPORT, which would also let a second server (or
/// anything else that asks for SO_REUSEPORT) share it silently: the kernel would then split
/// each client's datagrams between two servers by address hash, and calls would hang at
/// "connecting". A plain bind first proves nobody else holds the port.
fn ensure_port_free(addr: SocketAddr) -> std::io::Result<()> {
    match UdpSocket::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(std::io::Error::new(
            e.kind(),
            format!(
                "UDP port {} on {} is already in use by another process (another amphi \
                 server?); stop it or choose another port with --udp-port or media.udp_port",
                addr.port(),
                addr.ip()
            ),
        )),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("cannot bind UDP port {} on {}: {e}", addr.port(), addr.ip()),
        )),
    }
}

/// A non-blocking UDP socket with big kernel buffers, shareable by port with the other workers.
fn bind(addr: SocketAddr, config: &MediaConfig) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    let want = config.socket_buffer_bytes;
    let _ = socket.set_recv_buffer_size(want);
    let _ = socket.set_send_buffer_size(want);
    // Linux reports double the requested size (bookkeeping overhead) when it grants it.
    let (rcv, snd) = (socket.recv_buffer_size()?, socket.send_buffer_size()?);
    if rcv < want || snd < want {
        tracing::warn!(
            requested = want,
            receive = rcv,
            send = snd,
            "the kernel capped the media socket buffers; bursts may drop packets \
             (raise net.core.rmem_max and net.core.wmem_max)"
        );
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The address put in ICE candidates: `public_ip` when set; for a socket bound to every
/// interface, the address this machine's default route leaves by (an unspecified address
/// reaches no one); otherwise the bound address.
fn announced_ip(config: &MediaConfig) -> std::net::IpAddr {
    if let Some(ip) = config.public_ip {
        return ip;
    }
    if !config.bind_ip.is_unspecified() {
        return config.bind_ip;
    }
    match crate::netif::primary_address() {
        Some(ip) => {
            tracing::info!(%ip, "media.public_ip not set: announcing this machine's primary address");
            ip
        }
        None => {
            tracing::warn!("media.bind_ip is unspecified and no address besides loopback was found: announcing loopback; set media.public_ip");
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
    }
}

/// The ICE-TCP listener: on the UDP port's number where it is free. A configured port taken
/// by another process is an error at start; a port the system picked (tests) may differ.
fn bind_tcp(config: &MediaConfig, udp: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = match std::net::TcpListener::bind(udp) {
        Ok(l) => l,
        Err(_) if config.udp_port == 0 => {
            std::net::TcpListener::bind(SocketAddr::new(udp.ip(), 0))?
        }
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on TCP {udp} for ICE over TCP: {e}; free the port or set \
                     media.ice_tcp = false to serve media over UDP only"
                ),
            ))
        }
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}
