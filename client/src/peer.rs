//! One WebRTC audio peer per joined channel, driven by a task that owns the `Rtc`, its socket
//! and the clock (str0m's drain-after-every-mutation contract).

use amphi_proto::protocol::Request;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::Protocol;
use str0m::rtp::AbsCaptureTime;
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::audio::{dbov, Source, FRAME_SAMPLES};
use crate::signal::{ClientError, Signal};
use crate::stats::{slot_mut, Arrival};
pub use crate::stats::{Meter, PeerStats, SlotStats};
use crate::transport::{bind_udp, new_rtc, receive, receive_on};
use crate::video::VideoFile;

/// Datagrams handled per wake-up before the driver yields.
const READ_BATCH: usize = 32;

/// Decoded audio kept per slot when `keep_audio` is on: 60 s at 48 kHz.
const MAX_KEPT_SAMPLES: usize = 48_000 * 60;

pub struct PeerOptions {
    /// Publish audio from this source (needs a role with the publish permission).
    pub publish: Option<Box<dyn Source>>,
    /// Receive slots to offer.
    pub slots: usize,
    /// Keep decoded PCM per slot for analysis.
    pub keep_audio: bool,
    /// Kernel receive buffer for the peer's socket (default: the system's).
    pub recv_buffer: Option<usize>,
    /// Decode received Opus (off for load generation: counting is enough).
    pub decode: bool,
    /// Misbehave: offer the microphone m-line as `recvonly`, read the answer as if the server
    /// had agreed to receive, and send on it anyway (to check that a server polices it).
    pub misreport_mic: bool,
    /// A lossy uplink: one outgoing RTP packet in `drop_every` is not sent (0: none).
    pub drop_every: u64,
    /// Send no audio-level header extension (RFC 6464): the server learns levels only from
    /// the audio itself.
    pub omit_levels: bool,
    /// Use this socket instead of binding one on loopback (to choose the local address or
    /// port, or to keep a handle on it: a clone sends from the peer's own address).
    pub socket: Option<std::net::UdpSocket>,
    /// Send this video as a camera (VP8; a call channel whose media is video forwards it).
    pub camera: Option<VideoFile>,
    /// Video receive slots to offer (each carries one other member's camera).
    pub video_slots: usize,
    /// Offer only an active ICE-TCP candidate: media over TCP to the server's passive one, as
    /// from a network that blocks UDP.
    pub ice_tcp: bool,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            publish: None,
            slots: 2,
            keep_audio: false,
            recv_buffer: None,
            decode: true,
            misreport_mic: false,
            drop_every: 0,
            omit_levels: false,
            socket: None,
            camera: None,
            ice_tcp: false,
            video_slots: 0,
        }
    }
}

enum PeerCmd {
    /// Stop reading the socket for a while: a listener that cannot keep up.
    Stall(Duration),
    SetSending(bool),
    SetCamera(bool),
    Close,
}

pub struct AudioPeer {
    stats: Meter,
    cmd: mpsc::Sender<PeerCmd>,
    task: tokio::task::JoinHandle<()>,
    pub local_addr: SocketAddr,
}

/// RTP (not RTCP, STUN or DTLS) on a shared port: RFC 7983 and RFC 5761.
fn is_rtp(data: &[u8]) -> bool {
    data.len() >= 12 && (128..=191).contains(&data[0]) && !(64..=95).contains(&(data[1] & 0x7f))
}

/// Rewrites the direction attribute of the m-line `mid` in an SDP.
fn set_direction(sdp: &str, mid: Mid, from: &str, to: &str) -> String {
    let tag = format!("a=mid:{mid}\r\n");
    sdp.split_inclusive("\r\nm=")
        .map(|section| {
            if section.contains(&tag) {
                section.replace(&format!("a={from}\r\n"), &format!("a={to}\r\n"))
            } else {
                section.to_string()
            }
        })
        .collect()
}

impl std::ops::Deref for AudioPeer {
    type Target = Meter;

    fn deref(&self) -> &Meter {
        &self.stats
    }
}

impl AudioPeer {
    /// Negotiates a peer for `channel` (already joined on `signal`) and starts driving it.
    pub async fn start(
        signal: &Signal,
        channel: &str,
        opts: PeerOptions,
    ) -> Result<AudioPeer, ClientError> {
        str0m::crypto::from_feature_flags().install_process_default();
        let media_err = |e: &dyn std::fmt::Display| ClientError::Media(e.to_string());
        let socket = match opts.socket {
            Some(s) => s
                .set_nonblocking(true)
                .and_then(|()| UdpSocket::from_std(s)),
            None => bind_udp(opts.recv_buffer),
        }
        .map_err(|e| media_err(&e))?;
        let local_addr = socket.local_addr().map_err(|e| media_err(&e))?;
        let video = opts.camera.is_some() || opts.video_slots > 0;
        let (mut rtc, tcp_local) = new_rtc(video, opts.ice_tcp, local_addr)?;
        let mut api = rtc.sdp_api();
        let mic = opts
            .publish
            .is_some()
            .then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        for _ in 0..opts.slots {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let camera = opts.camera.map(|file| {
            let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
            (mid, file)
        });
        let video_mids: Vec<Mid> = (0..opts.video_slots)
            .map(|_| api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None))
            .collect();
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| ClientError::Media("nothing to offer".into()))?;
        let media_events = signal.route_media(channel);
        let mut sdp = offer.to_sdp_string();
        let misreported = mic.filter(|_| opts.misreport_mic);
        if let Some(mid) = misreported {
            sdp = set_direction(&sdp, mid, "sendonly", "recvonly");
        }
        let reply = signal
            .send(&Request::MediaOffer {
                channel: channel.into(),
                sdp,
            })
            .await?;
        let mut sdp = reply["sdp"].as_str().unwrap_or_default().to_string();
        if let Some(mid) = misreported {
            sdp = set_direction(&sdp, mid, "sendonly", "recvonly");
        }
        let tcp = match opts.ice_tcp {
            true => {
                let remote = crate::transport::passive_candidate(&sdp).ok_or_else(|| {
                    ClientError::Media("no ICE-TCP candidate in the answer".into())
                })?;
                Some(crate::transport::TcpLink::connect(remote, tcp_local).await?)
            }
            false => None,
        };
        let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| media_err(&e))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| media_err(&e))?;
        let stats = Meter::default();
        let (cmd, cmd_rx) = mpsc::channel(16);
        let driver = Driver {
            rtc,
            socket,
            local_addr,
            tcp,
            signal: signal.clone(),
            channel: channel.to_string(),
            stats: stats.0.clone(),
            mic,
            source: opts.publish,
            sending: true,
            keep_audio: opts.keep_audio,
            decode: opts.decode,
            decoders: HashMap::new(),
            encoder: None,
            media_time: 0,
            stalled_until: None,
            drop_every: opts.drop_every,
            omit_levels: opts.omit_levels,
            rtp_sent: 0,
            epoch: Instant::now(),
            camera,
            camera_on: true,
            video_mids,
            video_time: 0,
        };
        let task = tokio::spawn(driver.run(media_events, cmd_rx));
        Ok(AudioPeer {
            stats,
            cmd,
            task,
            local_addr,
        })
    }

    /// Stops reading the socket for `d` (the kernel drops what does not fit).
    pub async fn stall(&self, d: Duration) {
        let _ = self.cmd.send(PeerCmd::Stall(d)).await;
    }

    pub async fn set_sending(&self, on: bool) {
        let _ = self.cmd.send(PeerCmd::SetSending(on)).await;
    }

    /// Turns the camera off (no video sent) or on again.
    pub async fn set_camera(&self, on: bool) {
        let _ = self.cmd.send(PeerCmd::SetCamera(on)).await;
    }

    pub async fn close(self) {
        let _ = self.cmd.send(PeerCmd::Close).await;
        let _ = self.task.await;
    }
}

struct Driver {
    rtc: Rtc,
    socket: UdpSocket,
    local_addr: SocketAddr,
    tcp: Option<crate::transport::TcpLink>,
    signal: Signal,
    channel: String,
    stats: Arc<Mutex<PeerStats>>,
    mic: Option<Mid>,
    source: Option<Box<dyn Source>>,
    sending: bool,
    keep_audio: bool,
    decode: bool,
    decoders: HashMap<Mid, opus::Decoder>,
    encoder: Option<(opus::Encoder, Pt)>,
    media_time: u64,
    stalled_until: Option<tokio::time::Instant>,
    drop_every: u64,
    omit_levels: bool,
    rtp_sent: u64,
    epoch: Instant,
    camera: Option<(Mid, VideoFile)>,
    camera_on: bool,
    video_mids: Vec<Mid>,
    /// RTP time of the camera's next frame (90 kHz).
    video_time: u64,
}

impl Driver {
    async fn run(mut self, mut media: mpsc::Receiver<Value>, mut cmds: mpsc::Receiver<PeerCmd>) {
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        // A microphone does not skip frames while the sender is busy: late frames go out
        // late, stamped with when they were captured, and the delay shows as latency.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let frame_interval = self
            .camera
            .as_ref()
            .map_or(Duration::from_secs(1), |(_, f)| f.interval);
        let mut video_tick = tokio::time::interval(frame_interval);
        video_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while let Some(timeout) = self.drain() {
            let stalled = self
                .stalled_until
                .is_some_and(|t| t > tokio::time::Instant::now());
            let stall_end = self.stalled_until.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                r = self.socket.recv_from(&mut buf), if !stalled => {
                    if let Ok((n, source)) = r {
                        self.input(source, &buf[..n]);
                        // Take what else is queued before re-arming the timers: one wake-up
                        // per burst instead of per packet (str0m is drained after each input).
                        for _ in 0..READ_BATCH {
                            if self.drain().is_none() {
                                break;
                            }
                            match self.socket.try_recv_from(&mut buf) {
                                Ok((n, source)) => self.input(source, &buf[..n]),
                                Err(_) => break,
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(stall_end), if stalled => {
                    self.stalled_until = None;
                }
                _ = tokio::time::sleep_until(timeout.into()) => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
                at = tick.tick(), if self.mic.is_some() => self.publish_frame(at.into_std()),
                _ = video_tick.tick(), if self.camera.is_some() => self.send_video_frame(),
                Some(frame) = crate::transport::next_frame(&mut self.tcp) => {
                    if let Some(link) = &self.tcp {
                        receive_on(&mut self.rtc, Protocol::Tcp, link.local, link.remote, &frame);
                    }
                }
                Some(ev) = media.recv() => self.media_event(ev),
                cmd = cmds.recv() => match cmd {
                    Some(PeerCmd::Stall(d)) => {
                        self.stalled_until = Some(tokio::time::Instant::now() + d);
                    }
                    Some(PeerCmd::SetSending(on)) => self.sending = on,
                    Some(PeerCmd::SetCamera(on)) => self.camera_on = on,
                    Some(PeerCmd::Close) | None => {
                        self.rtc.disconnect();
                        let _ = self.drain();
                        break;
                    }
                },
            }
        }
    }

    /// Drains output until the next timeout; `None` once the peer is closed.
    fn drain(&mut self) -> Option<Instant> {
        loop {
            if !self.rtc.is_alive() {
                return None;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    if self.drop_every > 0 && is_rtp(&t.contents) {
                        self.rtp_sent += 1;
                        if self.rtp_sent.is_multiple_of(self.drop_every) {
                            continue;
                        }
                    }
                    match &mut self.tcp {
                        Some(link) if t.proto == Protocol::Tcp => link.send(&t.contents),
                        _ => drop(self.socket.try_send_to(&t.contents, t.destination)),
                    }
                }
                Ok(Output::Event(e)) => self.event(e),
                Err(e) => {
                    tracing::debug!(error = %e, "client peer failed");
                    return None;
                }
            }
        }
    }

    fn input(&mut self, source: SocketAddr, data: &[u8]) {
        receive(&mut self.rtc, self.local_addr, source, data);
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                let mut s = self.stats.lock().expect("not poisoned");
                s.connected = true;
                s.connected_at = Some(Instant::now());
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.stats.lock().expect("not poisoned").connected = false;
            }
            Event::MediaData(data) if self.video_mids.contains(&data.mid) => {
                let mut s = self.stats.lock().expect("not poisoned");
                s.video.frames += 1;
                s.video.bytes += data.data.len() as u64;
                if crate::video::is_keyframe(&data.data) {
                    s.video.keyframes += 1;
                }
            }
            Event::KeyframeRequest(req) => {
                if let Some((mid, file)) = self.camera.as_mut() {
                    if *mid == req.mid {
                        file.restart();
                        self.stats
                            .lock()
                            .expect("not poisoned")
                            .video
                            .keyframe_requests += 1;
                    }
                }
            }
            Event::MediaData(data) => {
                let mid = data.mid;
                let now = Instant::now();
                let (lo, hi) = (**data.seq_range.start(), **data.seq_range.end());
                let latency = data
                    .ext_vals
                    .abs_capture_time
                    .and_then(|c| SystemTime::now().duration_since(c.capture_time).ok());
                let mut pcm = [0i16; FRAME_SAMPLES * 6];
                let decoded = self.decode.then(|| {
                    let decoder = self.decoders.entry(mid).or_insert_with(|| {
                        opus::Decoder::new(48_000, opus::Channels::Mono).expect("opus decoder")
                    });
                    decoder.decode(&data.data, &mut pcm, false)
                });
                let mut s = self.stats.lock().expect("not poisoned");
                let arrival = Arrival {
                    mid,
                    seq: (lo, hi),
                    media_seconds: data.time.as_seconds(),
                    latency,
                    at: now,
                };
                let slot = s.record(&arrival, self.epoch);
                match decoded {
                    Some(Ok(n)) => {
                        slot.decoded_frames += 1;
                        if self.keep_audio && slot.samples.len() + n <= MAX_KEPT_SAMPLES {
                            slot.samples.extend_from_slice(&pcm[..n]);
                        }
                    }
                    Some(Err(_)) => slot.decode_errors += 1,
                    None => {}
                }
            }
            _ => {}
        }
    }

    /// Encodes and sends the frame captured at `captured` (its tick's scheduled time).
    fn publish_frame(&mut self, captured: Instant) {
        let (Some(mid), Some(source)) = (self.mic, self.source.as_mut()) else {
            return;
        };
        if !self.rtc.is_connected() {
            return;
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        source.next_frame(&mut frame);
        self.media_time += FRAME_SAMPLES as u64;
        if !self.sending {
            return;
        }
        if self.encoder.is_none() {
            let Some(pt) = self.rtc.writer(mid).and_then(|w| {
                w.payload_params()
                    .find(|p| p.spec().codec == Codec::Opus)
                    .map(|p| p.pt())
            }) else {
                return;
            };
            let enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
                .expect("opus encoder");
            self.encoder = Some((enc, pt));
        }
        let (enc, pt) = self.encoder.as_mut().expect("set above");
        let mut out = [0u8; 1500];
        let Ok(n) = enc.encode(&frame, &mut out) else {
            return;
        };
        let level = dbov(&frame);
        let pt = *pt;
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let time = MediaTime::new(self.media_time, Frequency::FORTY_EIGHT_KHZ);
        let capture = AbsCaptureTime {
            capture_time: SystemTime::now() - captured.elapsed(),
            clock_offset: None,
        };
        let writer = writer.abs_capture_time(capture);
        let writer = if self.omit_levels {
            writer
        } else {
            writer.audio_level(-(level as i8), level < 50)
        };
        if writer
            .write(pt, Instant::now(), time, out[..n].to_vec())
            .is_ok()
        {
            self.stats.lock().expect("not poisoned").sent_packets += 1;
        }
    }

    fn send_video_frame(&mut self) {
        if !self.rtc.is_connected() || !self.camera_on {
            return;
        }
        let Some((mid, file)) = self.camera.as_mut() else {
            return;
        };
        let ticks = (file.interval.as_secs_f64() * 90_000.0) as u64;
        let frame = file.next_frame().to_vec();
        let time = MediaTime::new(self.video_time, Frequency::NINETY_KHZ);
        self.video_time += ticks;
        let Some(writer) = self.rtc.writer(*mid) else {
            return;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
        else {
            return;
        };
        if writer.write(pt, Instant::now(), time, frame).is_ok() {
            self.stats.lock().expect("not poisoned").video.sent_frames += 1;
        }
    }

    fn media_event(&mut self, ev: Value) {
        match ev["event"].as_str() {
            Some("media_offer") => {
                let Ok(offer) = SdpOffer::from_sdp_string(ev["sdp"].as_str().unwrap_or_default())
                else {
                    return;
                };
                let Ok(answer) = self.rtc.sdp_api().accept_offer(offer) else {
                    return;
                };
                let signal = self.signal.clone();
                let channel = self.channel.clone();
                tokio::spawn(async move {
                    let _ = signal
                        .send(&Request::MediaAnswer {
                            channel,
                            sdp: answer.to_sdp_string(),
                        })
                        .await;
                });
            }
            Some("track") => {
                let Some(mid) = ev["mid"].as_str() else {
                    return;
                };
                let mut s = self.stats.lock().expect("not poisoned");
                let slot = slot_mut(&mut s, Mid::from(mid));
                slot.participant = ev["participant"].as_str().map(str::to_string);
            }
            _ => {}
        }
    }
}
