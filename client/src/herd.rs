//! Many listening peers driven by one thread: a UDP socket each (the server tells peers apart
//! by address), one poll for all of them, str0m in RTP mode (packets counted, not decoded),
//! one queue of deadlines. A load generator that spends one task and one wake-up per packet
//! per listener measures itself, not the server; a herd spends a few microseconds per packet.
//!
//! Signalling stays async: [`Herd::join`] negotiates on the caller's task, then hands the peer
//! to the herd's thread; a small task per peer answers the server's renegotiation offers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use amphi_core::deadlines::{Deadline, Deadlines};
use amphi_proto::protocol::Request;
use hdrhistogram::Histogram;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::Value;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::rtp::{Extension, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::oneshot;

use crate::signal::{ClientError, Signal};
use crate::stats::{micros_histogram, record_micros, slot_mut, Arrival, Meter};

mod nice;
mod stamp;

pub use nice::yield_to_speakers;

const WAKER: Token = Token(usize::MAX);
/// Commands waiting for the herd's thread: joins arrive at a few hundred per second at most.
const COMMAND_QUEUE: usize = 4096;
/// Datagrams read from one socket per readiness event before the others get a turn.
const READ_BATCH: usize = 32;

enum Cmd {
    Add(Box<Member>),
    /// A server offer for member `id`; the reply is the answer SDP.
    Offer {
        id: usize,
        sdp: String,
        reply: oneshot::Sender<Option<String>>,
    },
    Close(usize),
    /// Read what is queued on member `id`'s socket, then answer.
    Settle {
        id: usize,
        done: oneshot::Sender<()>,
    },
    Stop,
}

struct Member {
    id: usize,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    meter: Meter,
    deadline: Deadline,
    /// Receive streams seen so far and their m-lines.
    mids: Vec<(Ssrc, Mid)>,
    /// When the datagram being handled reached the socket (the kernel's stamp), on both
    /// clocks: latency is against the sender's wall clock, jitter and first audio against
    /// the herd's monotonic one.
    arrived: Option<(SystemTime, Instant)>,
}

/// Listening peers on one thread. Dropping it stops the thread and closes its peers.
pub struct Herd {
    commands: SyncSender<Cmd>,
    waker: Arc<Waker>,
    queue: Arc<Mutex<Histogram<u64>>>,
    next: AtomicUsize,
    thread: Option<JoinHandle<()>>,
}

/// One peer of a herd: its stats (as an `AudioPeer`'s), and a way to leave.
pub struct HerdPeer {
    meter: Meter,
    id: usize,
    commands: SyncSender<Cmd>,
    waker: Arc<Waker>,
    renegotiation: tokio::task::JoinHandle<()>,
}

impl std::ops::Deref for HerdPeer {
    type Target = Meter;

    fn deref(&self) -> &Meter {
        &self.meter
    }
}

impl HerdPeer {
    /// Returns once the herd has read every datagram that reached this peer's socket before
    /// the call, so its stats hold all that arrived by then, however far behind the herd's
    /// thread was running.
    pub async fn settle(&self) {
        let (done, wait) = oneshot::channel();
        if self
            .commands
            .try_send(Cmd::Settle { id: self.id, done })
            .is_ok()
        {
            let _ = self.waker.wake();
            let _ = wait.await;
        }
    }

    /// Leaves: the herd disconnects the peer (the server sees it go) and forgets it.
    pub fn close(self) {
        self.renegotiation.abort();
        let _ = self.commands.try_send(Cmd::Close(self.id));
        let _ = self.waker.wake();
    }
}

impl Herd {
    /// Starts the herd's thread, named `name`.
    pub fn start(name: &str) -> std::io::Result<Herd> {
        str0m::crypto::from_feature_flags().install_process_default();
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, rx) = sync_channel(COMMAND_QUEUE);
        let queue = Arc::new(Mutex::new(micros_histogram()));
        let shared = queue.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                nice::yield_to_speakers();
                Driver::new(poll, rx, shared).run()
            })?;
        Ok(Herd {
            commands,
            waker,
            queue,
            next: AtomicUsize::new(0),
            thread: Some(thread),
        })
    }

    /// How long datagrams waited between reaching a peer's socket and the herd's thread
    /// reading them, in µs, since the start (published every [`QUEUE_PUBLISH`]). A listener
    /// on its own device has no such wait; the herd's stands for the load generator's limit.
    pub fn queue_delay(&self) -> Histogram<u64> {
        self.queue.lock().expect("not poisoned").clone()
    }

    fn send(&self, cmd: Cmd) -> Result<(), ClientError> {
        match self.commands.try_send(cmd) {
            Ok(()) => {
                let _ = self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(ClientError::Media("herd queue full".into())),
            Err(TrySendError::Disconnected(_)) => Err(ClientError::Media("herd stopped".into())),
        }
    }

    /// Negotiates a listening peer with `slots` receive slots for `channel` (already joined
    /// on `signal`) and adds it to the herd.
    pub async fn join(
        &self,
        signal: &Signal,
        channel: &str,
        slots: usize,
    ) -> Result<HerdPeer, ClientError> {
        let media_err = |e: &dyn std::fmt::Display| ClientError::Media(e.to_string());
        let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| media_err(&e))?;
        std_socket
            .set_nonblocking(true)
            .map_err(|e| media_err(&e))?;
        stamp::enable(&std_socket).map_err(|e| media_err(&e))?;
        let local = std_socket.local_addr().map_err(|e| media_err(&e))?;
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crate::crypto::provider())
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .set_extension(5, Extension::AbsoluteCaptureTime)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| media_err(&e))?);
        let mut api = rtc.sdp_api();
        for _ in 0..slots.max(1) {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| ClientError::Media("nothing to offer".into()))?;
        let mut events = signal.route_media(channel);
        let reply = signal
            .send(&Request::MediaOffer {
                channel: channel.into(),
                sdp: offer.to_sdp_string(),
            })
            .await?;
        let answer = SdpAnswer::from_sdp_string(reply["sdp"].as_str().unwrap_or_default())
            .map_err(|e| media_err(&e))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| media_err(&e))?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let meter = Meter::default();
        self.send(Cmd::Add(Box::new(Member {
            id,
            rtc,
            socket: UdpSocket::from_std(std_socket),
            local,
            meter: meter.clone(),
            deadline: Deadline::default(),
            mids: Vec::new(),
            arrived: None,
        })))?;
        let (commands, waker) = (self.commands.clone(), self.waker.clone());
        let (signal, channel, track_meter) = (signal.clone(), channel.to_string(), meter.clone());
        let renegotiation = tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                renegotiate(&ev, id, &commands, &waker, &signal, &channel, &track_meter).await;
            }
        });
        Ok(HerdPeer {
            meter,
            id,
            commands: self.commands.clone(),
            waker: self.waker.clone(),
            renegotiation,
        })
    }
}

/// A media event for a herd peer: the server's offers are answered by the herd's thread,
/// `track` events name what each slot carries.
async fn renegotiate(
    ev: &Value,
    id: usize,
    commands: &SyncSender<Cmd>,
    waker: &Waker,
    signal: &Signal,
    channel: &str,
    meter: &Meter,
) {
    match ev["event"].as_str() {
        Some("media_offer") => {
            let (reply, answer) = oneshot::channel();
            let sdp = ev["sdp"].as_str().unwrap_or_default().to_string();
            if commands.try_send(Cmd::Offer { id, sdp, reply }).is_err() {
                return;
            }
            let _ = waker.wake();
            if let Ok(Some(sdp)) = answer.await {
                let _ = signal
                    .send(&Request::MediaAnswer {
                        channel: channel.into(),
                        sdp,
                    })
                    .await;
            }
        }
        Some("track") => {
            let Some(mid) = ev["mid"].as_str() else {
                return;
            };
            let mut s = meter.0.lock().expect("not poisoned");
            slot_mut(&mut s, Mid::from(mid)).participant =
                ev["participant"].as_str().map(str::to_string);
        }
        _ => {}
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        // A full queue cannot stop the thread: it also ends when every sender is gone.
        let _ = self.commands.try_send(Cmd::Stop);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Driver {
    poll: Poll,
    commands: Receiver<Cmd>,
    members: HashMap<usize, Member>,
    deadlines: Deadlines<usize>,
    due: Vec<usize>,
    epoch: Instant,
    /// Socket-to-thread waits since the last publish, and where they are published.
    queue: Histogram<u64>,
    shared: Arc<Mutex<Histogram<u64>>>,
    published: Instant,
}

/// How often a herd adds its socket-to-thread waits to what [`Herd::queue_delay`] returns.
pub const QUEUE_PUBLISH: Duration = Duration::from_millis(250);

impl Driver {
    fn new(poll: Poll, commands: Receiver<Cmd>, shared: Arc<Mutex<Histogram<u64>>>) -> Self {
        Self {
            poll,
            commands,
            members: HashMap::new(),
            deadlines: Deadlines::default(),
            due: Vec::new(),
            epoch: Instant::now(),
            queue: micros_histogram(),
            shared,
            published: Instant::now(),
        }
    }

    fn publish(&mut self, now: Instant) {
        if now < self.published + QUEUE_PUBLISH {
            return;
        }
        self.published = now;
        self.flush();
    }

    fn flush(&mut self) {
        let mut shared = self.shared.lock().expect("not poisoned");
        let _ = shared.add(&self.queue);
        self.queue.reset();
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            self.publish(now);
            self.timeouts(now);
            let wait = self
                .deadlines
                .next()
                .map(|t| t.saturating_duration_since(Instant::now()));
            if self.poll.poll(&mut events, wait).is_err() {
                continue;
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    if !self.commands() {
                        self.close_all();
                        return;
                    }
                    continue;
                }
                self.read(ev.token().0, &mut buf, READ_BATCH);
            }
        }
    }

    /// Reads up to `limit` datagrams queued on member `id`'s socket.
    fn read(&mut self, id: usize, buf: &mut [u8], limit: usize) {
        for _ in 0..limit {
            let Some(m) = self.members.get_mut(&id) else {
                break;
            };
            match stamp::recv(&m.socket, buf) {
                Ok((n, source, arrived)) => {
                    m.arrived = arrived.map(|a| {
                        let wait = SystemTime::now().duration_since(a).unwrap_or_default();
                        record_micros(&mut self.queue, wait);
                        (
                            a,
                            Instant::now()
                                .checked_sub(wait)
                                .unwrap_or_else(Instant::now),
                        )
                    });
                    m.input(source, &buf[..n]);
                    self.drain(id);
                }
                Err(_) => break,
            }
        }
    }

    /// Handles queued commands; false when the herd stops.
    fn commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Cmd::Add(mut m)) => {
                    let id = m.id;
                    if self
                        .poll
                        .registry()
                        .register(&mut m.socket, Token(id), Interest::READABLE)
                        .is_ok()
                    {
                        self.members.insert(id, *m);
                        self.drain(id);
                    }
                }
                Ok(Cmd::Offer { id, sdp, reply }) => {
                    let answer = self.members.get_mut(&id).and_then(|m| {
                        let offer = SdpOffer::from_sdp_string(&sdp).ok()?;
                        m.rtc.sdp_api().accept_offer(offer).ok()
                    });
                    let _ = reply.send(answer.map(|a| a.to_sdp_string()));
                    self.drain(id);
                }
                Ok(Cmd::Close(id)) => {
                    if let Some(m) = self.members.get_mut(&id) {
                        m.rtc.disconnect();
                    }
                    self.drain(id);
                }
                Ok(Cmd::Settle { id, done }) => {
                    // A socket's queue is bounded by its receive buffer.
                    let mut buf = [0u8; 2048];
                    self.read(id, &mut buf, usize::MAX);
                    let _ = done.send(());
                }
                Ok(Cmd::Stop) => return false,
                Err(std::sync::mpsc::TryRecvError::Empty) => return true,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn timeouts(&mut self, now: Instant) {
        while let Some((at, id)) = self.deadlines.pop_due(now) {
            if let Some(m) = self.members.get_mut(&id) {
                if self.deadlines.fire(id, &mut m.deadline, at, now) {
                    self.due.push(id);
                }
            }
        }
        let mut due = std::mem::take(&mut self.due);
        for id in due.drain(..) {
            if let Some(m) = self.members.get_mut(&id) {
                let _ = m.rtc.handle_input(Input::Timeout(now));
                self.drain(id);
            }
        }
        self.due = due;
    }

    /// str0m's contract: after every input, poll until it asks for a timeout.
    fn drain(&mut self, id: usize) {
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let next = loop {
            if !m.rtc.is_alive() {
                break None;
            }
            match m.rtc.poll_output() {
                Ok(Output::Timeout(t)) => break Some(t),
                Ok(Output::Transmit(t)) => {
                    let _ = m.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => m.event(e, self.epoch),
                Err(_) => break None,
            }
        };
        match next {
            Some(t) => self.deadlines.set(id, &mut m.deadline, t),
            None => {
                if let Some(mut m) = self.members.remove(&id) {
                    m.meter.0.lock().expect("not poisoned").connected = false;
                    let _ = self.poll.registry().deregister(&mut m.socket);
                }
            }
        }
    }

    fn close_all(&mut self) {
        self.flush();
        let ids: Vec<usize> = self.members.keys().copied().collect();
        for id in ids {
            if let Some(m) = self.members.get_mut(&id) {
                m.rtc.disconnect();
            }
            self.drain(id);
        }
    }
}

impl Member {
    fn input(&mut self, source: SocketAddr, data: &[u8]) {
        crate::transport::receive(&mut self.rtc, self.local, source, data);
    }

    fn mid_of(&mut self, ssrc: Ssrc) -> Option<Mid> {
        if let Some((_, mid)) = self.mids.iter().find(|(s, _)| *s == ssrc) {
            return Some(*mid);
        }
        let mid = self.rtc.direct_api().stream_rx(&ssrc)?.mid();
        self.mids.push((ssrc, mid));
        Some(mid)
    }

    fn event(&mut self, e: Event, epoch: Instant) {
        match e {
            Event::Connected => {
                let mut s = self.meter.0.lock().expect("not poisoned");
                s.connected = true;
                s.connected_at = Some(Instant::now());
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.meter.0.lock().expect("not poisoned").connected = false;
            }
            Event::RtpPacket(p) => {
                let Some(mid) = self.mid_of(p.header.ssrc) else {
                    return;
                };
                // Measured to the kernel's arrival stamp: the herd's own queue is not the
                // listener's (see `stamp`).
                let (wall, at) = self
                    .arrived
                    .unwrap_or_else(|| (SystemTime::now(), p.timestamp));
                let latency = p
                    .header
                    .ext_vals
                    .abs_capture_time
                    .and_then(|c| wall.duration_since(c.capture_time).ok());
                let seq = *p.seq_no;
                let arrival = Arrival {
                    mid,
                    seq: (seq, seq),
                    media_seconds: p.time.as_seconds(),
                    latency,
                    at,
                };
                self.meter
                    .0
                    .lock()
                    .expect("not poisoned")
                    .record(&arrival, epoch);
            }
            _ => {}
        }
    }
}
