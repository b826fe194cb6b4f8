//! A run's once-a-second sampler: the timeline, the server's peak memory, and the readings
//! that open the steady window; at the end, what the server and the swarm spent.

use std::future::Future;
use std::time::{Duration, Instant};

use amphi_client::Meter;
use indicatif::ProgressBar;

use super::listener::{Ctx, PACKETS_PER_SECOND};
use crate::report::{histogram, Percentiles, Second, ServerCost, SwarmCost};
use crate::scenario::Scenario;
use crate::server;

/// The server's readings before any listener joined.
pub(super) struct Baseline {
    rss: Option<u64>,
    cpu: ServerCpu,
    forwarded: Option<f64>,
}

/// The server's CPU seconds so far: the whole process, and its media threads.
#[derive(Clone, Copy)]
struct ServerCpu {
    total: Option<f64>,
    media: Option<f64>,
}

impl ServerCpu {
    fn read(pid: Option<u32>) -> Self {
        ServerCpu {
            total: pid.and_then(server::cpu_seconds),
            media: pid.and_then(|p| server::thread_cpu_seconds(p, server::MEDIA_THREADS)),
        }
    }

    fn since(self, earlier: ServerCpu) -> ServerCpu {
        ServerCpu {
            total: delta(earlier.total, self.total),
            media: delta(earlier.media, self.media),
        }
    }
}

fn delta(earlier: Option<f64>, later: Option<f64>) -> Option<f64> {
    Some(later? - earlier?)
}

/// CPU seconds per packet, in µs.
fn us_per_packet(cpu: Option<f64>, packets: Option<f64>) -> Option<f64> {
    match (cpu, packets) {
        (Some(c), Some(p)) if p > 0.0 => Some(c / p * 1e6),
        _ => None,
    }
}

impl Baseline {
    pub(super) async fn read(url: &str, pid: Option<u32>) -> Self {
        Baseline {
            rss: pid.and_then(server::rss_bytes),
            cpu: ServerCpu::read(pid),
            forwarded: server::metric(url, "amphi_packets_forwarded_total").await,
        }
    }
}

/// What the sampler gathered over the run, for the report.
pub(super) struct Gathered {
    pub(super) elapsed_s: f64,
    pub(super) steady_from_s: Option<f64>,
    pub(super) timeline: Vec<Second>,
    pub(super) server: ServerCost,
    pub(super) swarm: SwarmCost,
}

pub(super) struct Sampler {
    url: String,
    pid: Option<u32>,
    /// Listeners that must all hear before the steady window opens (`usize::MAX`: never).
    total: usize,
    /// Streams each hearing listener receives (one when the server mixes).
    per_listener: f64,
    started: Instant,
    base: Baseline,
    timeline: Vec<Second>,
    peak_rss: Option<u64>,
    peak_listeners: usize,
    // Server cost is measured once every listener is in and hearing: joins and handshakes
    // are not forwarding.
    /// At the steady window's start: the server's CPU and the packets it had forwarded.
    steady: Option<(ServerCpu, Option<f64>)>,
    /// When the steady window opened, on the timeline's clock.
    steady_from_s: Option<f64>,
    mixer0: Option<server::MixerSnapshot>,
    own: u32,
    /// The swarm's own CPU over the same window, and what it received in it.
    swarm0: (Option<f64>, Instant, u64),
    received_total: u64,
}

impl Sampler {
    pub(super) fn new(
        scenario: &Scenario,
        url: &str,
        pid: Option<u32>,
        total: usize,
        started: Instant,
        base: Baseline,
    ) -> Self {
        let own = std::process::id();
        Sampler {
            url: url.to_string(),
            pid,
            total,
            per_listener: if scenario.mix {
                1.0
            } else {
                scenario.slots.min(scenario.hosts).max(1) as f64
            },
            started,
            peak_rss: base.rss,
            base,
            timeline: Vec::new(),
            peak_listeners: 0,
            steady: None,
            steady_from_s: None,
            mixer0: None,
            own,
            swarm0: (server::cpu_seconds(own), Instant::now(), 0),
            received_total: 0,
        }
    }

    /// Samples each second until `duration` has passed or `stop` resolves; true when it
    /// was `stop`.
    pub(super) async fn until(
        &mut self,
        ctx: &Ctx,
        bar: Option<&ProgressBar>,
        duration: Duration,
        stop: impl Future<Output = ()>,
    ) -> bool {
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.tick().await;
        let deadline = tokio::time::sleep(duration);
        tokio::pin!(deadline);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut deadline => return false,
                () = &mut stop => return true,
                _ = second.tick() => self.second(ctx, bar).await,
            }
        }
    }

    /// One second of the timeline: what the active listeners received and how late.
    async fn second(&mut self, ctx: &Ctx, bar: Option<&ProgressBar>) {
        let active: Vec<Meter> = ctx.shared().active.iter().map(|(p, _)| p.clone()).collect();
        let mut h = histogram();
        let mut received = 0;
        let mut hearing = 0;
        for p in &active {
            let (ph, n) = p.take_interval();
            h.add(&ph).expect("same bounds");
            received += n;
            self.received_total += n;
            if p.received_packets() > 0 {
                hearing += 1;
            }
        }
        self.peak_listeners = self.peak_listeners.max(active.len());
        if self.steady.is_none() && self.total != usize::MAX && hearing >= self.total {
            self.steady = Some((
                ServerCpu::read(self.pid),
                server::metric(&self.url, "amphi_packets_forwarded_total").await,
            ));
            self.mixer0 = server::mixer_snapshot(&self.url).await;
            self.steady_from_s = Some(self.started.elapsed().as_secs_f64());
            self.swarm0 = (
                server::cpu_seconds(self.own),
                Instant::now(),
                self.received_total,
            );
        }
        let s = Second {
            t: self.started.elapsed().as_secs_f64(),
            listeners: active.len(),
            received,
            expected: (hearing as f64 * self.per_listener * PACKETS_PER_SECOND) as u64,
            latency: Percentiles::of(&h),
        };
        if let Some(pid) = self.pid {
            self.peak_rss = self.peak_rss.max(server::rss_bytes(pid));
        }
        if let Some(bar) = bar {
            bar.set_position(s.t as u64);
            bar.set_message(format!(
                "listeners {} | e2e p50 {:.1} ms p99 {:.1} ms | delivery {:.2} %",
                s.listeners,
                s.latency.p50_ms,
                s.latency.p99_ms,
                if s.expected > 0 {
                    s.received as f64 / s.expected as f64 * 100.0
                } else {
                    0.0
                },
            ));
        }
        self.timeline.push(s);
    }

    /// The closing readings, while the listeners are still in: what the server spent over
    /// the steady window (or the whole run when it never opened), and the swarm likewise.
    pub(super) async fn finish(self, scenario: &Scenario) -> Gathered {
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let cpu1 = ServerCpu::read(self.pid);
        let handovers = server::metric(&self.url, "amphi_media_handovers_total").await;
        let peer_moves = server::metric(&self.url, "amphi_media_peer_moves_total").await;
        let swarm_cpu = delta(self.swarm0.0, server::cpu_seconds(self.own));
        let window = self.swarm0.1.elapsed().as_secs_f64();
        // The server's window starts where the swarm's does (all listeners hearing).
        let steady_window = window;
        let window_received = self.received_total - self.swarm0.2;
        let swarm = SwarmCost {
            cpu_seconds: swarm_cpu,
            cores: swarm_cpu.filter(|_| window > 0.0).map(|c| c / window),
            herd_threads: scenario.herd_threads,
            cpu_us_per_received_packet: us_per_packet(swarm_cpu, Some(window_received as f64)),
            // Filled in from the herds once the listeners are gone.
            queue: Default::default(),
        };
        let fwd1 = server::metric(&self.url, "amphi_packets_forwarded_total").await;
        let mixer = match (self.mixer0, server::mixer_snapshot(&self.url).await) {
            (Some(a), Some(b)) => b.since(&a),
            _ => None,
        };
        let (cpu0, fwd0) = match self.steady {
            Some((c, f)) if c.total.is_some() && f < fwd1 => (c, f),
            _ => (self.base.cpu, self.base.forwarded),
        };
        let forwarded = delta(fwd0, fwd1);
        let spent = cpu1.since(cpu0);
        let cpu = spent.total;
        let peers = (self.peak_listeners + scenario.channels * scenario.hosts).max(1) as f64;
        let server = ServerCost {
            probe_us_per_packet: None,
            probe_batched_us_per_packet: None,
            probe_fanout_us_per_packet: None,
            probe_fanout_receivers: None,
            cpu_us_per_forwarded_packet: us_per_packet(cpu, forwarded),
            media_cpu_us_per_forwarded_packet: us_per_packet(spent.media, forwarded),
            forwarded_packets: forwarded,
            cpu_seconds: cpu,
            rss_bytes_per_peer: match (self.peak_rss, self.base.rss) {
                (Some(p), Some(r)) => Some(p.saturating_sub(r) as f64 / peers),
                _ => None,
            },
            peak_rss_bytes: self.peak_rss,
            cores: match (cpu, steady_window) {
                (Some(c), w) if w > 0.0 => Some(c / w),
                _ => None,
            },
            handovers,
            peer_moves,
            mixer,
        };
        Gathered {
            elapsed_s,
            steady_from_s: self.steady_from_s,
            timeline: self.timeline,
            server,
            swarm,
        }
    }
}
