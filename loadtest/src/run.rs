//! Runs a scenario: hosts publish, listeners join at a rate and measure, a sampler records
//! each second; everything stops at `duration` or when `stop` resolves. `calls` runs are
//! handed to [`crate::calls`].
//!
//! - `hosts`    — the speaking peers, on a thread of their own.
//! - `listener` — one listener's life, and the tally the listeners share.
//! - `sampler`  — the timeline each second, and the server's and the swarm's cost.

mod hosts;
mod listener;
mod sampler;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amphi_client::Herd;
use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::report::{Percentiles, Report};
use crate::scenario::{Kind, Scenario};
use crate::server;
use hosts::Hosts;
use listener::{listener, Ctx, Shared};
use sampler::{Baseline, Gathered, Sampler};

/// Listeners join at the configured rate until `total` have started (or until the end);
/// under churn, only while fewer than the scenario's listeners are in. Returns how many
/// started, and their tasks.
async fn spawn_listeners(
    ctx: Arc<Ctx>,
    total: usize,
    stop: watch::Receiver<bool>,
) -> (usize, Vec<JoinHandle<()>>) {
    let gap = Duration::from_secs_f64(1.0 / ctx.scenario.join_rate);
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(gap);
    let mut i = 0;
    while i < total && !*stop.borrow() {
        tick.tick().await;
        if ctx.scenario.kind == Kind::Churn {
            let active = ctx.shared().active.len();
            if active >= ctx.scenario.channels * ctx.scenario.listeners {
                continue;
            }
        }
        tasks.push(tokio::spawn(listener(ctx.clone(), i, stop.clone())));
        i += 1;
    }
    (i, tasks)
}

fn progress_bar(scenario: &Scenario) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(scenario.duration.as_secs());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
            .expect("valid template"),
    );
    bar
}

/// Runs `scenario` to the end (or until `stop`), printing progress when `progress` is set.
pub async fn run(
    scenario: Scenario,
    progress: bool,
    stop: impl Future<Output = ()>,
) -> Result<Report, String> {
    scenario.validate()?;
    let started_at = crate::report::utc_now();
    let mut report = if scenario.kind == Kind::Calls {
        crate::calls::run(scenario, progress, stop).await?
    } else {
        run_listeners(scenario, progress, stop).await?
    };
    report.started_at = Some(started_at);
    Ok(report)
}

/// A `channel` or `churn` run.
async fn run_listeners(
    scenario: Scenario,
    progress: bool,
    stop: impl Future<Output = ()>,
) -> Result<Report, String> {
    let (mut spawned, url, pid) = server::start_or_reach(&scenario).await?;
    let hosts = Hosts::start(&scenario, &url).await?;

    let started = Instant::now();
    let base = Baseline::read(&url, pid).await;
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
    let bar = progress.then(|| progress_bar(&scenario));
    let spawner = tokio::spawn(spawn_listeners(ctx.clone(), total, stop_rx));

    let mut sampler = Sampler::new(&scenario, &url, pid, total, started, base);
    let interrupted = sampler
        .until(&ctx, bar.as_ref(), scenario.duration, stop)
        .await;
    let gathered = sampler.finish(&scenario).await;
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
    hosts.stop().await;
    if let Some(s) = spawned.as_mut() {
        server::stop(s).await;
    }

    let sh = std::mem::take(&mut *ctx.shared());
    let mut gathered = gathered;
    gathered.swarm.queue = queue_delay(&ctx.herds);
    Ok(report(
        scenario,
        interrupted,
        started_listeners,
        gathered,
        sh,
    ))
}

/// The herds' socket-to-thread waits, all together.
fn queue_delay(herds: &[Herd]) -> Percentiles {
    let mut all: Option<Histogram<u64>> = None;
    for h in herds {
        let q = h.queue_delay();
        match all.as_mut() {
            Some(a) => {
                let _ = a.add(&q);
            }
            None => all = Some(q),
        }
    }
    all.as_ref().map(Percentiles::of).unwrap_or_default()
}

/// The report from the sampler's readings and the listeners' tallies.
fn report(
    scenario: Scenario,
    interrupted: bool,
    listeners_started: usize,
    gathered: Gathered,
    sh: Shared,
) -> Report {
    let mut errors = sh.errors;
    if sh.error_count > errors.len() {
        errors.push(format!("… and {} more", sh.error_count - errors.len()));
    }
    let jitter_mean = if sh.jitters.is_empty() {
        0.0
    } else {
        sh.jitters.iter().sum::<f64>() / sh.jitters.len() as f64
    };
    Report {
        hosts: scenario.channels * scenario.hosts,
        scenario: Some(scenario),
        started_at: None,
        interrupted,
        elapsed_s: gathered.elapsed_s,
        steady_from_s: gathered.steady_from_s,
        listeners_started,
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
        server: gathered.server,
        swarm: gathered.swarm,
        timeline: gathered.timeline,
        calls: None,
    }
}
