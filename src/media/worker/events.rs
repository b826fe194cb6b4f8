//! What a peer's `Rtc` reports: media from publishers, connection state, stats.

use super::*;

impl Worker {
    pub(super) fn event(&mut self, key: PeerKey, e: Event) {
        match e {
            Event::RtpPacket(rtp) => self.rtp_in(key, rtp),
            Event::MediaAdded(added) if added.kind == MediaKind::Video => {
                self.video_added(key, &added)
            }
            Event::MediaAdded(added) => self.media_added(key, added),
            Event::KeyframeRequest(req) => self.keyframe_request(key, req),
            Event::IceConnectionStateChange(state) => self.ice_state(key, state),
            Event::MediaEgressStats(st) => self.egress_stats(key, st),
            Event::MediaIngressStats(st) => self.ingress_stats(key, st),
            _ => {}
        }
    }

    /// Media from a publisher: checked against its route, then forwarded, mixed or both.
    fn rtp_in(&mut self, key: PeerKey, rtp: str0m::rtp::RtpPacket) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let route = peer.route;
        if let Some(codec) = peer.video.codec_of(rtp.header.payload_type) {
            return self.video_in(key, route, codec, rtp);
        }
        let red_pt = peer.red_pt;
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
        let (red_primary, red_inner_pt) = match red_pt {
            Some(pt) if pt == rtp.header.payload_type => {
                let Some(primary) = amphi_core::red::primary(&rtp.payload) else {
                    self.metrics.drop(DropReason::Malformed, 1);
                    return;
                };
                self.metrics.red_in();
                let data = self.red_pool.share(&rtp.payload[primary.start..]);
                (Some(data), primary.pt)
            }
            _ => (None, 0),
        };
        let packet = Packet {
            red_primary,
            red_inner_pt,
            video: 0,
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

    fn media_added(&mut self, key: PeerKey, added: str0m::media::MediaAdded) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if matches!(added.direction, Direction::SendOnly | Direction::SendRecv) {
            peer.slots.add(added.mid);
        }
        if peer.opus_pt.is_none() {
            // str0m folds RED onto Opus: its payload type is the Opus params' `red`.
            let opus = peer
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == str0m::format::Codec::Opus);
            peer.opus_pt = opus.map(|p| p.pt());
            peer.red_pt = opus.and_then(|p| p.red());
        }
    }

    fn ice_state(&mut self, key: PeerKey, state: IceConnectionState) {
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

    /// What the listener reports about the audio we send it (RTCP receiver reports).
    fn egress_stats(&mut self, key: PeerKey, st: str0m::stats::MediaEgressStats) {
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

    fn ingress_stats(&mut self, key: PeerKey, st: str0m::stats::MediaIngressStats) {
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
}
