//! The handles a media worker records into: counters summed locally on the hot path and
//! flushed every housekeeping tick.

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use super::*;

pub struct WorkerMetrics {
    forward_latency: Histogram,
    first_audio: Histogram,
    receiver_jitter: Histogram,
    receiver_loss: Histogram,
    rtt: Histogram,
    inbound_jitter: Histogram,
    forwarded: Counter,
    dropped: Vec<Counter>,
    peers: Gauge,
    mixer_tick: Histogram,
    mixer_buffer: Histogram,
    mixing_channels: Gauge,
    mixed_listeners: Gauge,
    mixer: [Counter; 7],
    handovers: Counter,
    sealed: Counter,
    moves: Counter,
    red_in: Counter,
    red_out: [Counter; 2],
    video_in: Counter,
    keyframe_requests: Counter,
    pending_red_out: [u64; 2],
    pending_forwarded: u64,
    pending_handovers: u64,
    pending_sealed: u64,
    pending_dropped: [u64; 9],
}

impl WorkerMetrics {
    pub fn new(worker: usize) -> Self {
        let w = worker.to_string();
        Self {
            forward_latency: histogram!(FORWARD_LATENCY),
            first_audio: histogram!(FIRST_AUDIO_LATENCY),
            receiver_jitter: histogram!(RECEIVER_JITTER),
            receiver_loss: histogram!(RECEIVER_LOSS),
            rtt: histogram!(RTT),
            inbound_jitter: histogram!(INBOUND_JITTER),
            forwarded: counter!(PACKETS_FORWARDED),
            dropped: Drop::ALL
                .iter()
                .map(|d| counter!(PACKETS_DROPPED, "reason" => d.label()))
                .collect(),
            peers: gauge!(PEERS, "worker" => w.clone()),
            mixer_tick: histogram!(MIXER_TICK),
            mixer_buffer: histogram!(MIXER_JITTER_BUFFER),
            mixing_channels: gauge!(MIXING_CHANNELS, "worker" => w.clone()),
            mixed_listeners: gauge!(MIXED_LISTENERS, "worker" => w),
            mixer: [
                counter!(MIXER_TICKS),
                counter!(MIXER_LATE_TICKS),
                counter!(MIXER_ENCODES),
                counter!(MIXER_DECODES),
                counter!(MIXER_CONCEALED),
                counter!(MIXER_FEC),
                counter!(MIXER_LIMITED),
            ],
            handovers: counter!(HANDOVERS),
            sealed: counter!(SEALED),
            moves: counter!(PEER_MOVES),
            red_in: counter!(RED_IN),
            video_in: counter!(VIDEO_IN),
            keyframe_requests: counter!(KEYFRAME_REQUESTS),
            red_out: [
                counter!(RED_OUT, "as" => "red"),
                counter!(RED_OUT, "as" => "opus"),
            ],
            pending_red_out: [0; 2],
            pending_forwarded: 0,
            pending_handovers: 0,
            pending_sealed: 0,
            pending_dropped: [0; 9],
        }
    }

    pub fn forwarded(&mut self, n: u64) {
        self.pending_forwarded += n;
    }

    pub fn drop(&mut self, reason: Drop, n: u64) {
        self.pending_dropped[reason as usize] += n;
    }

    pub fn forward_latency(&self, d: Duration) {
        self.forward_latency.record(d.as_secs_f64());
    }

    pub fn first_audio(&self, d: Duration) {
        self.first_audio.record(d.as_secs_f64());
    }

    pub fn receiver_report(&self, rtt: Option<Duration>, loss: Option<f32>, jitter: Option<f64>) {
        if let Some(rtt) = rtt {
            self.rtt.record(rtt.as_secs_f64());
        }
        if let Some(loss) = loss {
            self.receiver_loss.record(f64::from(loss));
        }
        if let Some(j) = jitter {
            self.receiver_jitter.record(j);
        }
    }

    pub fn inbound_jitter(&self, seconds: f64) {
        self.inbound_jitter.record(seconds);
    }

    /// Mixer counters since the last call, in the order of `MixerCounts`.
    pub fn mixer(&self, c: MixerCounts) {
        let values = [
            c.ticks,
            c.late,
            c.encodes,
            c.decodes,
            c.concealed,
            c.fec,
            c.limited,
        ];
        for (counter, v) in self.mixer.iter().zip(values) {
            if v > 0 {
                counter.increment(v);
            }
        }
    }

    pub fn mixer_tick(&self, d: Duration) {
        self.mixer_tick.record(d.as_secs_f64());
    }

    pub fn mixer_buffer(&self, frames: usize) {
        self.mixer_buffer.record(frames as f64);
    }

    pub fn mixing_channels(&self, n: usize) {
        self.mixing_channels.set(n as f64);
    }

    pub fn mixed_listeners(&self, n: usize) {
        self.mixed_listeners.set(n as f64);
    }

    /// A RED packet came in from a publisher.
    pub fn red_in(&self) {
        self.red_in.increment(1);
    }

    /// A RED packet went to a listener, as RED or as its primary block.
    pub fn red_out(&mut self, as_red: bool) {
        self.pending_red_out[usize::from(!as_red)] += 1;
    }

    pub fn video_in(&self) {
        self.video_in.increment(1);
    }

    pub fn keyframe_request(&self) {
        self.keyframe_requests.increment(1);
    }

    pub fn handover(&mut self) {
        self.pending_handovers += 1;
    }

    /// An audio packet the worker sealed and sent itself, without str0m.
    pub fn sealed(&mut self) {
        self.pending_sealed += 1;
    }

    pub fn peer_moved(&self) {
        self.moves.increment(1);
    }

    pub fn peers(&self, delta: i32) {
        self.peers.increment(f64::from(delta));
    }

    pub fn flush(&mut self) {
        self.forwarded
            .increment(std::mem::take(&mut self.pending_forwarded));
        self.handovers
            .increment(std::mem::take(&mut self.pending_handovers));
        self.sealed
            .increment(std::mem::take(&mut self.pending_sealed));
        for (i, n) in self.pending_red_out.iter_mut().enumerate() {
            if *n > 0 {
                self.red_out[i].increment(std::mem::take(n));
            }
        }
        for (i, n) in self.pending_dropped.iter_mut().enumerate() {
            if *n > 0 {
                self.dropped[i].increment(std::mem::take(n));
            }
        }
    }
}
