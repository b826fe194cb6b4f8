//! The worker's commands from the control side: offers and answers, permissions, slots,
//! routes, recordings and playbacks.

use super::*;
use crate::channel::Mixdown;
use crate::media::record::Recorder;
use crate::media::types::Playback;

impl Worker {
    // A refused message comes back whole so that it can wait its turn in order; boxing it
    // would allocate for every packet handed to another worker, to spare the rare refusal.
    #[allow(clippy::result_large_err)]
    pub(super) fn command(&mut self, cmd: Command) {
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
            } => self.routes(&channel, publishers, mix, levels),
            Command::ChannelClosed { channel } => self.channel_closed(&channel),
            Command::Video { channel, on } => self.set_video(&channel, on),
            Command::Record { channel, recorder } => self.record(&channel, recorder),
            Command::Play { channel, play } => self.play(&channel, play),
            Command::Stop => {}
        }
    }

    /// A channel's publishers, mix and level sink changed: routes, mixers and slots follow.
    fn routes(
        &mut self,
        channel: &ChannelId,
        publishers: Arc<[Publisher]>,
        mix: Mixdown,
        levels: actix::Recipient<SpeakerLevel>,
    ) {
        let listeners = self
            .router
            .set_publishers(channel, publishers.clone(), mix, Some(levels));
        if let Some(route) = self.router.find(channel) {
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

    fn channel_closed(&mut self, channel: &ChannelId) {
        if let Some(route) = self.router.find(channel) {
            if self.mixing.is_mixing(route) {
                // A recording of it is finished here.
                self.mixing.stop(route);
                self.router.detach(route, MIX_KEY);
            }
            self.stop_playing(route);
        }
        self.router.channel_closed(channel);
    }

    /// Starts (`Some`) or stops (`None`) recording the channel's mix.
    fn record(&mut self, channel: &ChannelId, recorder: Option<Recorder>) {
        // Nothing to stop in a channel this worker has no route for.
        let route = match (self.router.find(channel), &recorder) {
            (None, None) => return,
            _ => self.router.open(channel),
        };
        if !self.mixing.is_mixing(route) {
            if recorder.is_none() {
                return;
            }
            // The mixer holds the route while it runs.
            self.router.hold(route);
        }
        self.mixing.record(route, recorder, crate::clock::now());
    }

    fn play(&mut self, channel: &ChannelId, play: Option<Playback>) {
        match play {
            Some((key, packets, done)) => {
                let route = self.router.open(channel);
                if !self.players.is_playing(route) {
                    self.router.hold(route);
                }
                let start = crate::clock::now() + PLAY_DELAY;
                self.players.play(route, key, packets, start, done);
            }
            None => {
                if let Some(route) = self.router.find(channel) {
                    self.stop_playing(route);
                }
            }
        }
    }

    /// Stops the file playing into `route`, if one is, and lets go of the route.
    pub(super) fn stop_playing(&mut self, route: RouteId) {
        if self.players.is_playing(route) {
            self.players.stop(route);
            self.router.detach(route, PLAYER_KEY);
        }
    }

    /// Sends the packets of files playing into channels that are due: to the listeners
    /// (forwarded) and to the mixer, as the channel's mixdown says.
    pub(super) fn play_due(&mut self, now: Instant) {
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
                red_primary: None,
                red_inner_pt: 0,
                video: 0,
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
    pub(super) fn listen(&mut self, key: PeerKey, on: bool) {
        let Some(route) = self.peers.get(&key).map(|p| p.route) else {
            return;
        };
        if on {
            self.router.add_listener(route, key);
        } else {
            self.router.remove_listener(route, key);
        }
    }

    pub(super) fn offer(
        &mut self,
        spec: PeerSpec,
        sdp: &str,
        sends: bool,
    ) -> Result<String, MediaError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| sdp::parse_error(&e))?;
        let key = spec.key;
        if !self.peers.contains_key(&key) {
            let (mut rtc, export) = new_rtc(&spec);
            let candidate = Candidate::host(self.announced, "udp")
                .map_err(|e| MediaError::Negotiation(e.to_string()))?;
            rtc.add_local_candidate(candidate);
            if let Some(addr) = self.tcp.local() {
                let passive = Candidate::builder()
                    .tcp()
                    .host(addr)
                    .tcptype(str0m::net::TcpType::Passive)
                    .build()
                    .map_err(|e| MediaError::Negotiation(e.to_string()))?;
                rtc.add_local_candidate(passive);
            }
            let ufrag = rtc.direct_api().local_ice_credentials().ufrag.clone();
            self.demux.add(key, &ufrag, Vec::new());
            self.shared.ufrags.insert(ufrag.clone(), self.index);
            let route = self.router.attach(&spec.channel);
            let subscribe = spec.can_subscribe;
            self.peers.insert(
                key,
                Box::new(Peer {
                    spec,
                    rtc,
                    ufrag,
                    slots: Slots::default(),
                    opus_pt: None,
                    red_pt: None,
                    pending: None,
                    deadline: Deadline::default(),
                    route,
                    jitter: Jitter::default(),
                    level: LevelWindow::default(),
                    created: crate::clock::now(),
                    first_audio: None,
                    offered_send: sends,
                    mixed: false,
                    home: self.index,
                    video: PeerVideo::default(),
                    egress: Egress::new(export),
                    media_to: None,
                }),
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
        Ok(amphi_core::sdp::red_first(&answer.to_sdp_string()))
    }

    pub(super) fn answer(&mut self, key: PeerKey, sdp: &str) -> Result<(), MediaError> {
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
    pub(super) fn assign_slots(&mut self, key: PeerKey) {
        self.assign_video_slots(key);
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
        announce_tracks(&peer.spec, &changes.rebound, &publishers);
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
                peer.pending = Some((pending, mids, crate::clock::now()));
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

    pub(super) fn remove(&mut self, key: PeerKey) {
        let Some(mut peer) = self.take_peer(key) else {
            return;
        };
        self.demux.remove(key, &peer.ufrag);
        self.tcp.forget(key);
        peer.rtc.disconnect();
        self.shared.ufrags.remove(&peer.ufrag);
    }

    /// Takes a peer out of this worker's tables but the demultiplexer's, to be moved or
    /// dropped.
    pub(super) fn take_peer(&mut self, key: PeerKey) -> Option<Box<Peer>> {
        let peer = self.peers.remove(&key)?;
        // Its timer entry stays queued and finds nobody when it comes due.
        self.router.detach(peer.route, key);
        self.metrics.peers(-1);
        Some(peer)
    }
}

/// A server peer's `Rtc`: RTP mode, ICE-lite, Opus (with RED), and video codecs for a call
/// channel's peer. With it, the cell its DTLS fills with the SRTP keys (`egress.rs`).
fn new_rtc(spec: &PeerSpec) -> (Rtc, Option<crate::dtls::ExportCell>) {
    // Extensions: level (speaking events), mid (demultiplexing) and absolute send time.
    // Transport-wide congestion control feedback cost ~30% of the forwarding CPU and
    // steers nothing for a fixed-rate voice codec, so it is not negotiated. Without
    // abs-send-time, str0m receivers delivered only a fifth of the frames (measured
    // with the forward bench), so that one stays.
    // RTP mode: the server forwards packets as they arrive (no reordering buffer, no
    // depacketizing and packetizing again) with its own sequence numbers and
    // timestamps per slot, and the payload is shared by every listener.
    // Video (VP8, H.264) only in call channels, forwarded as it comes.
    // DTLS from `crate::dtls` (a context shared by every peer), named here rather than left
    // to the process default, which a client in the same process could also set.
    let _ = crate::dtls::take_export();
    let rtc = Rtc::builder()
        .set_crypto_provider(crate::dtls::shared())
        .set_dtls_cert(server_cert())
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .clear_codecs()
        .enable_opus(true, true) // RED when offered (docs/media.md)
        .enable_vp8(spec.video)
        .enable_h264(spec.video)
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(4, Extension::RtpMid)
        .set_extension(2, Extension::AbsoluteSendTime)
        .set_extension(5, Extension::AbsoluteCaptureTime)
        .set_stats_interval(Some(STATS_INTERVAL))
        .build(crate::clock::now());
    (rtc, crate::dtls::take_export())
}

/// One DTLS certificate for every peer of the process, made on first use: a certificate per
/// peer cost a key generation per join and its keys and certificate in every peer's memory.
/// Browsers pin the fingerprint per connection, so sharing it reveals nothing new.
fn server_cert() -> str0m::config::DtlsCert {
    static CERT: std::sync::OnceLock<str0m::config::DtlsCert> = std::sync::OnceLock::new();
    CERT.get_or_init(|| {
        crate::dtls::shared()
            .dtls_provider
            .generate_certificate()
            .expect("the OpenSSL provider makes certificates")
    })
    .clone()
}
