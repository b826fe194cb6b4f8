//! The `calls` scenario: pairs of users place one-to-one audio calls back to back. Per call:
//! - ring:   call request sent → the callee got `call_incoming`;
//! - answer: accept sent → the caller got `call_connected`;
//! - setup:  call request sent → both sides received their first audio packet from the other;
//! - hangup: hang-up sent → both sides got `call_ended`.
//!
//! Every wait is bounded. A failed call is counted by the kind of its first failure, its pair
//! hangs up, reconnects and goes on; the run ends after `calls` calls or `duration`.

use amphi_proto::calls::Media;
use amphi_proto::protocol::Request;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amphi_client::{AudioPeer, ClientError, PeerOptions, Signal, Tone};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::sync::watch;

use crate::report::histogram;
use crate::report::{CallSecond, CallsReport, FailureCounts, Percentiles, Report, ServerCost};
use crate::scenario::Scenario;
use crate::server;
use crate::tokens::token_with_grants;

/// Error messages kept verbatim; beyond that they are only counted.
const MAX_ERRORS: usize = 100;
/// Distinct tones, so a recording of either side tells who is speaking.
const CALLER_TONE: f64 = 440.0;
const CALLEE_TONE: f64 = 660.0;
/// Call events read while waiting for another one are kept, since the next wait may be for
/// them; a server flooding events must not grow this without bound.
const BACKLOG: usize = 64;
/// How long pairs get to close their connections once the run is over.
const PAIR_DRAIN: Duration = Duration::from_secs(15);

/// How long each step may take before the call counts as failed.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting, each reply, each awaited event.
    pub step: Duration,
    /// From both peers negotiated to both having heard the other.
    pub first_audio: Duration,
    /// Each best-effort action when abandoning a call or closing a connection.
    pub cleanup: Duration,
    /// Pause after a failed call, so a server that refuses everything is not hit in a tight
    /// loop.
    pub retry_pause: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            step: Duration::from_secs(10),
            first_audio: Duration::from_secs(10),
            cleanup: Duration::from_secs(3),
            retry_pause: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Timeout,
    ErrorReply,
    Busy,
    NoAudio,
    Media,
    Connection,
    Protocol,
}

/// What made a call fail.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    /// The server's error code, for error replies.
    pub code: Option<String>,
    pub message: String,
}

impl Failure {
    fn new(kind: FailureKind, message: String) -> Self {
        Self {
            kind,
            code: None,
            message,
        }
    }

    fn protocol(who: &str, what: String) -> Self {
        Self::new(FailureKind::Protocol, format!("{who}: {what}"))
    }

    fn client(who: &str, what: &str, e: ClientError) -> Self {
        let (kind, code) = match &e {
            ClientError::Timeout(_) => (FailureKind::Timeout, None),
            ClientError::Server { code, .. } if code == "busy" => {
                (FailureKind::Busy, Some(code.clone()))
            }
            ClientError::Server { code, .. } => (FailureKind::ErrorReply, Some(code.clone())),
            ClientError::Media(_) => (FailureKind::Media, None),
            ClientError::Connect(_) | ClientError::Closed => (FailureKind::Connection, None),
        };
        Self {
            kind,
            code,
            message: format!("{who}: {what}: {e}"),
        }
    }
}

/// The steps one call completed, as durations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub ring: Option<Duration>,
    pub answer: Option<Duration>,
    pub setup: Option<Duration>,
    pub hangup: Option<Duration>,
}

/// Every call's outcome, shared by the pairs and the per-second sampler.
pub struct CallStats {
    ring: Histogram<u64>,
    answer: Histogram<u64>,
    setup: Histogram<u64>,
    hangup: Histogram<u64>,
    interval_setup: Histogram<u64>,
    interval_ok: u64,
    interval_failed: u64,
    ok: u64,
    failed: u64,
    interrupted: u64,
    failures: FailureCounts,
    error_codes: BTreeMap<String, u64>,
    errors: Vec<String>,
    error_count: usize,
}

impl Default for CallStats {
    fn default() -> Self {
        Self {
            ring: histogram(),
            answer: histogram(),
            setup: histogram(),
            hangup: histogram(),
            interval_setup: histogram(),
            interval_ok: 0,
            interval_failed: 0,
            ok: 0,
            failed: 0,
            interrupted: 0,
            failures: FailureCounts::default(),
            error_codes: BTreeMap::new(),
            errors: Vec::new(),
            error_count: 0,
        }
    }
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let _ = h.record(us.clamp(1, h.high()));
}

impl CallStats {
    /// One finished call: the steps it completed, and how it ended.
    pub fn record(&mut self, t: &Timings, outcome: Result<(), &Failure>) {
        self.timings(t);
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.interval_ok += 1;
            }
            Err(f) => {
                self.failed += 1;
                self.interval_failed += 1;
                let c = &mut self.failures;
                *match f.kind {
                    FailureKind::Timeout => &mut c.timeout,
                    FailureKind::ErrorReply => &mut c.error_reply,
                    FailureKind::Busy => &mut c.busy,
                    FailureKind::NoAudio => &mut c.no_audio,
                    FailureKind::Media => &mut c.media,
                    FailureKind::Connection => &mut c.connection,
                    FailureKind::Protocol => &mut c.protocol,
                } += 1;
                if let Some(code) = &f.code {
                    *self.error_codes.entry(code.clone()).or_default() += 1;
                }
                self.error(f.message.clone());
            }
        }
    }

    /// A call cut short by the end of the run: its completed steps still count.
    pub fn interrupted(&mut self, t: &Timings) {
        self.timings(t);
        self.interrupted += 1;
    }

    /// A problem that is not one call's (a pair's task failing, say).
    pub fn error(&mut self, e: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }

    fn timings(&mut self, t: &Timings) {
        if let Some(d) = t.ring {
            record(&mut self.ring, d);
        }
        if let Some(d) = t.answer {
            record(&mut self.answer, d);
        }
        if let Some(d) = t.setup {
            record(&mut self.setup, d);
            record(&mut self.interval_setup, d);
        }
        if let Some(d) = t.hangup {
            record(&mut self.hangup, d);
        }
    }

    pub fn finished(&self) -> u64 {
        self.ok + self.failed + self.interrupted
    }

    /// What happened since the previous call, as the timeline's entry for time `t`.
    pub fn take_second(&mut self, t: f64) -> CallSecond {
        let s = CallSecond {
            t,
            ok: std::mem::take(&mut self.interval_ok),
            failed: std::mem::take(&mut self.interval_failed),
            setup: Percentiles::of(&self.interval_setup),
        };
        self.interval_setup.reset();
        s
    }

    /// The error messages kept, and how many more there were.
    pub fn errors(&self) -> Vec<String> {
        let mut errors = self.errors.clone();
        if self.error_count > errors.len() {
            errors.push(format!("… and {} more", self.error_count - errors.len()));
        }
        errors
    }

    pub fn report(&self, pairs: usize, elapsed_s: f64, timeline: Vec<CallSecond>) -> CallsReport {
        CallsReport {
            pairs,
            calls_started: self.finished(),
            calls_ok: self.ok,
            calls_failed: self.failed,
            calls_interrupted: self.interrupted,
            calls_per_s: if elapsed_s > 0.0 {
                self.ok as f64 / elapsed_s
            } else {
                0.0
            },
            ring: Percentiles::of(&self.ring),
            answer: Percentiles::of(&self.answer),
            setup: Percentiles::of(&self.setup),
            hangup: Percentiles::of(&self.hangup),
            failures: self.failures.clone(),
            error_codes: self.error_codes.clone(),
            server_cpu_ms_per_call: None,
            timeline,
        }
    }
}

/// What a party waits for.
#[derive(Debug, Clone, Copy)]
enum Want<'a> {
    /// `call_incoming` from this caller: the call's ID is not known when the wait begins (the
    /// call reply and the callee's event race).
    Incoming { caller: &'a str },
    Event {
        event: &'static str,
        call_id: &'a str,
    },
}

impl Want<'_> {
    fn matches(&self, v: &Value) -> bool {
        if v["type"] != "event" {
            return false;
        }
        match *self {
            Want::Incoming { caller } => v["event"] == "call_incoming" && v["caller"] == caller,
            Want::Event { event, call_id } => v["event"] == event && v["call_id"] == call_id,
        }
    }

    /// The call ended, so what is awaited will never come: fail now rather than at the
    /// timeout.
    fn forecloses(&self, v: &Value) -> bool {
        match *self {
            Want::Event { event, call_id } => {
                event != "call_ended"
                    && v["type"] == "event"
                    && v["event"] == "call_ended"
                    && v["call_id"] == call_id
            }
            Want::Incoming { .. } => false,
        }
    }

    fn name(&self) -> &'static str {
        match *self {
            Want::Incoming { .. } => "call_incoming",
            Want::Event { event, .. } => event,
        }
    }
}

fn call_request(callee: &str) -> Request {
    Request::Call {
        callees: vec![callee.to_string()],
        media: Media::Audio,
        extra: Value::Null,
        push: Value::Null,
        live_channel: None,
        on_behalf: None,
    }
}

fn hangup_request(call_id: &str) -> Request {
    Request::Hangup {
        call_id: Some(call_id.to_string()),
        reason: None,
        on_behalf: None,
    }
}

/// One user's signalling connection; cloned so a request and an event wait on the same
/// connection can run at once.
#[derive(Clone)]
struct Link {
    identity: String,
    signal: Signal,
}

impl Link {
    async fn request(&self, req: Request, within: Duration) -> Result<Value, Failure> {
        let kind = req.kind();
        match tokio::time::timeout(within, self.signal.send(&req)).await {
            Ok(r) => r.map_err(|e| Failure::client(&self.identity, &kind, e)),
            Err(_) => Err(Failure::new(
                FailureKind::Timeout,
                format!("{}: {kind}: no reply within {within:?}", self.identity),
            )),
        }
    }

    /// Joins the call's channel on stage and starts a peer sending this side's tone.
    async fn media(&self, channel: &str, tone: f64, to: &Timeouts) -> Result<AudioPeer, Failure> {
        let join = Request::Join {
            channel: channel.into(),
            uri: false,
            role: Some("host".into()),
            metadata: None,
        };
        self.request(join, to.step).await?;
        let opts = PeerOptions {
            publish: Some(Box::new(Tone::new(tone))),
            slots: 1,
            decode: false,
            ..PeerOptions::default()
        };
        match tokio::time::timeout(to.step, AudioPeer::start(&self.signal, channel, opts)).await {
            Ok(r) => r.map_err(|e| Failure::client(&self.identity, "media", e)),
            Err(_) => Err(Failure::new(
                FailureKind::Timeout,
                format!(
                    "{}: media: not negotiated within {:?}",
                    self.identity, to.step
                ),
            )),
        }
    }

    /// A channel the server has already closed (the call's end may close it) is left too.
    async fn leave(&self, channel: &str, within: Duration) -> Result<(), Failure> {
        match self
            .request(
                Request::Leave {
                    channel: channel.into(),
                },
                within,
            )
            .await
        {
            Err(f) if f.code.as_deref() == Some("not_found") => Ok(()),
            r => r.map(|_| ()),
        }
    }

    async fn close(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.signal.close()).await;
    }
}

struct Party {
    link: Link,
    /// Call events read while waiting for another one.
    backlog: VecDeque<(Value, Instant)>,
}

impl Party {
    async fn connect(
        url: &str,
        key: &str,
        identity: &str,
        within: Duration,
    ) -> Result<Self, Failure> {
        let token = token_with_grants(key, identity, "host", &["call"]);
        let signal = match tokio::time::timeout(within, Signal::connect(url, &token)).await {
            Ok(r) => r.map_err(|e| Failure::client(identity, "connect", e))?,
            Err(_) => {
                return Err(Failure::new(
                    FailureKind::Timeout,
                    format!("{identity}: connect: no welcome within {within:?}"),
                ))
            }
        };
        Ok(Self {
            link: Link {
                identity: identity.to_string(),
                signal,
            },
            backlog: VecDeque::new(),
        })
    }

    fn identity(&self) -> &str {
        &self.link.identity
    }

    /// The awaited event and when this side saw it.
    async fn wait(
        &mut self,
        want: Want<'_>,
        within: Duration,
    ) -> Result<(Value, Instant), Failure> {
        if let Some(i) = self.backlog.iter().position(|(v, _)| want.matches(v)) {
            return Ok(self.backlog.remove(i).expect("position is in range"));
        }
        if let Some((v, _)) = self.backlog.iter().find(|(v, _)| want.forecloses(v)) {
            return Err(self.ended_early(&want, v));
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let asked = Instant::now();
            let event = if left.is_zero() {
                None
            } else {
                self.link.signal.next_event(left).await
            };
            let Some(v) = event else {
                // No event before the time was up is a timeout; no event sooner means the
                // connection's reader has stopped.
                return Err(if asked.elapsed() < left {
                    Failure::new(
                        FailureKind::Connection,
                        format!(
                            "{}: the connection closed while waiting for {}",
                            self.identity(),
                            want.name()
                        ),
                    )
                } else {
                    Failure::new(
                        FailureKind::Timeout,
                        format!("{}: no {} within {within:?}", self.identity(), want.name()),
                    )
                });
            };
            let at = Instant::now();
            if want.matches(&v) {
                return Ok((v, at));
            }
            if want.forecloses(&v) {
                return Err(self.ended_early(&want, &v));
            }
            if v.get("call_id").is_some() {
                if self.backlog.len() >= BACKLOG {
                    self.backlog.pop_front();
                }
                self.backlog.push_back((v, at));
            }
        }
    }

    fn ended_early(&self, want: &Want<'_>, ended: &Value) -> Failure {
        Failure::protocol(
            self.identity(),
            format!(
                "the call ended ({}) while waiting for {}",
                ended["reason"].as_str().unwrap_or("no reason given"),
                want.name()
            ),
        )
    }
}

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
    while !*stop.borrow() && ctx.claim() {
        let mut st = CallState::default();
        let outcome = tokio::select! {
            r = attempt(&ctx, &mut parties, (&caller, &callee), &mut st) => Some(r),
            _ = stop.wait_for(|v| *v) => None,
        };
        match outcome {
            Some(Ok(())) => ctx.stats().record(&st.timings, Ok(())),
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
    let mut pairs = tokio::task::JoinSet::new();
    for i in 0..scenario.concurrency {
        pairs.spawn(pair(ctx.clone(), i, stop_rx.clone()));
    }
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(scenario.calls as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} calls {msg}",
            )
            .expect("valid template"),
        );
        bar
    });

    let mut timeline = Vec::new();
    let mut peak_rss = rss0;
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.tick().await;
    let deadline = tokio::time::sleep(scenario.duration);
    tokio::pin!(deadline);
    tokio::pin!(stop);
    let mut interrupted = false;
    loop {
        tokio::select! {
            () = &mut deadline => break,
            () = &mut stop => { interrupted = true; break; }
            done = pairs.join_next() => match done {
                None => break,
                Some(Err(e)) => ctx.stats().error(format!("a pair's task failed: {e}")),
                Some(Ok(())) => {}
            },
            _ = second.tick() => {
                let t = started.elapsed().as_secs_f64();
                let (s, finished, ok, failed, setup) = {
                    let mut st = ctx.stats();
                    let s = st.take_second(t);
                    (s, st.finished(), st.ok, st.failed, Percentiles::of(&st.setup))
                };
                if let Some(pid) = pid {
                    peak_rss = peak_rss.max(server::rss_bytes(pid));
                }
                if let Some(bar) = &bar {
                    bar.set_position(finished);
                    bar.set_message(format!(
                        "ok {ok} | failed {failed} | setup p50 {:.1} ms p99 {:.1} ms",
                        setup.p50_ms, setup.p99_ms
                    ));
                }
                timeline.push(s);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = pid.and_then(server::cpu_seconds);
    let fwd1 = server::metric(&url, "amphi_packets_forwarded_total").await;
    if let Some(pid) = pid {
        peak_rss = peak_rss.max(server::rss_bytes(pid));
    }
    let _ = stop_tx.send(true);
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
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(s) = spawned.as_mut() {
        server::stop(s).await;
    }

    let mut stats = ctx.stats();
    // The calls that ended after the last full second close the timeline, so its counts add
    // up to the totals.
    let tail = stats.take_second(elapsed);
    if tail.ok + tail.failed > 0 {
        timeline.push(tail);
    }
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let mut calls = stats.report(scenario.concurrency, elapsed, timeline);
    calls.server_cpu_ms_per_call = cpu
        .filter(|_| calls.calls_ok > 0)
        .map(|c| c * 1000.0 / calls.calls_ok as f64);
    Ok(Report {
        scenario: Some(scenario),
        interrupted,
        elapsed_s: elapsed,
        errors: stats.errors(),
        server: ServerCost {
            forwarded_packets: match (fwd0, fwd1) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
            cpu_seconds: cpu,
            peak_rss_bytes: peak_rss,
            ..ServerCost::default()
        },
        calls: Some(calls),
        ..Report::default()
    })
}

#[cfg(test)]
mod tests;
