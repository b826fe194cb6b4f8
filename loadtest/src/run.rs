//! Runs a scenario: hosts publish, listeners join at a rate and measure, a sampler records
//! each second; everything stops at `duration` or when `stop` resolves. `calls` runs are
//! handed to [`crate::calls`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amphi_client::{AudioPeer, Herd, HerdPeer, Meter, PeerOptions, Signal, Source, Tone, Wav};
use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::report::{histogram, Percentiles, Report, Second, ServerCost, SwarmCost};
use crate::scenario::{Kind, Scenario};
use crate::server;
use crate::tokens::token;

/// Packets per second of one Opus stream at 20 ms frames.
const PACKETS_PER_SECOND: f64 = 50.0;
/// Error messages kept verbatim; beyond that they are only counted.
const MAX_ERRORS: usize = 100;
const FIRST_AUDIO_TIMEOUT: Duration = Duration::from_secs(10);
/// Packets still in flight when a listener stops (100 ms of audio) are not counted lost.
const LATE_ALLOWANCE_PACKETS: u64 = 5;

fn source(spec: &str, index: usize) -> Result<Box<dyn Source>, String> {
    match spec.strip_prefix("wav:") {
        Some(path) => Wav::open(path.as_ref())
            .map(|w| Box::new(w) as Box<dyn Source>)
            .map_err(|e| format!("{path}: {e}")),
        // Distinct tones per host, so a listener's slots can be told apart.
        None => Ok(Box::new(Tone::new(440.0 + 110.0 * index as f64))),
    }
}

/// Shared between listener tasks and the sampler.
#[derive(Default)]
struct Shared {
    active: Vec<(Meter, usize)>,
    join: Option<Histogram<u64>>,
    first_audio: Option<Histogram<u64>>,
    latency: Option<Histogram<u64>>,
    jitters: Vec<f64>,
    received: u64,
    lost: u64,
    with_audio: usize,
    errors: Vec<String>,
    error_count: usize,
}

impl Shared {
    fn error(&mut self, e: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }
}

struct Ctx {
    url: String,
    scenario: Scenario,
    shared: Mutex<Shared>,
    /// Listener threads (none: a task per listener).
    herds: Vec<Herd>,
}

/// A listener as the swarm drives it.
enum Listening {
    Task(AudioPeer),
    Herd(HerdPeer),
}

impl std::ops::Deref for Listening {
    type Target = Meter;

    fn deref(&self) -> &Meter {
        match self {
            Listening::Task(p) => p,
            Listening::Herd(p) => p,
        }
    }
}

impl Listening {
    async fn close(self) {
        match self {
            Listening::Task(p) => p.close().await,
            Listening::Herd(p) => p.close(),
        }
    }
}

/// One listener's life: connect, join, negotiate, hear, stay, report.
async fn listener(ctx: Arc<Ctx>, index: usize, mut stop: watch::Receiver<bool>) {
    let s = &ctx.scenario;
    let channel = format!("swarm-{}", index % s.channels);
    let identity = format!("listener-{index}");
    let started = Instant::now();
    let result = async {
        let signal = Signal::connect(&ctx.url, &token(&s.signing_key, &identity, "audience"))
            .await
            .map_err(|e| format!("{identity}: {e}"))?;
        signal
            .join(&channel, "audience")
            .await
            .map_err(|e| format!("{identity}: join: {e}"))?;
        let joined = Instant::now();
        let slots = s.slots.min(s.hosts).max(1);
        let peer = match ctx.herds.get(index % ctx.herds.len().max(1)) {
            Some(herd) => herd
                .join(&signal, &channel, slots)
                .await
                .map(Listening::Herd),
            None => {
                let opts = PeerOptions {
                    slots,
                    decode: false,
                    ..PeerOptions::default()
                };
                AudioPeer::start(&signal, &channel, opts)
                    .await
                    .map(Listening::Task)
            }
        }
        .map_err(|e| format!("{identity}: media: {e}"))?;
        Ok::<_, String>((signal, peer, joined))
    }
    .await;
    let (signal, peer, joined) = match result {
        Ok(x) => x,
        Err(e) => {
            ctx.shared.lock().expect("not poisoned").error(e);
            return;
        }
    };
    let join_us = joined.duration_since(started).as_micros() as u64;
    {
        let mut sh = ctx.shared.lock().expect("not poisoned");
        let _ = sh.join.get_or_insert_with(histogram).record(join_us.max(1));
        sh.active.push(((*peer).clone(), index));
    }
    let heard = peer.wait_packets(1, FIRST_AUDIO_TIMEOUT).await;
    if heard {
        let first = peer
            .stats()
            .slots
            .iter()
            .filter_map(|x| x.first_packet)
            .min();
        if let Some(first) = first {
            let us = first.saturating_duration_since(joined).as_micros() as u64;
            let mut sh = ctx.shared.lock().expect("not poisoned");
            let _ = sh
                .first_audio
                .get_or_insert_with(histogram)
                .record(us.max(1));
        }
    }
    let lifetime = match s.kind {
        Kind::Churn => s.lifetime,
        _ => Duration::MAX,
    };
    let _ = tokio::time::timeout(lifetime, stop.wait_for(|v| *v)).await;
    let stats = peer.stats();
    {
        let mut sh = ctx.shared.lock().expect("not poisoned");
        sh.active.retain(|(_, i)| *i != index);
        if !heard {
            sh.error(format!(
                "{identity}: no audio within {FIRST_AUDIO_TIMEOUT:?}"
            ));
        } else {
            sh.with_audio += 1;
        }
        sh.latency
            .get_or_insert_with(histogram)
            .add(&stats.latency_us)
            .expect("same bounds");
        let now = Instant::now();
        for slot in &stats.slots {
            sh.received += slot.packets;
            // Lost: gaps in what arrived, or what the host sent since this slot's first
            // packet that had not arrived by the end (a listener that fell behind loses it).
            let by_time = slot.first_packet.map_or(0, |f| {
                (now.saturating_duration_since(f).as_secs_f64() * PACKETS_PER_SECOND) as u64
            });
            let missing = by_time.saturating_sub(slot.packets + LATE_ALLOWANCE_PACKETS);
            sh.lost += slot.lost().max(missing);
            if slot.packets > 0 {
                sh.jitters.push(slot.jitter);
            }
        }
    }
    peer.close().await;
    signal.close().await;
}

/// Runs `scenario` to the end (or until `stop`), printing progress when `progress` is set.
pub async fn run(
    scenario: Scenario,
    progress: bool,
    stop: impl Future<Output = ()>,
) -> Result<Report, String> {
    scenario.validate()?;
    if scenario.kind == Kind::Calls {
        return crate::calls::run(scenario, progress, stop).await;
    }
    let (mut spawned, url, pid) = server::start_or_reach(&scenario).await?;

    let mut hosts = Vec::new();
    for c in 0..scenario.channels {
        for h in 0..scenario.hosts {
            let identity = format!("host-{c}-{h}");
            let channel = format!("swarm-{c}");
            let signal = Signal::connect(&url, &token(&scenario.signing_key, &identity, "host"))
                .await
                .map_err(|e| format!("{identity}: {e}"))?;
            signal
                .join(&channel, "host")
                .await
                .map_err(|e| format!("{identity}: join: {e}"))?;
            let opts = PeerOptions {
                publish: Some(source(&scenario.source, h)?),
                slots: 0,
                decode: false,
                ..PeerOptions::default()
            };
            let peer = AudioPeer::start(&signal, &channel, opts)
                .await
                .map_err(|e| format!("{identity}: media: {e}"))?;
            if !peer.wait_connected(Duration::from_secs(10)).await {
                return Err(format!("{identity}: media did not connect within 10 s"));
            }
            if scenario.mix && h == 0 {
                signal
                    .request(
                        "set_mix",
                        serde_json::json!({"channel": channel, "policy": "mix"}),
                    )
                    .await
                    .map_err(|e| format!("{identity}: set_mix: {e}"))?;
            }
            if scenario.silent_hosts {
                peer.set_sending(false).await;
            }
            hosts.push((signal, peer));
        }
    }

    let started = Instant::now();
    let rss0 = pid.and_then(server::rss_bytes);
    let cpu0 = pid.and_then(server::cpu_seconds);
    let fwd0 = server::metric(&url, "amphi_packets_forwarded_total").await;
    let herds = (0..scenario.herd_threads)
        .map(|i| Herd::start(&format!("swarm-herd-{i}")))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("listener threads: {e}"))?;
    let ctx = Arc::new(Ctx {
        url: url.clone(),
        scenario: scenario.clone(),
        shared: Mutex::new(Shared::default()),
        herds,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let total = match scenario.kind {
        Kind::Churn => usize::MAX,
        _ => scenario.channels * scenario.listeners,
    };
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(scenario.duration.as_secs());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}",
            )
            .expect("valid template"),
        );
        bar
    });

    // Listeners join at the configured rate until there are enough (or until the end).
    let spawner = {
        let ctx = ctx.clone();
        let stop_rx = stop_rx.clone();
        let gap = Duration::from_secs_f64(1.0 / scenario.join_rate);
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            let mut tick = tokio::time::interval(gap);
            let mut i = 0;
            while i < total && !*stop_rx.borrow() {
                tick.tick().await;
                if ctx.scenario.kind == Kind::Churn {
                    let active = ctx.shared.lock().expect("not poisoned").active.len();
                    if active >= ctx.scenario.channels * ctx.scenario.listeners {
                        continue;
                    }
                }
                tasks.push(tokio::spawn(listener(ctx.clone(), i, stop_rx.clone())));
                i += 1;
            }
            (i, tasks)
        })
    };

    let mut timeline = Vec::new();
    let mut peak_rss = rss0;
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.tick().await;
    let deadline = tokio::time::sleep(scenario.duration);
    tokio::pin!(deadline);
    tokio::pin!(stop);
    let mut interrupted = false;
    let mut peak_listeners = 0;
    // Server cost is measured once every listener is in and hearing: joins and handshakes
    // are not forwarding.
    let mut steady: Option<(Option<f64>, Option<f64>)> = None;
    let mut mixer0: Option<server::MixerSnapshot> = None;
    let own = std::process::id();
    // The swarm's own CPU over the same window, and what it received in it.
    let mut swarm0 = (server::cpu_seconds(own), Instant::now(), 0u64);
    let mut received_total = 0u64;
    loop {
        tokio::select! {
            () = &mut deadline => break,
            () = &mut stop => { interrupted = true; break; }
            _ = second.tick() => {
                let active: Vec<Meter> = ctx
                    .shared
                    .lock()
                    .expect("not poisoned")
                    .active
                    .iter()
                    .map(|(p, _)| p.clone())
                    .collect();
                let mut h = histogram();
                let mut received = 0;
                let mut hearing = 0;
                for p in &active {
                    let (ph, n) = p.take_interval();
                    h.add(&ph).expect("same bounds");
                    received += n;
                    received_total += n;
                    if p.received_packets() > 0 {
                        hearing += 1;
                    }
                }
                peak_listeners = peak_listeners.max(active.len());
                if steady.is_none() && total != usize::MAX && hearing >= total {
                    steady = Some((
                        pid.and_then(server::cpu_seconds),
                        server::metric(&url, "amphi_packets_forwarded_total").await,
                    ));
                    mixer0 = server::mixer_snapshot(&url).await;
                    swarm0 = (server::cpu_seconds(own), Instant::now(), received_total);
                }
                let per_listener = if scenario.mix {
                    1.0
                } else {
                    scenario.slots.min(scenario.hosts).max(1) as f64
                };
                let s = Second {
                    t: started.elapsed().as_secs_f64(),
                    listeners: active.len(),
                    received,
                    expected: (hearing as f64 * per_listener * PACKETS_PER_SECOND) as u64,
                    latency: Percentiles::of(&h),
                };
                if let Some(pid) = pid {
                    peak_rss = peak_rss.max(server::rss_bytes(pid));
                }
                if let Some(bar) = &bar {
                    bar.set_position(s.t as u64);
                    bar.set_message(format!(
                        "listeners {} | e2e p50 {:.1} ms p99 {:.1} ms | delivery {:.2} %",
                        s.listeners,
                        s.latency.p50_ms,
                        s.latency.p99_ms,
                        if s.expected > 0 { s.received as f64 / s.expected as f64 * 100.0 } else { 0.0 },
                    ));
                }
                timeline.push(s);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = pid.and_then(server::cpu_seconds);
    let handovers = server::metric(&url, "amphi_media_handovers_total").await;
    let peer_moves = server::metric(&url, "amphi_media_peer_moves_total").await;
    let swarm_cpu = match (swarm0.0, server::cpu_seconds(own)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let window = swarm0.1.elapsed().as_secs_f64();
    // The server's window starts where the swarm's does (all listeners hearing).
    let steady_window = window;
    let window_received = received_total - swarm0.2;
    let swarm = SwarmCost {
        cpu_seconds: swarm_cpu,
        cores: swarm_cpu.filter(|_| window > 0.0).map(|c| c / window),
        herd_threads: scenario.herd_threads,
        cpu_us_per_received_packet: swarm_cpu
            .filter(|_| window_received > 0)
            .map(|c| c / window_received as f64 * 1e6),
    };
    let fwd1 = server::metric(&url, "amphi_packets_forwarded_total").await;
    let mixer = match (mixer0, server::mixer_snapshot(&url).await) {
        (Some(a), Some(b)) => b.since(&a),
        _ => None,
    };
    let (cpu0, fwd0) = match steady {
        Some((c, f)) if c.is_some() && f < fwd1 => (c, f),
        _ => (cpu0, fwd0),
    };
    let _ = stop_tx.send(true);
    let (started_listeners, tasks) = spawner.await.map_err(|e| e.to_string())?;
    let _ = tokio::time::timeout(
        Duration::from_secs(15),
        futures_util::future::join_all(tasks),
    )
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for (signal, peer) in hosts.drain(..) {
        peer.close().await;
        signal.close().await;
    }
    if let Some(s) = spawned.as_mut() {
        server::stop(s).await;
    }

    let sh = std::mem::take(&mut *ctx.shared.lock().expect("not poisoned"));
    let forwarded = match (fwd0, fwd1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let peers = (peak_listeners + scenario.channels * scenario.hosts).max(1) as f64;
    let mut errors = sh.errors;
    if sh.error_count > errors.len() {
        errors.push(format!("… and {} more", sh.error_count - errors.len()));
    }
    let jitter_mean = if sh.jitters.is_empty() {
        0.0
    } else {
        sh.jitters.iter().sum::<f64>() / sh.jitters.len() as f64
    };
    Ok(Report {
        scenario: Some(scenario.clone()),
        interrupted,
        elapsed_s: elapsed,
        hosts: scenario.channels * scenario.hosts,
        listeners_started: started_listeners,
        listeners_with_audio: sh.with_audio,
        join: sh.join.as_ref().map(Percentiles::of).unwrap_or_default(),
        first_audio: sh
            .first_audio
            .as_ref()
            .map(Percentiles::of)
            .unwrap_or_default(),
        latency: sh.latency.as_ref().map(Percentiles::of).unwrap_or_default(),
        jitter_mean_ms: jitter_mean * 1000.0,
        jitter_max_ms: sh.jitters.iter().copied().fold(0.0, f64::max) * 1000.0,
        received_packets: sh.received,
        lost_packets: sh.lost,
        delivery: if sh.received + sh.lost == 0 {
            0.0
        } else {
            sh.received as f64 / (sh.received + sh.lost) as f64
        },
        errors,
        server: ServerCost {
            probe_us_per_packet: None,
            probe_batched_us_per_packet: None,
            cpu_us_per_forwarded_packet: match (cpu, forwarded) {
                (Some(c), Some(f)) if f > 0.0 => Some(c / f * 1e6),
                _ => None,
            },
            forwarded_packets: forwarded,
            cpu_seconds: cpu,
            rss_bytes_per_peer: match (peak_rss, rss0) {
                (Some(p), Some(r)) => Some(p.saturating_sub(r) as f64 / peers),
                _ => None,
            },
            peak_rss_bytes: peak_rss,
            cores: match (cpu, steady_window) {
                (Some(c), w) if w > 0.0 => Some(c / w),
                _ => None,
            },
            handovers,
            peer_moves,
            mixer,
        },
        swarm,
        timeline,
        calls: None,
    })
}
