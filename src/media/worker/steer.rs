//! Which peer a datagram belongs to, and on which worker: a worker's demultiplexing tables,
//! without sockets.
//!
//! Every worker's socket shares the port (SO_REUSEPORT) and the kernel picks one by a hash of
//! the 4-tuple, which nobody knows when a peer is placed (at its offer, before any packet).
//! So a peer starts on its *home* worker (chosen by the control plane) and, when its
//! nominated flow (a STUN request with USE-CANDIDATE) turns out to land on another worker,
//! its `Rtc` moves there once; from then on the kernel delivers its packets to the worker that
//! owns it and no datagram changes hands. Until then, datagrams read by the wrong worker are
//! handed over (counted in `amphi_media_handovers_total`).
//!
//! The control plane keeps addressing a moved peer's commands to its home worker, which
//! passes them on behind the move itself on the same queue, so they arrive in the order they
//! were sent.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::ids::PeerKey;
use amphi_core::stun::binding_request as stun_request;

/// Flows remembered as belonging to another worker: about one per peer not yet moved, each
/// forgotten after `FOREIGN_FLOW_IDLE` without a datagram. Past this count new flows are still
/// handed over (their STUN requests name the peer), just not remembered.
const MAX_FOREIGN_FLOWS: usize = 65_536;
/// A remembered foreign flow unused this long is forgotten.
const FOREIGN_FLOW_IDLE: Duration = Duration::from_secs(30);

/// Where a datagram goes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Steer {
    /// To this worker's peer.
    Local(PeerKey),
    /// To the worker owning its peer.
    HandOver(usize),
    /// Nobody's: dropped and counted.
    Unknown,
}

/// A flow whose peer lives on another worker.
struct ForeignFlow {
    worker: usize,
    used: Instant,
}

/// One worker's tables. `owner_of` (a ufrag's worker, shared by all workers) is passed in.
pub(super) struct Demux {
    index: usize,
    by_addr: HashMap<SocketAddr, PeerKey>,
    by_ufrag: HashMap<String, PeerKey>,
    /// Each local peer's flows (usually one), so removing a peer scans nothing.
    addrs: HashMap<PeerKey, Vec<SocketAddr>>,
    foreign: HashMap<SocketAddr, ForeignFlow>,
    /// Peers whose home is here but that moved, and where to.
    moved: HashMap<PeerKey, usize>,
}

impl Demux {
    pub(super) fn new(index: usize) -> Self {
        Self {
            index,
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            addrs: HashMap::new(),
            foreign: HashMap::new(),
            moved: HashMap::new(),
        }
    }

    /// A peer created here (or moved here, with the flows it brings).
    pub(super) fn add(&mut self, key: PeerKey, ufrag: &str, addrs: Vec<SocketAddr>) {
        for addr in &addrs {
            self.foreign.remove(addr);
            self.by_addr.insert(*addr, key);
        }
        self.by_ufrag.insert(ufrag.to_string(), key);
        self.addrs.insert(key, addrs);
        // Back home (created again after it left): its commands are handled here again.
        self.moved.remove(&key);
    }

    /// Forgets a local peer; returns its flows, nominated one first when it moves.
    pub(super) fn remove(&mut self, key: PeerKey, ufrag: &str) -> Vec<SocketAddr> {
        self.by_ufrag.remove(ufrag);
        let addrs = self.addrs.remove(&key).unwrap_or_default();
        for addr in &addrs {
            if self.by_addr.get(addr) == Some(&key) {
                self.by_addr.remove(addr);
            }
        }
        addrs
    }

    /// A local peer leaves for worker `to` by its flow `flow`. Datagrams of its flows still
    /// queued here for it follow it there.
    pub(super) fn moved_away(
        &mut self,
        key: PeerKey,
        ufrag: &str,
        to: usize,
        flow: SocketAddr,
        now: Instant,
    ) -> Vec<SocketAddr> {
        let mut addrs = self.remove(key, ufrag);
        addrs.retain(|a| *a != flow);
        addrs.insert(0, flow);
        for addr in &addrs {
            self.foreign.insert(
                *addr,
                ForeignFlow {
                    worker: to,
                    used: now,
                },
            );
        }
        self.moved.insert(key, to);
        addrs
    }

    /// The worker a command for `key` must be passed to, if it moved away from here.
    pub(super) fn moved_to(&mut self, key: PeerKey, removing: bool) -> Option<usize> {
        if removing {
            self.moved.remove(&key)
        } else {
            self.moved.get(&key).copied()
        }
    }

    fn learn(&mut self, key: PeerKey, source: SocketAddr) {
        let addrs = self.addrs.entry(key).or_default();
        if !addrs.contains(&source) {
            addrs.push(source);
        }
        self.by_addr.insert(source, key);
    }

    /// The local peer whose server ufrag is `ufrag`.
    pub(super) fn local_ufrag(&self, ufrag: &str) -> Option<PeerKey> {
        self.by_ufrag.get(ufrag).copied()
    }

    /// A datagram this worker's socket read.
    pub(super) fn read(
        &mut self,
        source: SocketAddr,
        data: &[u8],
        now: Instant,
        owner_of: impl Fn(&str) -> Option<usize>,
    ) -> Steer {
        if let Some(&key) = self.by_addr.get(&source) {
            return Steer::Local(key);
        }
        // A STUN request names its peer: trust it over a remembered foreign flow, whose
        // address may since have been reused by another client.
        let Some(stun) = stun_request(data) else {
            return match self.foreign.get_mut(&source) {
                Some(flow) => {
                    flow.used = now;
                    Steer::HandOver(flow.worker)
                }
                None => Steer::Unknown,
            };
        };
        if let Some(&key) = self.by_ufrag.get(stun.ufrag) {
            self.learn(key, source);
            return Steer::Local(key);
        }
        match owner_of(stun.ufrag) {
            Some(worker) if worker != self.index => {
                if self.foreign.len() < MAX_FOREIGN_FLOWS || self.foreign.contains_key(&source) {
                    self.foreign
                        .insert(source, ForeignFlow { worker, used: now });
                }
                Steer::HandOver(worker)
            }
            _ => Steer::Unknown,
        }
    }

    /// A datagram another worker (`from`) read and handed over; `true` with a local peer when
    /// it is a nominating STUN request, the moment to move that peer to `from`.
    pub(super) fn handed_over(
        &mut self,
        source: SocketAddr,
        from: usize,
        data: &[u8],
        owner_of: impl Fn(&str) -> Option<usize>,
    ) -> (Steer, bool) {
        let stun = stun_request(data);
        let nominated = stun.as_ref().is_some_and(|s| s.nominated);
        if let Some(&key) = self.by_addr.get(&source) {
            return (Steer::Local(key), nominated);
        }
        let Some(stun) = stun else {
            // Queued before its peer moved away from here (a DTLS record behind the
            // nominating request): the move went first on the same queue, so it finds it.
            return match self.foreign.get(&source) {
                Some(flow) if flow.worker != self.index => (Steer::HandOver(flow.worker), false),
                _ => (Steer::Unknown, false),
            };
        };
        if let Some(&key) = self.by_ufrag.get(stun.ufrag) {
            self.learn(key, source);
            return (Steer::Local(key), nominated);
        }
        // The peer moved on (or left) while this was queued: one more hop at most.
        match owner_of(stun.ufrag) {
            Some(w) if w != self.index && w != from => (Steer::HandOver(w), false),
            _ => (Steer::Unknown, false),
        }
    }

    /// Forgets foreign flows nobody used for a while.
    pub(super) fn prune(&mut self, now: Instant) {
        self.foreign
            .retain(|_, flow| now.saturating_duration_since(flow.used) < FOREIGN_FLOW_IDLE);
    }
}

/// Messages for other workers that must not be lost, in order, per worker: a move and the
/// commands that follow it wait here while the other worker's queue is full.
pub(super) struct Outbox<T> {
    queues: Vec<VecDeque<T>>,
}

/// Why a message could not be queued.
pub(super) enum Refused<T> {
    Full(T),
    /// Nobody will read it.
    Closed,
}

impl<T> Outbox<T> {
    pub(super) fn new(workers: usize) -> Self {
        Self {
            queues: (0..workers).map(|_| VecDeque::new()).collect(),
        }
    }

    pub(super) fn is_empty_for(&self, worker: usize) -> bool {
        self.queues[worker].is_empty()
    }

    /// Sends `msg` now if nothing waits for `to` and `send` takes it; otherwise it waits.
    pub(super) fn post(
        &mut self,
        to: usize,
        msg: T,
        send: impl FnOnce(usize, T) -> Result<(), Refused<T>>,
    ) {
        let queue = &mut self.queues[to];
        if !queue.is_empty() {
            queue.push_back(msg);
        } else if let Err(Refused::Full(msg)) = send(to, msg) {
            queue.push_back(msg);
        }
    }

    /// Sends what waits, in order, while `send` takes it.
    pub(super) fn flush(&mut self, mut send: impl FnMut(usize, T) -> Result<(), Refused<T>>) {
        for (to, queue) in self.queues.iter_mut().enumerate() {
            while let Some(msg) = queue.pop_front() {
                match send(to, msg) {
                    Ok(()) => {}
                    Err(Refused::Full(msg)) => {
                        queue.push_front(msg);
                        break;
                    }
                    Err(Refused::Closed) => queue.clear(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::ice::{StunMessage, TransId};

    fn stun(ufrag: &str, nominated: bool) -> Vec<u8> {
        let user = format!("{ufrag}:client");
        let msg = StunMessage::binding_request(&user, TransId::new(), true, 7, 100, nominated);
        let mut buf = vec![0u8; 512];
        let n = msg
            .to_bytes(Some(b"pass"), &mut buf, |_, _| [0; 20])
            .unwrap();
        buf.truncate(n);
        buf
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    const DTLS: &[u8] = &[22, 254, 253, 0, 0, 0, 0];

    /// The steering's own reading agrees with str0m's on what str0m writes, and on those
    /// messages with any one byte changed wherever str0m still reads a binding request.
    #[test]
    fn the_first_look_agrees_with_str0m() {
        // str0m after the RFC 7983 first-byte check the steering always made.
        let theirs = |data: &[u8]| {
            if data.first().is_none_or(|b| *b > 3) {
                return None;
            }
            let msg = StunMessage::parse(data).ok()?;
            if !msg.is_binding_request() {
                return None;
            }
            Some((
                msg.username()?.split(':').next()?.to_string(),
                msg.use_candidate(),
            ))
        };
        let ours = |data: &[u8]| stun_request(data).map(|r| (r.ufrag.to_string(), r.nominated));
        let mut checked = 0;
        for (ufrag, nominated) in [("srv", true), ("a1b2c3d4", false), ("x", true)] {
            let req = stun(ufrag, nominated);
            assert_eq!(ours(&req), Some((ufrag.to_string(), nominated)));
            for i in 0..req.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut bad = req.clone();
                    bad[i] ^= flip;
                    if let Some(t) = theirs(&bad) {
                        assert_eq!(ours(&bad), Some(t), "byte {i} ^ {flip:#x}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn only_binding_requests_name_a_peer() {
        assert!(stun_request(&[]).is_none());
        assert!(stun_request(DTLS).is_none());
        assert!(stun_request(&[0x80; 40]).is_none());
        let req = stun("srv", true);
        let parsed = stun_request(&req).unwrap();
        assert_eq!((parsed.ufrag, parsed.nominated), ("srv", true));
    }

    #[test]
    fn a_local_peer_is_learned_from_its_stun_request() {
        let now = Instant::now();
        let mut d = Demux::new(0);
        d.add(7, "u7", Vec::new());
        let nobody = |_: &str| None;
        assert_eq!(d.read(addr(1), DTLS, now, nobody), Steer::Unknown);
        assert_eq!(
            d.read(addr(1), &stun("u7", false), now, nobody),
            Steer::Local(7)
        );
        assert_eq!(d.read(addr(1), DTLS, now, nobody), Steer::Local(7));
        // Removal forgets its flows without a scan.
        assert_eq!(d.remove(7, "u7"), vec![addr(1)]);
        assert_eq!(d.read(addr(1), DTLS, now, nobody), Steer::Unknown);
    }

    #[test]
    fn a_foreign_flow_is_handed_over_until_its_peer_moves_here() {
        let now = Instant::now();
        // Worker 1 reads a flow of a peer at home on worker 0.
        let mut reader = Demux::new(1);
        let mut home = Demux::new(0);
        home.add(7, "u7", Vec::new());
        let at_home = |u: &str| (u == "u7").then_some(0);
        assert_eq!(
            reader.read(addr(1), &stun("u7", false), now, at_home),
            Steer::HandOver(0)
        );
        assert_eq!(reader.read(addr(1), DTLS, now, at_home), Steer::HandOver(0));
        // Home: a request not nominating is handled, a nominating one says "move".
        assert_eq!(
            home.handed_over(addr(1), 1, &stun("u7", false), at_home),
            (Steer::Local(7), false)
        );
        assert_eq!(
            home.handed_over(addr(1), 1, &stun("u7", true), at_home),
            (Steer::Local(7), true)
        );
        let addrs = home.moved_away(7, "u7", 1, addr(1), now);
        assert_eq!(addrs, vec![addr(1)]);
        // A DTLS record handed over before the move follows the peer.
        assert_eq!(
            home.handed_over(addr(1), 1, DTLS, at_home),
            (Steer::HandOver(1), false)
        );
        // Commands follow it too, until it is removed.
        assert_eq!(home.moved_to(7, false), Some(1));
        reader.add(7, "u7", addrs);
        assert_eq!(reader.read(addr(1), DTLS, now, at_home), Steer::Local(7));
        assert_eq!(home.moved_to(7, true), Some(1));
        assert_eq!(home.moved_to(7, false), None);
    }

    #[test]
    fn forgotten_foreign_flows_are_pruned_not_cleared_at_once() {
        let start = Instant::now();
        let mut d = Demux::new(1);
        let elsewhere = |_: &str| Some(0);
        d.read(addr(1), &stun("a", false), start, elsewhere);
        let later = start + FOREIGN_FLOW_IDLE / 2;
        d.read(addr(2), &stun("b", false), later, elsewhere);
        d.prune(start + FOREIGN_FLOW_IDLE);
        assert_eq!(d.read(addr(1), DTLS, later, elsewhere), Steer::Unknown);
        assert_eq!(d.read(addr(2), DTLS, later, elsewhere), Steer::HandOver(0));
    }

    #[test]
    fn the_outbox_keeps_order_behind_a_full_queue() {
        let mut o = Outbox::new(2);
        let mut sent = Vec::new();
        o.post(1, "a", |_, m| Err(Refused::Full(m)));
        // Room now, but "b" must wait behind "a".
        o.post(1, "b", |_, m| {
            sent.push(m);
            Ok(())
        });
        assert!(sent.is_empty() && !o.is_empty_for(1));
        o.flush(|w, m| {
            sent.push(m);
            assert_eq!(w, 1);
            Ok(())
        });
        assert_eq!(sent, vec!["a", "b"]);
        assert!(o.is_empty_for(1) && o.is_empty_for(0));
    }
}
