//! The run's report: what listeners felt (join, first audio, latency, jitter, loss), what the
//! server spent, per second and in total; as a table, JSON and an SVG plot. A `calls` run
//! reports call setup instead (ring, answer, first audio both ways, hang-up).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::Scenario;

mod plot;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    pub t: f64,
    pub listeners: usize,
    pub received: u64,
    pub expected: u64,
    pub latency: Percentiles,
}

/// The load generator's own CPU: when it nears its cores, the client was the limit.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SwarmCost {
    pub cpu_seconds: Option<f64>,
    /// CPU seconds per second of the window: cores in use.
    pub cores: Option<f64>,
    /// Threads driving the listeners (0: a task per listener).
    pub herd_threads: usize,
    pub cpu_us_per_received_packet: Option<f64>,
    /// How long datagrams waited in listeners' sockets for a herd thread to read them (the
    /// kernel's arrival stamp to the read). End-to-end latency is measured to the arrival,
    /// as a listener on its own device would see it; this is the swarm's own lag beside it.
    pub queue: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerCost {
    /// Bare SRTP protect + `sendto` of one packet on this machine, same run (µs CPU).
    pub probe_us_per_packet: Option<f64>,
    /// Bare SRTP protect + a 64th of a `sendmmsg`, same run (µs CPU).
    pub probe_batched_us_per_packet: Option<f64>,
    /// Bare SRTP protect + a 64th of a `sendmmsg`, one packet to each of as many sockets as
    /// there were listeners (at most 2,000), each with a thread waiting on it (µs CPU).
    pub probe_fanout_us_per_packet: Option<f64>,
    pub probe_fanout_receivers: Option<usize>,
    /// Server CPU per packet it forwarded, over the run.
    pub cpu_us_per_forwarded_packet: Option<f64>,
    /// The part of it spent on the media workers' threads; the rest is signalling (speaker
    /// levels to every member, four times a second), HTTP and housekeeping.
    pub media_cpu_us_per_forwarded_packet: Option<f64>,
    pub forwarded_packets: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub rss_bytes_per_peer: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    /// Server CPU seconds per second over the window: cores in use.
    pub cores: Option<f64>,
    /// Datagrams read by a media worker other than their peer's, over the whole run.
    pub handovers: Option<f64>,
    /// Peers moved to the worker their packets land on, over the whole run.
    pub peer_moves: Option<f64>,
    /// The mixers over the steady window, when the server mixed.
    pub mixer: Option<MixerCost>,
}

/// The mixers' work over a window, from the server's metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MixerCost {
    pub ticks: f64,
    /// One shared encode plus one mix-minus per speaker hearing the mix, whatever the audience.
    pub encodes_per_tick: f64,
    pub late_ticks: f64,
    /// Speaker frames concealed (lost, late) of those decoded.
    pub concealed_share: Option<f64>,
    /// Upper bounds of the histogram buckets holding the median and the 99th percentile.
    pub tick_p50_ms_at_most: Option<f64>,
    pub tick_p99_ms_at_most: Option<f64>,
}

/// Failed calls by the first thing that went wrong in each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FailureCounts {
    /// A reply or an event did not come in time.
    pub timeout: u64,
    /// The server answered a request with an error (`error_codes` says which).
    pub error_reply: u64,
    /// The callee was reported busy.
    pub busy: u64,
    /// Both peers negotiated, but one side heard nothing from the other in time.
    pub no_audio: u64,
    /// The local WebRTC side could not be set up (socket, SDP).
    pub media: u64,
    /// The WebSocket could not be opened or closed under a request.
    pub connection: u64,
    /// A reply or event the protocol does not describe: a missing field, another call's ID,
    /// the call ending on its own, an unexpected end reason.
    pub protocol: u64,
}

impl FailureCounts {
    pub fn total(&self) -> u64 {
        self.timeout
            + self.error_reply
            + self.busy
            + self.no_audio
            + self.media
            + self.connection
            + self.protocol
    }
}

/// One second of a `calls` run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallSecond {
    pub t: f64,
    /// Calls that completed (ok) during this second.
    pub ok: u64,
    pub failed: u64,
    /// Setup of the calls that reached both sides' first audio during this second.
    pub setup: Percentiles,
}

/// What a `calls` run measured. Each duration is recorded when its step completes, so a call
/// that failed later still counts in the steps it passed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallsReport {
    /// Pairs of users calling at once.
    pub pairs: usize,
    pub calls_started: u64,
    /// Calls that went through every step, hang-up and leave included.
    pub calls_ok: u64,
    pub calls_failed: u64,
    /// Calls under way when the run ended (duration or Ctrl-C): neither ok nor failed.
    pub calls_interrupted: u64,
    /// Placements the server refused with a retry hint (its per-caller rate limit), each
    /// placed again after the hint: not calls, so in none of the counts above.
    pub calls_deferred: u64,
    /// `calls_ok` over the run's length.
    pub calls_per_s: f64,
    /// Call request sent → the callee got `call_incoming`.
    pub ring: Percentiles,
    /// Accept sent → the caller got `call_connected`.
    pub answer: Percentiles,
    /// Call request sent → both sides received their first audio packet from the other.
    pub setup: Percentiles,
    /// Hang-up sent → both sides got `call_ended`.
    pub hangup: Percentiles,
    pub failures: FailureCounts,
    /// Error replies by the server's `code`.
    pub error_codes: BTreeMap<String, u64>,
    /// Server CPU time per completed call, over the run (with `spawn_server`).
    pub server_cpu_ms_per_call: Option<f64>,
    pub timeline: Vec<CallSecond>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: Option<Scenario>,
    /// When the run started, UTC (`2025-01-31T09:05:00Z`).
    pub started_at: Option<String>,
    pub interrupted: bool,
    pub elapsed_s: f64,
    /// Seconds into the timeline when every listener was hearing: the cost figures cover
    /// from there to the end, warm-up excluded. None when that never happened (churn, calls,
    /// listeners that never heard).
    pub steady_from_s: Option<f64>,
    pub hosts: usize,
    pub listeners_started: usize,
    pub listeners_with_audio: usize,
    pub join: Percentiles,
    pub first_audio: Percentiles,
    pub latency: Percentiles,
    pub jitter_mean_ms: f64,
    pub jitter_max_ms: f64,
    pub received_packets: u64,
    pub lost_packets: u64,
    pub delivery: f64,
    pub errors: Vec<String>,
    pub server: ServerCost,
    /// What the swarm itself spent over the same window as the server's cost.
    pub swarm: SwarmCost,
    pub timeline: Vec<Second>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<CallsReport>,
}

impl Report {
    pub fn table(&self) -> String {
        if let Some(calls) = &self.calls {
            return self.calls_table(calls);
        }
        let p = |x: &Percentiles| {
            format!(
                "{:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                x.p50_ms, x.p95_ms, x.p99_ms, x.max_ms
            )
        };
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:.2} {unit}"));
        let mut out = String::new();
        out += &format!(
            "{}listeners: {} started, {} heard audio; hosts: {}; {:.1} s\n",
            if self.interrupted {
                "INTERRUPTED - partial report\n"
            } else {
                ""
            },
            self.listeners_started,
            self.listeners_with_audio,
            self.hosts,
            self.elapsed_s
        );
        out += "                     p50 ms   p95 ms   p99 ms   max ms\n";
        out += &format!("join             {}\n", p(&self.join));
        out += &format!("first audio      {}\n", p(&self.first_audio));
        out += &format!("end-to-end       {}\n", p(&self.latency));
        out += &format!(
            "jitter           mean {:.2} ms, max {:.2} ms\n",
            self.jitter_mean_ms, self.jitter_max_ms
        );
        out += &format!(
            "delivery         {:.3} % ({} received, {} lost)\n",
            self.delivery * 100.0,
            self.received_packets,
            self.lost_packets
        );
        out += &format!("errors           {}\n", self.errors.len());
        out += &format!(
            "server           {} CPU per forwarded packet ({} on the media threads), {} per peer\n",
            opt(self.server.cpu_us_per_forwarded_packet, "µs"),
            opt(self.server.media_cpu_us_per_forwarded_packet, "µs"),
            opt(self.server.rss_bytes_per_peer.map(|b| b / 1024.0), "KiB"),
        );
        out += &format!(
            "server cores     {} over the window; {} hand-overs, {} peer moves in the run\n",
            opt(self.server.cores, ""),
            self.server
                .handovers
                .map_or("n/a".into(), |h| format!("{h:.0}")),
            self.server
                .peer_moves
                .map_or("n/a".into(), |m| format!("{m:.0}")),
        );
        if let Some(m) = &self.server.mixer {
            out += &format!(
                "mixer            {:.0} ticks, {:.2} encodes per tick, {:.0} late, {} of speaker frames concealed; tick p50 ≤ {} p99 ≤ {}\n",
                m.ticks,
                m.encodes_per_tick,
                m.late_ticks,
                opt(m.concealed_share.map(|c| c * 100.0), "%"),
                opt(m.tick_p50_ms_at_most, "ms"),
                opt(m.tick_p99_ms_at_most, "ms"),
            );
        }
        out += &self.bare_lines();
        out += &format!(
            "swarm            {} CPU ({} cores) over the same window, {} per received packet, {}\n",
            opt(self.swarm.cpu_seconds, "s"),
            opt(self.swarm.cores, ""),
            opt(self.swarm.cpu_us_per_received_packet, "µs"),
            match self.swarm.herd_threads {
                0 => "a task per listener".to_string(),
                n => format!("listeners on {n} thread(s)"),
            }
        );
        if self.swarm.queue.count > 0 {
            out += &format!(
                "swarm queue      p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms from a listener's socket to the swarm reading it\n",
                self.swarm.queue.p50_ms, self.swarm.queue.p99_ms, self.swarm.queue.max_ms
            );
        }
        out
    }

    /// The bare costs measured in the same run, each with the server's cost as a multiple.
    fn bare_lines(&self) -> String {
        let mut out = String::new();
        let ratio = |p: f64| {
            self.server
                .cpu_us_per_forwarded_packet
                .map_or("n/a".to_string(), |c| format!("{:.2}x", c / p))
        };
        if let Some(p) = self.server.probe_us_per_packet {
            out += &format!(
                "bare cost        {p:.2} µs per SRTP protect + sendto (forward = {} of it)\n",
                ratio(p)
            );
        }
        if let Some(p) = self.server.probe_batched_us_per_packet {
            out += &format!(
                "                 {p:.2} µs per SRTP protect + sendmmsg/64 (forward = {} of it)\n",
                ratio(p)
            );
        }
        if let (Some(p), Some(n)) = (
            self.server.probe_fanout_us_per_packet,
            self.server.probe_fanout_receivers,
        ) {
            out += &format!(
                "                 {p:.2} µs per SRTP protect + sendmmsg/64 to {n} waiting sockets (forward = {} of it)\n",
                ratio(p)
            );
        }
        out
    }

    fn calls_table(&self, c: &CallsReport) -> String {
        let p = |x: &Percentiles| {
            format!(
                "{:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
                x.p50_ms, x.p90_ms, x.p99_ms, x.max_ms, x.count
            )
        };
        let mut out = String::new();
        if self.interrupted {
            out += "INTERRUPTED - partial report\n";
        }
        out += &format!(
            "calls: {} started, {} ok, {} failed, {} interrupted, {} deferred by the server's rate \
             limit; {} pairs; {:.1} s, {:.2} calls/s\n",
            c.calls_started,
            c.calls_ok,
            c.calls_failed,
            c.calls_interrupted,
            c.calls_deferred,
            c.pairs,
            self.elapsed_s,
            c.calls_per_s
        );
        out += "                     p50 ms   p90 ms   p99 ms   max ms   count\n";
        out += &format!("ring             {}\n", p(&c.ring));
        out += &format!("answer           {}\n", p(&c.answer));
        out += &format!("setup            {}\n", p(&c.setup));
        out += &format!("hangup           {}\n", p(&c.hangup));
        let f = &c.failures;
        let codes = c
            .error_codes
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        out += &format!(
            "failures         timeout {}, error reply {}{}, busy {}, no audio {}, media {}, \
             connection {}, protocol {}\n",
            f.timeout,
            f.error_reply,
            if codes.is_empty() {
                String::new()
            } else {
                format!(" ({codes})")
            },
            f.busy,
            f.no_audio,
            f.media,
            f.connection,
            f.protocol
        );
        if let Some(cpu) = c.server_cpu_ms_per_call {
            out += &format!(
                "server           {cpu:.2} ms CPU per call, peak RSS {}\n",
                self.server
                    .peak_rss_bytes
                    .map_or("n/a".to_string(), |b| format!(
                        "{:.1} MiB",
                        b as f64 / (1024.0 * 1024.0)
                    ))
            );
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            serde_json::to_string_pretty(self).expect("serializable"),
        )
    }

    /// A picture of the run: latency percentiles, delivery and listeners over time, the steady
    /// window shaded (for calls: setup percentiles and calls per second). Written as SVG at
    /// `path` and as PNG beside it (same name, `.png`); answers the PNG's path.
    pub fn plot(&self, path: &Path) -> Result<PathBuf, String> {
        plot::plot(self, path)
    }
}

/// Microsecond histograms up to a minute, three significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// The time now, UTC, as `2025-01-31T09:05:00Z`.
pub(crate) fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// Seconds since 1970 as a UTC date and time (the proleptic Gregorian calendar, by whole
/// 400-year eras from 0000-03-01, so leap years need no table).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates_cross_leap_days_and_centuries() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(utc(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
