//! Packets out: fan-out to listeners on this and other workers, the mixer's input and its
//! ticks' output.

use super::*;
use crate::media::egress::THROUGH_STR0M;
use crate::media::rtp_out::{self, ExtIds};
use crate::media::srtp::Sealer;

impl Worker {
    pub(super) fn send_to_other_workers(&mut self, route: RouteId, packet: &Packet) {
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
    pub(super) fn fan_out(&mut self, route: RouteId, packet: &Packet) {
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
                .forward_latency(crate::clock::now().saturating_duration_since(packet.arrived));
        }
    }

    /// Writes one packet to listener `l` on the slot carrying its publisher.
    pub(super) fn write(&mut self, l: PeerKey, packet: &Packet) -> Written {
        if packet.video != 0 {
            return self.write_video(l, packet);
        }
        let Some(peer) = self.peers.get_mut(&l) else {
            return Written::NotHere;
        };
        if peer.mixed != (packet.publisher == MIX_KEY) {
            // It receives the mix and this is a speaker's own stream, or the other way round.
            return Written::NotWanted;
        }
        let (Some(opus_pt), Some(slot)) =
            (peer.opus_pt, peer.slots.for_publisher(packet.publisher))
        else {
            return Written::NoSlot;
        };
        // RED goes on as it came to a listener that negotiated it with the same Opus payload
        // type inside; any other listener gets the primary block as plain Opus.
        let (pt, payload) = match (&packet.red_primary, peer.red_pt) {
            (None, _) => (opus_pt, &packet.data),
            (Some(_), Some(red_pt)) if packet.red_inner_pt == *opus_pt => {
                self.metrics.red_out(true);
                (red_pt, &packet.data)
            }
            (Some(primary), _) => {
                self.metrics.red_out(false);
                (opus_pt, primary)
            }
        };
        let (seq, time) = (slot.next_seq(), slot.map_time(packet.time) as u32);
        // The worker's own path, with the peer and slot already in hand (one lookup per
        // listener); str0m carries the packet when that path cannot.
        let queued = match (slot.wire, peer.media_to) {
            (Some(wire), Some(to)) if !seq.is_multiple_of(THROUGH_STR0M) => peer
                .egress
                .ready(&peer.rtc, slot.mid)
                .and_then(|(sealer, ids)| {
                    let out = Outgoing {
                        pt,
                        seq,
                        time,
                        packet,
                        payload: &payload[..],
                    };
                    seal_into(&mut self.out, &mut self.stamps, sealer, ids, to, &wire, out)
                }),
            _ => None,
        };
        let own = queued.is_some();
        match queued {
            Some(full) => {
                self.metrics.sealed();
                if full {
                    super::flows::flush_udp(&mut self.out, self.fd, &mut self.metrics);
                }
            }
            None => {
                let ext = ExtensionValues {
                    audio_level: packet.level.map(|l| l.0),
                    voice_activity: packet.level.map(|l| l.1),
                    abs_capture_time: packet.capture,
                    abs_send_time: Some(packet.arrived),
                    ..ExtensionValues::default()
                };
                if !write_on_slot(&mut peer.rtc, slot, (pt, seq, time), packet, payload, ext) {
                    return Written::NoSlot;
                }
            }
        }
        if peer.first_audio.is_none() {
            let now = crate::clock::now();
            peer.first_audio = Some(now);
            let _ = peer.spec.first_audio.try_send(FirstAudio {
                participant: peer.spec.participant.clone(),
            });
            self.metrics
                .first_audio(now.saturating_duration_since(peer.created));
        }
        if !own {
            self.drain(l);
        }
        Written::Sent
    }

    /// A speaker's packet in a mixing channel: to the channel's mixer, here or on the worker
    /// that runs it (one mixer per channel, so one encode of the mix).
    pub(super) fn mix_in(&mut self, route: RouteId, packet: Packet, minus: bool) {
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

    pub(super) fn mix_here(&mut self, route: RouteId, packet: &Packet, minus: bool) {
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
            packet.red_primary.as_ref().unwrap_or(&packet.data),
            capture,
            crate::clock::now(),
        );
    }

    /// Runs the mixer ticks due and sends what they made: the mix to every listener (here and
    /// on the other workers), each speaker's mix-minus to that speaker.
    pub(super) fn mix_ticks(&mut self, now: Instant) {
        let mut outs = std::mem::take(&mut self.mix_out);
        let mut minuses = std::mem::take(&mut self.mix_minus);
        let ticks = self.mixing.counts.ticks;
        self.mixing.tick_due(now, &mut outs, &mut minuses);
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
                red_primary: None,
                red_inner_pt: 0,
                video: 0,
            };
            let total = packet(out.total.clone());
            self.send_to_other_workers(out.route, &total);
            self.fan_out(out.route, &total);
            let others = self.router.plan(out.route).map_or(0, |p| p.others);
            for (speaker, data) in &minuses[out.minus.clone()] {
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
        minuses.clear();
        self.mix_minus = minuses;
    }
}

/// One packet for one listener's slot.
struct Outgoing<'a> {
    pt: Pt,
    seq: u64,
    time: u32,
    packet: &'a Packet,
    payload: &'a [u8],
}

/// Builds `out`'s RTP header, seals the packet with the peer's `sealer` into a buffer of
/// `batch` and queues it for `to`. Some(true) when the batch is full and should be flushed;
/// None when the AEAD refused (nothing was sent under that nonce, so str0m may carry it).
fn seal_into(
    batch: &mut SendBatch,
    stamps: &mut rtp_out::Stamps,
    sealer: &mut Sealer,
    ids: ExtIds,
    to: SocketAddr,
    wire: &rtp_out::SlotWire,
    out: Outgoing<'_>,
) -> Option<bool> {
    let p = out.packet;
    let (sent, ntp) = stamps.get(p.arrived, p.capture.map(|c| c.capture_time));
    let header = rtp_out::Header {
        pt: *out.pt,
        marker: p.marker,
        seq: out.seq as u16,
        time: out.time,
        wire,
        level: p.level,
        capture: ntp.zip(p.capture.map(|c| c.clock_offset)),
        sent: Some(sent),
    };
    batch.push_with(to, |buf| {
        let header_len = rtp_out::write(buf, &header, &ids);
        buf.extend_from_slice(out.payload);
        sealer.seal(buf, header_len, wire.ssrc, out.seq)
    })
}

/// Writes `payload` on a listener's `slot` through str0m, with the server's own sequence
/// number and timeline for that slot (`seq`, `time`: a listener sees one continuous stream per
/// slot whoever speaks on it), and sends it in this turn. False when the slot's stream is gone.
pub(super) fn write_on_slot(
    rtc: &mut Rtc,
    slot: &mut Slot,
    (pt, seq, time): (Pt, u64, u32),
    packet: &Packet,
    payload: &Arc<[u8]>,
    ext: ExtensionValues,
) -> bool {
    let mut api = rtc.direct_api();
    let Some(stream) = api.stream_tx_by_mid(slot.mid, None) else {
        return false;
    };
    // The worker's own path writes on the same SSRC (`egress.rs`).
    if slot.wire.is_none() {
        slot.wire = Some(rtp_out::SlotWire::new(*stream.ssrc(), &slot.mid));
    }
    let write = RtpWrite::new(pt, SeqNo::from(seq), time, packet.arrived, payload.clone())
        .marker(packet.marker)
        .ext_vals(ext);
    stream.write_rtp(write);
    // str0m queues a written packet until time moves on: moving it now sends the packet in
    // this turn instead of at a timer queued (and popped) per packet.
    let _ = rtc.handle_input(Input::Timeout(crate::clock::now()));
    true
}
