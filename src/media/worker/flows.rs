//! Datagrams in: demultiplexing, hand-overs between workers, peer moves, str0m input,
//! timeouts and the drain of each `Rtc`'s output.

use super::*;

impl Worker {
    /// A datagram read from this worker's socket.
    pub(super) fn datagram(&mut self, source: SocketAddr, data: &[u8]) {
        let shared = &self.shared;
        let owner_of = |ufrag: &str| shared.ufrags.get(ufrag).map(|w| *w);
        match self.demux.read(source, data, crate::clock::now(), owner_of) {
            Steer::Local(key) => self.input(key, source, data),
            Steer::HandOver(w) => self.hand_over(w, source, data),
            Steer::Unknown => self.metrics.drop(DropReason::UnknownSource, 1),
        }
    }

    /// A datagram worker `from` read for a peer it believed is here.
    pub(super) fn handed_over(&mut self, source: SocketAddr, from: usize, data: &[u8]) {
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

    pub(super) fn hand_over(&mut self, worker: usize, source: SocketAddr, data: &[u8]) {
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
    pub(super) fn move_peer(&mut self, key: PeerKey, to: usize, flow: SocketAddr) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        // Moving behind queued messages would let a command overtake the move; moving into
        // a full queue would strand the peer. Either way it stays, and the next nominating
        // request handed over tries again.
        // A peer with an ICE-TCP connection stays: the connection's frames come here.
        if peer.home != self.index
            || to == self.index
            || self.tcp.has(key)
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
            .moved_away(key, &peer.ufrag, to, flow, crate::clock::now());
        let ufrag = peer.ufrag.clone();
        permit.send(Remote::Adopt(Moving { key, peer, addrs }));
        // After the move is queued: a datagram handed to `to` from now on finds it there.
        shared.ufrags.insert(ufrag, to);
        self.metrics.peer_moved();
    }

    /// A peer moved here by its home worker.
    pub(super) fn adopt(&mut self, moving: Moving) {
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
    pub(super) fn flush_out(&mut self) {
        self.tcp.flush();
        flush_udp(&mut self.out, self.fd, &mut self.metrics);
    }

    // A refused message comes back whole so that it can wait its turn in order; boxing it
    // would allocate for every packet handed to another worker, to spare the rare refusal.
    #[allow(clippy::result_large_err)]
    pub(super) fn flush_outbox(&mut self) {
        let remotes = &self.shared.remotes;
        self.outbox.flush(|w, m| try_remote(&remotes[w], m));
    }

    pub(super) fn input(&mut self, key: PeerKey, source: SocketAddr, data: &[u8]) {
        self.input_on(key, Protocol::Udp, source, data);
    }

    /// A packet of `key`'s over `proto`. Its destination is the candidate it was sent to: the
    /// announced address (the socket may be bound to every interface, or behind a NAT).
    pub(super) fn input_on(
        &mut self,
        key: PeerKey,
        proto: Protocol,
        source: SocketAddr,
        data: &[u8],
    ) {
        let destination = match proto {
            Protocol::Udp => self.announced,
            _ => self.tcp.local().unwrap_or(self.announced),
        };
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
            crate::clock::now(),
            Receive {
                proto,
                source,
                destination,
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

    pub(super) fn remote(&mut self, r: Remote) {
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
            Remote::Adopt(moving) => self.adopt(moving),
            Remote::Keyframe { sender, kind } => {
                if self.peers.contains_key(&sender) {
                    self.ask_keyframe(sender, kind);
                }
            }
            Remote::Command(cmd) => self.command(cmd),
            Remote::TcpOpen { source, writer } => self.tcp.open(source, writer),
            Remote::TcpIn { source, data } => self.tcp_in(source, &data),
            Remote::TcpClosed { source } => self.tcp.close(source),
        }
    }

    pub(super) fn timeouts(&mut self, now: Instant) {
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
                let _ = peer.rtc.handle_input(Input::Timeout(crate::clock::now()));
                self.drain(key);
            }
        }
        self.due = due;
    }

    /// Drains one peer's output (str0m's contract after every mutation), transmitting and
    /// collecting events, then handles the events.
    pub(super) fn drain(&mut self, key: PeerKey) {
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
                    let now = crate::clock::now();
                    if t <= now && immediate < 2 && peer.rtc.is_alive() {
                        immediate += 1;
                        let _ = peer.rtc.handle_input(Input::Timeout(now));
                        continue;
                    }
                    break t;
                }
                Ok(Output::Transmit(t)) if t.proto == Protocol::Tcp => {
                    if !is_stun(&t.contents) {
                        peer.media_to = None;
                    }
                    if !self.tcp.send(t.destination, &t.contents) {
                        self.metrics.drop(DropReason::SocketFull, 1);
                    }
                }
                Ok(Output::Transmit(t)) => {
                    // Everything but STUN answers goes to the nominated pair.
                    if !is_stun(&t.contents) {
                        peer.media_to = Some(t.destination);
                    }
                    if self.out.push(t.destination, t.contents.into()) {
                        flush_udp(&mut self.out, self.fd, &mut self.metrics);
                    }
                }
                Ok(Output::Event(e)) => self.events.push(e),
                Err(e) => {
                    tracing::debug!(error = %e, "peer failed");
                    peer.rtc.disconnect();
                    break crate::clock::now();
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
}

impl Worker {
    /// A frame from an ICE-TCP connection: its first binding request says whose it is.
    pub(super) fn tcp_in(&mut self, source: SocketAddr, data: &[u8]) {
        let key = match self.tcp.peer_of(source) {
            None => return,
            Some(Some(key)) => key,
            Some(None) => {
                let found = amphi_core::stun::binding_request(data)
                    .and_then(|stun| self.demux.local_ufrag(stun.ufrag));
                let Some(key) = found else {
                    self.metrics.drop(DropReason::UnknownSource, 1);
                    return;
                };
                self.tcp.bind(source, key);
                key
            }
        };
        self.input_on(key, Protocol::Tcp, source, data);
    }
}

/// Sends the batch now, counting what the socket refused. A free function: callers flush a
/// full batch mid-turn while holding a peer of the worker's.
pub(super) fn flush_udp(out: &mut SendBatch, fd: std::os::fd::RawFd, metrics: &mut WorkerMetrics) {
    let flushed = out.flush(fd);
    metrics.drop(DropReason::SocketFull, flushed.dropped as u64);
}

/// RFC 7983 §7: a first byte of 0–3 is STUN.
fn is_stun(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| *b < 4)
}
