//! A calls run's bookkeeping: step timeouts, failures by kind, per-call timings and the
//! statistics every pair records into.

use std::collections::BTreeMap;
use std::time::Duration;

use amphi_client::ClientError;
use hdrhistogram::Histogram;

use crate::report::{histogram, CallSecond, CallsReport, FailureCounts, Percentiles};

/// Error messages kept verbatim; beyond that they are only counted.
pub(super) const MAX_ERRORS: usize = 100;
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
    /// The server refused the request for now and said when to try again (its rate limit):
    /// nothing was placed, so the same call is placed again then.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub(super) fn new(kind: FailureKind, message: String) -> Self {
        Self {
            kind,
            code: None,
            message,
            retry_after: None,
        }
    }

    pub(super) fn protocol(who: &str, what: String) -> Self {
        Self::new(FailureKind::Protocol, format!("{who}: {what}"))
    }

    pub(super) fn client(who: &str, what: &str, e: ClientError) -> Self {
        let retry_after = match &e {
            ClientError::Server {
                retry_after_ms: Some(ms),
                ..
            } => Some(Duration::from_millis(*ms)),
            _ => None,
        };
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
            retry_after,
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
    pub(super) ring: Histogram<u64>,
    pub(super) answer: Histogram<u64>,
    pub(super) setup: Histogram<u64>,
    pub(super) hangup: Histogram<u64>,
    pub(super) interval_setup: Histogram<u64>,
    pub(super) interval_ok: u64,
    pub(super) interval_failed: u64,
    pub(super) ok: u64,
    pub(super) failed: u64,
    pub(super) interrupted: u64,
    /// Placements the server refused for now with a retry hint, placed again after it.
    pub(super) deferred: u64,
    pub(super) failures: FailureCounts,
    pub(super) error_codes: BTreeMap<String, u64>,
    pub(super) errors: Vec<String>,
    pub(super) error_count: usize,
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
            deferred: 0,
            failures: FailureCounts::default(),
            error_codes: BTreeMap::new(),
            errors: Vec::new(),
            error_count: 0,
        }
    }
}

pub(super) fn record(h: &mut Histogram<u64>, d: Duration) {
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

    /// A placement refused for now (the server's rate limit): not a call, placed again.
    pub fn deferred(&mut self) {
        self.deferred += 1;
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

    pub(super) fn timings(&mut self, t: &Timings) {
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
            calls_deferred: self.deferred,
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
