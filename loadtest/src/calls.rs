//! The `calls` scenario: pairs of users place one-to-one audio calls back to back. Per call:
//! - ring:   call request sent → the callee got `call_incoming`;
//! - answer: accept sent → the caller got `call_connected`;
//! - setup:  call request sent → both sides received their first audio packet from the other;
//! - hangup: hang-up sent → both sides got `call_ended`.
//!
//! Every wait is bounded. A failed call is counted by the kind of its first failure, its pair
//! hangs up, reconnects and goes on; the run ends after `calls` calls or `duration`.

mod party;
mod stats;

use amphi_proto::protocol::Request;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amphi_client::AudioPeer;
use indicatif::ProgressBar;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::report::{CallSecond, Percentiles, Report, ServerCost};
use crate::scenario::Scenario;
use crate::server;
use party::{call_request, hangup_request, Party, Want};
pub use stats::{CallStats, Failure, FailureKind, Timeouts, Timings};

/// Distinct tones, so a recording of either side tells who is speaking.
const CALLER_TONE: f64 = 440.0;
const CALLEE_TONE: f64 = 660.0;
/// How long pairs get to close their connections once the run is over.
const PAIR_DRAIN: Duration = Duration::from_secs(15);

/// What a call has reached: for the report, and for cleaning up when it fails.
#[derive(Default)]
struct CallState {
    timings: Timings,
    /// Set from the call reply until the call has ended: a call to hang up when abandoning.
    call_id: Option<String>,
    /// The caller's peer, then the callee's.
    peers: Vec<AudioPeer>,
}

fn since(from: Instant, to: Instant) -> Duration {
    to.saturating_duration_since(from)
}

/// Call request and ring: returns the call's ID and when the request was sent.
async fn ring(
    a: &mut Party,
    b: &mut Party,
    st: &mut CallState,
    to: &Timeouts,
) -> Result<(String, Instant), Failure> {
    a.backlog.clear();
    b.backlog.clear();
    let caller = a.link.clone();
    let callee = b.identity().to_string();
    let call_id = &mut st.call_id;
    let t0 = Instant::now();
    let request = async {
        let reply = caller.request(call_request(&callee), to.step).await?;
        let id = reply["call_id"]
            .as_str()
            .ok_or_else(|| {
                Failure::protocol(
                    &caller.identity,
                    format!("call reply without call_id: {reply}"),
                )
            })?
            .to_string();
        *call_id = Some(id.clone());
        if reply["busy"].as_array().is_some_and(|b| !b.is_empty()) {
            return Err(Failure::new(
                FailureKind::Busy,
                format!("{}: call: busy {}", caller.identity, reply["busy"]),
            ));
        }
        Ok(id)
    };
    let incoming = b.wait(
        Want::Incoming {
            caller: &a.link.identity,
        },
        to.step,
    );
    let (id, (event, at)) = tokio::try_join!(request, incoming)?;
    if event["call_id"] != id.as_str() {
        return Err(Failure::protocol(
            &callee,
            format!(
                "call_incoming for {}, but the call is {id}",
                event["call_id"]
            ),
        ));
    }
    st.timings.ring = Some(since(t0, at));
    Ok((id, t0))
}

/// Accept and connect: returns each side's channel from its `call_connected`.
async fn answer(
    a: &mut Party,
    b: &mut Party,
    id: &str,
    st: &mut CallState,
    to: &Timeouts,
) -> Result<(String, String), Failure> {
    let callee = b.link.clone();
    let want = Want::Event {
        event: "call_connected",
        call_id: id,
    };
    let t1 = Instant::now();
    let accept = callee.request(
        Request::Accept {
            call_id: id.to_string(),
            media: None,
            on_behalf: None,
        },
        to.step,
    );
    let (_, (caller_event, at)) = tokio::try_join!(accept, a.wait(want, to.step))?;
    st.timings.answer = Some(since(t1, at));
    let (callee_event, _) = b.wait(want, to.step).await?;
    let channel = |p: &Party, v: &Value| {
        v["channel"].as_str().map(str::to_string).ok_or_else(|| {
            Failure::protocol(p.identity(), format!("call_connected without channel: {v}"))
        })
    };
    Ok((channel(a, &caller_event)?, channel(b, &callee_event)?))
}

/// Both sides join and negotiate, then wait to hear each other.
async fn media(
    a: &Party,
    b: &Party,
    channels: (&str, &str),
    t0: Instant,
    st: &mut CallState,
    to: &Timeouts,
) -> Result<(), Failure> {
    let (pa, pb) = tokio::try_join!(
        a.link.media(channels.0, CALLER_TONE, to),
        b.link.media(channels.1, CALLEE_TONE, to)
    )?;
    st.peers = vec![pa, pb];
    let (pa, pb) = (&st.peers[0], &st.peers[1]);
    let (heard_a, heard_b) = tokio::join!(
        pa.wait_packets(1, to.first_audio),
        pb.wait_packets(1, to.first_audio)
    );
    let deaf = |p: &Party, other: &Party| {
        Failure::new(
            FailureKind::NoAudio,
            format!(
                "{}: no audio from {} within {:?}",
                p.identity(),
                other.identity(),
                to.first_audio
            ),
        )
    };
    let (Some(fa), Some(fb)) = (
        pa.first_packet().filter(|_| heard_a),
        pb.first_packet().filter(|_| heard_b),
    ) else {
        return Err(if heard_a { deaf(b, a) } else { deaf(a, b) });
    };
    st.timings.setup = Some(since(t0, fa.max(fb)));
    Ok(())
}

/// The caller hangs up; both sides must hear `call_ended` with reason `hangup`.
async fn hang_up(
    a: &mut Party,
    b: &mut Party,
    id: &str,
    st: &mut CallState,
    to: &Timeouts,
) -> Result<(), Failure> {
    let caller = a.link.clone();
    let want = Want::Event {
        event: "call_ended",
        call_id: id,
    };
    let t2 = Instant::now();
    let (_, (ended_a, at_a), (ended_b, at_b)) = tokio::try_join!(
        caller.request(hangup_request(id), to.step),
        a.wait(want, to.step),
        b.wait(want, to.step)
    )?;
    st.call_id = None;
    st.timings.hangup = Some(since(t2, at_a.max(at_b)));
    for (p, v) in [(&*a, &ended_a), (&*b, &ended_b)] {
        if v["reason"] != "hangup" {
            return Err(Failure::protocol(
                p.identity(),
                format!("call_ended with reason {}, not hangup", v["reason"]),
            ));
        }
    }
    Ok(())
}

/// After the call: close both peers, leave both channels.
async fn close_and_leave(
    a: &Party,
    b: &Party,
    channels: (&str, &str),
    st: &mut CallState,
    to: &Timeouts,
) -> Result<(), Failure> {
    close_peers(std::mem::take(&mut st.peers), to.cleanup).await;
    tokio::try_join!(
        a.link.leave(channels.0, to.step),
        b.link.leave(channels.1, to.step)
    )?;
    Ok(())
}

async fn close_peers(peers: Vec<AudioPeer>, within: Duration) {
    // A peer dropped without `close` still stops (its command channel closes), so a close
    // that does not finish in time loses nothing.
    futures_util::future::join_all(
        peers
            .into_iter()
            .map(|p| tokio::time::timeout(within, p.close())),
    )
    .await;
}

/// One call from request to leave; `st` records how far it got.
async fn one_call(
    a: &mut Party,
    b: &mut Party,
    st: &mut CallState,
    to: &Timeouts,
) -> Result<(), Failure> {
    let (id, t0) = ring(a, b, st, to).await?;
    let (ca, cb) = answer(a, b, &id, st, to).await?;
    media(a, b, (&ca, &cb), t0, st, to).await?;
    hang_up(a, b, &id, st, to).await?;
    close_and_leave(a, b, (&ca, &cb), st, to).await
}

/// Best effort, bounded: end the call the server may still hold, drop the media, disconnect
/// (which also leaves every channel).
async fn abandon(parties: Option<(Party, Party)>, st: CallState, to: &Timeouts) {
    let Some((a, b)) = parties else {
        close_peers(st.peers, to.cleanup).await;
        return;
    };
    if let Some(id) = &st.call_id {
        let _ = a.link.request(hangup_request(id), to.cleanup).await;
    }
    close_peers(st.peers, to.cleanup).await;
    tokio::join!(a.link.close(to.cleanup), b.link.close(to.cleanup));
}

struct Ctx {
    url: String,
    scenario: Scenario,
    /// Makes identities unique per run, so a run never meets the calls of an earlier one.
    run_id: String,
    timeouts: Timeouts,
    /// Calls handed out so far, over all pairs.
    claimed: AtomicUsize,
    stats: Mutex<CallStats>,
}

impl Ctx {
    fn claim(&self) -> bool {
        self.claimed.fetch_add(1, Ordering::Relaxed) < self.scenario.calls
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, CallStats> {
        self.stats.lock().expect("not poisoned")
    }
}

/// Connects the pair if it is not connected, then places one call.
async fn attempt(
    ctx: &Ctx,
    parties: &mut Option<(Party, Party)>,
    names: (&str, &str),
    st: &mut CallState,
) -> Result<(), Failure> {
    let to = &ctx.timeouts;
    if parties.is_none() {
        let (url, key) = (&ctx.url, &ctx.scenario.signing_key);
        let (a, b) = tokio::try_join!(
            Party::connect(url, key, names.0, to.step),
            Party::connect(url, key, names.1, to.step)
        )?;
        *parties = Some((a, b));
    }
    let (a, b) = parties.as_mut().expect("connected above");
    one_call(a, b, st, to).await
}

/// One pair's life: calls back to back until there are none left or the run stops.
async fn pair(ctx: Arc<Ctx>, index: usize, mut stop: watch::Receiver<bool>) {
    let caller = format!("{}-{index}-caller", ctx.run_id);
    let callee = format!("{}-{index}-callee", ctx.run_id);
    let to = ctx.timeouts;
    let mut parties = None;
    // A call the server deferred keeps its claim: it is placed again, not counted twice.
    let mut again = false;
    while !*stop.borrow() && (std::mem::take(&mut again) || ctx.claim()) {
        let mut st = CallState::default();
        let outcome = tokio::select! {
            r = attempt(&ctx, &mut parties, (&caller, &callee), &mut st) => Some(r),
            _ = stop.wait_for(|v| *v) => None,
        };
        match outcome {
            Some(Ok(())) => ctx.stats().record(&st.timings, Ok(())),
            Some(Err(f)) if f.retry_after.is_some() && st.timings.ring.is_none() => {
                ctx.stats().deferred();
                again = true;
                let wait = f.retry_after.unwrap_or(to.retry_pause);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|v| *v) => {}
                }
            }
            Some(Err(f)) => {
                ctx.stats().record(&st.timings, Err(&f));
                // The server and this pair may disagree about the call now: start afresh.
                abandon(parties.take(), st, &to).await;
                tokio::select! {
                    () = tokio::time::sleep(to.retry_pause) => {}
                    _ = stop.wait_for(|v| *v) => {}
                }
            }
            None => {
                ctx.stats().interrupted(&st.timings);
                abandon(parties.take(), st, &to).await;
                break;
            }
        }
    }
    if let Some((a, b)) = parties {
        tokio::join!(a.link.close(to.cleanup), b.link.close(to.cleanup));
    }
}

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos ^ u64::from(std::process::id()).rotate_left(40);
    format!("swarm-{:012x}", mixed & 0xffff_ffff_ffff)
}

/// Runs a `calls` scenario with the default timeouts.
pub async fn run(
    scenario: Scenario,
    progress: bool,
    stop: impl Future<Output = ()>,
) -> Result<Report, String> {
    run_with(scenario, progress, stop, Timeouts::default()).await
}

/// The timeline and the server's peak memory, sampled each second.
struct Sampler {
    started: Instant,
    pid: Option<u32>,
    timeline: Vec<CallSecond>,
    peak_rss: Option<u64>,
}

impl Sampler {
    fn rss(&mut self) {
        if let Some(pid) = self.pid {
            self.peak_rss = self.peak_rss.max(server::rss_bytes(pid));
        }
    }

    /// One second of the timeline: the calls that ended in it.
    fn second(&mut self, ctx: &Ctx, bar: Option<&ProgressBar>) {
        let t = self.started.elapsed().as_secs_f64();
        let (s, finished, ok, failed, setup) = {
            let mut st = ctx.stats();
            let s = st.take_second(t);
            (
                s,
                st.finished(),
                st.ok,
                st.failed,
                Percentiles::of(&st.setup),
            )
        };
        self.rss();
        if let Some(bar) = bar {
            bar.set_position(finished);
            bar.set_message(format!(
                "ok {ok} | failed {failed} | setup p50 {:.1} ms p99 {:.1} ms",
                setup.p50_ms, setup.p99_ms
            ));
        }
        self.timeline.push(s);
    }

    /// Samples each second until `duration` has passed, `stop` resolves or every pair is
    /// done; true when it was `stop`.
    async fn until(
        &mut self,
        ctx: &Ctx,
        pairs: &mut JoinSet<()>,
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
                done = pairs.join_next() => match done {
                    None => return false,
                    Some(Err(e)) => ctx.stats().error(format!("a pair's task failed: {e}")),
                    Some(Ok(())) => {}
                },
                _ = second.tick() => self.second(ctx, bar),
            }
        }
    }
}

/// Waits, bounded by [`PAIR_DRAIN`], for the stopped pairs to hang up and close; the ones
/// still closing then are cut off.
async fn drain(ctx: &Ctx, mut pairs: JoinSet<()>) {
    let drained = tokio::time::timeout(PAIR_DRAIN, async {
        while let Some(done) = pairs.join_next().await {
            if let Err(e) = done {
                ctx.stats().error(format!("a pair's task failed: {e}"));
            }
        }
    })
    .await;
    if drained.is_err() {
        pairs.abort_all();
        ctx.stats().error(format!(
            "pairs still closing after {PAIR_DRAIN:?} were cut off"
        ));
    }
}

fn progress_bar(scenario: &Scenario) -> ProgressBar {
    let bar = ProgressBar::new(scenario.calls as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} calls {msg}",
        )
        .expect("valid template"),
    );
    bar
}

pub async fn run_with(
    scenario: Scenario,
    progress: bool,
    stop: impl Future<Output = ()>,
    timeouts: Timeouts,
) -> Result<Report, String> {
    scenario.validate()?;
    let (mut spawned, url, pid) = server::start_or_reach(&scenario).await?;

    let ctx = Arc::new(Ctx {
        url: url.clone(),
        scenario: scenario.clone(),
        run_id: run_id(),
        timeouts,
        claimed: AtomicUsize::new(0),
        stats: Mutex::new(CallStats::default()),
    });
    let started = Instant::now();
    let rss0 = pid.and_then(server::rss_bytes);
    let cpu0 = pid.and_then(server::cpu_seconds);
    let fwd0 = server::metric(&url, "amphi_packets_forwarded_total").await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pairs = JoinSet::new();
    for i in 0..scenario.concurrency {
        pairs.spawn(pair(ctx.clone(), i, stop_rx.clone()));
    }
    let bar = progress.then(|| progress_bar(&scenario));

    let mut sampler = Sampler {
        started,
        pid,
        timeline: Vec::new(),
        peak_rss: rss0,
    };
    let interrupted = sampler
        .until(&ctx, &mut pairs, bar.as_ref(), scenario.duration, stop)
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = pid.and_then(server::cpu_seconds);
    let fwd1 = server::metric(&url, "amphi_packets_forwarded_total").await;
    sampler.rss();
    let _ = stop_tx.send(true);
    drain(&ctx, pairs).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(s) = spawned.as_mut() {
        server::stop(s).await;
    }

    let server = ServerCost {
        forwarded_packets: match (fwd0, fwd1) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        },
        cpu_seconds: match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        },
        peak_rss_bytes: sampler.peak_rss,
        ..ServerCost::default()
    };
    let mut stats = ctx.stats();
    Ok(report(
        scenario,
        interrupted,
        elapsed,
        &mut stats,
        sampler.timeline,
        server,
    ))
}

/// The report from the run's readings and the pairs' statistics.
fn report(
    scenario: Scenario,
    interrupted: bool,
    elapsed: f64,
    stats: &mut CallStats,
    mut timeline: Vec<CallSecond>,
    server: ServerCost,
) -> Report {
    // The calls that ended after the last full second close the timeline, so its counts add
    // up to the totals.
    let tail = stats.take_second(elapsed);
    if tail.ok + tail.failed > 0 {
        timeline.push(tail);
    }
    let mut calls = stats.report(scenario.concurrency, elapsed, timeline);
    calls.server_cpu_ms_per_call = server
        .cpu_seconds
        .filter(|_| calls.calls_ok > 0)
        .map(|c| c * 1000.0 / calls.calls_ok as f64);
    Report {
        scenario: Some(scenario),
        interrupted,
        elapsed_s: elapsed,
        errors: stats.errors(),
        server,
        calls: Some(calls),
        ..Report::default()
    }
}

#[cfg(test)]
mod tests;
