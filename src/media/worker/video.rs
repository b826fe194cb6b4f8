//! Video in call channels: forwarded only (never mixed), on video slots of its own, while the
//! call's media is video; a receiver's keyframe request (PLI/FIR) reaches the sender.

use super::*;
use str0m::format::{Codec, PayloadParams};
use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaAdded};

/// A sender is asked for a keyframe at most this often: many receivers' requests (or one
/// receiver's repeated ones) within it are one request.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

/// What two peers' payload types must agree on to carry the same packets: the codec and, for
/// H.264, the packetization mode and profile. 0 is audio.
pub(super) type VideoCodec = u32;

const VP8: VideoCodec = 1 << 28;
const H264: VideoCodec = 2 << 28;
/// Codec and packetization mode, without the profile.
const FAMILY: VideoCodec = 0xff00_0000;

pub(super) fn video_codec(p: &PayloadParams) -> Option<VideoCodec> {
    let spec = p.spec();
    match spec.codec {
        Codec::Vp8 => Some(VP8),
        Codec::H264 => Some(
            H264 | u32::from(spec.format.packetization_mode.unwrap_or(0) & 0xf) << 24
                | spec.format.profile_level_id.unwrap_or(0) & 0xff_ffff,
        ),
        _ => None,
    }
}

/// One peer's video: its camera, its video slots and the payload types it agreed to.
#[derive(Default)]
pub(super) struct PeerVideo {
    /// The m-line the peer sends its camera on.
    pub camera: Option<Mid>,
    pub slots: Slots,
    pub pts: Vec<(Pt, VideoCodec)>,
    /// When a keyframe was last asked of this peer's camera.
    asked: Option<Instant>,
}

impl PeerVideo {
    pub fn codec_of(&self, pt: Pt) -> Option<VideoCodec> {
        self.pts.iter().find(|(p, _)| *p == pt).map(|(_, c)| *c)
    }

    /// The payload type this peer receives `codec` on: the same profile, or failing that the
    /// same codec and packetization mode (a decoder of one H.264 profile reads the baseline
    /// ones senders use).
    pub fn pt_for(&self, codec: VideoCodec) -> Option<Pt> {
        let exact = self.pts.iter().find(|(_, c)| *c == codec);
        exact
            .or_else(|| self.pts.iter().find(|(_, c)| c & FAMILY == codec & FAMILY))
            .map(|(p, _)| *p)
    }
}

impl Worker {
    /// A video m-line negotiated: the peer's camera (it sends) or a video slot (it receives).
    pub(super) fn video_added(&mut self, key: PeerKey, added: &MediaAdded) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if matches!(added.direction, Direction::SendOnly | Direction::SendRecv) {
            peer.video.slots.add(added.mid);
        }
        if matches!(added.direction, Direction::RecvOnly | Direction::SendRecv) {
            peer.video.camera = Some(added.mid);
        }
        if peer.video.pts.is_empty() {
            // The payload types this m-line's remote side agreed to, not every one enabled.
            let agreed = peer
                .rtc
                .media(added.mid)
                .map(|m| m.remote_pts().to_vec())
                .unwrap_or_default();
            peer.video.pts = peer
                .rtc
                .codec_config()
                .params()
                .iter()
                .filter(|p| agreed.is_empty() || agreed.contains(&p.pt()))
                .filter_map(|p| video_codec(p).map(|c| (p.pt(), c)))
                .collect();
        }
        self.assign_video_slots(key);
    }

    /// A video packet from a member: forwarded to the others' video slots while the call's
    /// media is video.
    pub(super) fn video_in(
        &mut self,
        key: PeerKey,
        route: RouteId,
        codec: VideoCodec,
        rtp: str0m::rtp::RtpPacket,
    ) {
        let on_stage = self
            .router
            .get(route)
            .map(|r| (r.video, r.publishers.iter().any(|p| p.key == key)));
        match on_stage {
            Some((true, true)) => {}
            Some((false, true)) => return self.metrics.drop(DropReason::VideoOff, 1),
            _ => return self.metrics.drop(DropReason::NotPermitted, 1),
        }
        self.metrics.video_in();
        let packet = Packet {
            red_primary: None,
            red_inner_pt: 0,
            video: codec,
            publisher: key,
            capture: None,
            level: None,
            time: rtp.time.numer(),
            seq: *rtp.seq_no,
            marker: rtp.header.marker,
            arrived: rtp.timestamp,
            data: rtp.payload,
        };
        self.send_to_other_workers(route, &packet);
        self.fan_out(route, &packet);
    }

    /// Writes a video packet to listener `l` on the video slot carrying its publisher.
    pub(super) fn write_video(&mut self, l: PeerKey, packet: &Packet) -> Written {
        let Some(peer) = self.peers.get_mut(&l) else {
            return Written::NotHere;
        };
        let (Some(pt), Some(slot)) = (
            peer.video.pt_for(packet.video),
            peer.video.slots.for_publisher(packet.publisher),
        ) else {
            return Written::NoSlot;
        };
        let ext = ExtensionValues {
            abs_send_time: Some(packet.arrived),
            ..ExtensionValues::default()
        };
        let (seq, time) = (slot.next_seq(), slot.map_time(packet.time) as u32);
        let wire = (pt, seq, time);
        if !super::forward::write_on_slot(&mut peer.rtc, slot, wire, packet, &packet.data, ext) {
            return Written::NoSlot;
        }
        self.drain(l);
        Written::Sent
    }

    /// Binds the members' cameras to this peer's video slots (none while the call is audio).
    pub(super) fn assign_video_slots(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.spec.video || peer.video.slots.is_empty() {
            return;
        }
        let publishers: Vec<&Publisher> = match self.router.get(peer.route) {
            Some(route) if route.video && peer.spec.can_subscribe => {
                route.publishers.iter().filter(|p| p.key != key).collect()
            }
            _ => Vec::new(),
        };
        let keys: Vec<PeerKey> = publishers.iter().map(|p| p.key).collect();
        let changes = peer.video.slots.assign(&keys);
        announce_tracks(&peer.spec, &changes.rebound, &publishers);
        let senders: Vec<PeerKey> = changes.rebound.iter().filter_map(|(_, p)| *p).collect();
        // A new receiver decodes from the next keyframe: ask for one now rather than at the
        // sender's next periodic one.
        for sender in senders {
            self.ask_keyframe(sender, KeyframeRequestKind::Pli);
        }
    }

    /// A receiver asked for a keyframe on one of its video slots: the slot's sender is asked.
    pub(super) fn keyframe_request(&mut self, key: PeerKey, req: KeyframeRequest) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let sender = peer
            .video
            .slots
            .iter()
            .find(|s| s.mid == req.mid)
            .and_then(|s| s.publisher);
        if let Some(sender) = sender {
            self.ask_keyframe(sender, req.kind);
        }
    }

    /// Asks `sender`'s camera for a keyframe, here or on the worker it lives on.
    pub(super) fn ask_keyframe(&mut self, sender: PeerKey, kind: KeyframeRequestKind) {
        let Some(peer) = self.peers.get_mut(&sender) else {
            for (w, tx) in self.shared.remotes.iter().enumerate() {
                if w != self.index && tx.try_send(Remote::Keyframe { sender, kind }).is_err() {
                    self.metrics.drop(DropReason::QueueFull, 1);
                }
            }
            return;
        };
        let now = crate::clock::now();
        if peer
            .video
            .asked
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_INTERVAL)
        {
            return;
        }
        let Some(camera) = peer.video.camera else {
            return;
        };
        if let Some(stream) = peer.rtc.direct_api().stream_rx_by_mid(camera, None) {
            stream.request_keyframe(kind);
            peer.video.asked = Some(now);
            self.metrics.keyframe_request();
            let _ = peer.rtc.handle_input(Input::Timeout(now));
            self.drain(sender);
        }
    }

    /// The call's media changed: video slots are bound (or freed) to match.
    pub(super) fn set_video(&mut self, channel: &ChannelId, on: bool) {
        let listeners = self.router.set_video(channel, on);
        for &key in listeners.iter() {
            self.assign_video_slots(key);
        }
    }
}
