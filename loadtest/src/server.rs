//! The server under load: started here (`--spawn-server`) or reached by URL; its CPU and
//! memory from /proc, its counters from /metrics.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Spawned {
    pub child: Child,
    pub url: String,
    pub pid: u32,
}

/// The server a run talks to: spawned when the scenario names a binary, else its `url`.
/// Returns the spawned process (to stop and measure), the base URL and the process ID.
pub async fn start_or_reach(
    scenario: &crate::scenario::Scenario,
) -> Result<(Option<Spawned>, String, Option<u32>), String> {
    let spawned = match &scenario.spawn_server {
        Some(bin) => Some(spawn(bin).await?),
        None => None,
    };
    let url = spawned
        .as_ref()
        .map_or_else(|| scenario.url.clone(), |s| s.url.clone());
    let pid = spawned.as_ref().map(|s| s.pid);
    Ok((spawned, url, pid))
}

/// A fresh call-log file for one spawned server, removed when the run ends.
pub fn call_log_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("amphi-swarm-calls-{}.sqlite", std::process::id()))
}

/// Removes the spawned server's call log and its WAL files.
pub fn remove_call_log() {
    let base = call_log_path();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = base.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// Starts `amphi serve --dev` on free loopback ports and waits for its address.
pub async fn spawn(bin: &Path) -> Result<Spawned, String> {
    let mut child = Command::new(bin)
        .args(["serve", "--dev", "--bind", "127.0.0.1:0", "--udp-port", "0"])
        .env("AMPHI_LOG", "warn,amphi=info")
        // The call log on disk, as in production: a call's `ok` waits for its rows' fsync.
        .env("AMPHI_CALLS_DATABASE", call_log_path())
        // One swarm connection places calls back to back, far faster than a person; the
        // per-connection request limit is a policy for people, not what is measured here.
        .env("AMPHI_LIMITS_MESSAGES_PER_SECOND", "1000")
        .env("AMPHI_LIMITS_MESSAGE_BURST", "2000")
        // Each of the swarm's caller identities places calls back to back.
        .env("AMPHI_CALLS_MAX_CALLS_PER_MINUTE", "100000")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id().ok_or("the server exited at once")?;
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest
                    .split_whitespace()
                    .next()
                    .map(|a| format!("http://{a}"));
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or("the server did not announce its address within 20 s")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Spawned { child, url, pid })
}

/// Stops a spawned server the way Ctrl-C would, so it shuts down cleanly, and waits for it.
pub async fn stop(s: &mut Spawned) {
    let _ = Command::new("kill")
        .args(["-INT", &s.pid.to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), s.child.wait()).await;
    remove_call_log();
}

/// CPU seconds (user + system) the process has used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = process(pid)?.stat().ok()?;
    // /proc counts in clock ticks, whose rate the kernel was built with (usually, not
    // always, 100 per second).
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// The server's threads that carry media (`amphi-media-0`, `amphi-media-1`, …, and the
/// ICE-TCP one); the rest is signalling, HTTP and housekeeping.
pub const MEDIA_THREADS: &str = "amphi-media";

/// CPU seconds the process's threads named `prefix…` have used (threads that ended are
/// not counted: the server's media workers live as long as it does).
pub fn thread_cpu_seconds(pid: u32, prefix: &str) -> Option<f64> {
    let mut ticks = 0u64;
    for task in process(pid)?.tasks().ok()?.flatten() {
        let Ok(stat) = task.stat() else { continue };
        if stat.comm.starts_with(prefix) {
            ticks += stat.utime + stat.stime;
        }
    }
    Some(ticks as f64 / procfs::ticks_per_second() as f64)
}

/// Resident memory of the process.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let kib = process(pid)?.status().ok()?.vmrss?;
    Some(kib * 1024)
}

fn process(pid: u32) -> Option<procfs::process::Process> {
    procfs::process::Process::new(i32::try_from(pid).ok()?).ok()
}

/// Sums every sample of `name` (all label sets) in the server's /metrics text.
pub async fn metric(url: &str, name: &str) -> Option<f64> {
    let text = scrape(url).await?;
    Some(sum_metric(&text, name))
}

pub fn sum_metric(text: &str, name: &str) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            Value::Histogram(_) | Value::Summary(_) => None,
        })
        .sum()
}

/// Every sample in `text`. Lines that are not exposition, such as the HTTP status line and
/// headers [`scrape`] leaves in, are skipped. A histogram's buckets come as one sample named
/// after the histogram (its `_count` and `_sum` as their own samples).
fn samples(text: &str) -> Vec<Sample> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    // Only a failing line source is an error, and lines of a string never fail.
    Scrape::parse(lines).map_or_else(|_| Vec::new(), |s| s.samples)
}

/// GET /metrics with a plain HTTP/1.1 request (no client library needed for one call).
pub async fn scrape(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(body)
}

/// The mixers' counters at one moment, from one scrape.
#[derive(Debug, Clone, Default)]
pub struct MixerSnapshot {
    pub ticks: f64,
    pub late: f64,
    pub encodes: f64,
    pub decodes: f64,
    pub concealed: f64,
    /// The tick-duration histogram: (upper bound in seconds, cumulative count).
    pub buckets: Vec<(f64, f64)>,
}

pub async fn mixer_snapshot(url: &str) -> Option<MixerSnapshot> {
    let text = scrape(url).await?;
    Some(mixer_in(&text))
}

pub fn mixer_in(text: &str) -> MixerSnapshot {
    let samples = samples(text);
    // One histogram per label set (worker): their buckets add up.
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let histograms = samples.iter().filter_map(|s| match &s.value {
        Value::Histogram(h) if s.metric == "amphi_mixer_tick_seconds" => Some(h),
        _ => None,
    });
    for bucket in histograms.flatten() {
        match buckets.iter_mut().find(|(le, _)| *le == bucket.less_than) {
            Some((_, c)) => *c += bucket.count,
            None => buckets.push((bucket.less_than, bucket.count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    MixerSnapshot {
        ticks: sum_metric(text, "amphi_mixer_ticks_total"),
        late: sum_metric(text, "amphi_mixer_late_ticks_total"),
        encodes: sum_metric(text, "amphi_mixer_encodes_total"),
        decodes: sum_metric(text, "amphi_mixer_decodes_total"),
        concealed: sum_metric(text, "amphi_mixer_concealed_frames_total"),
        buckets,
    }
}

impl MixerSnapshot {
    /// What happened between `earlier` and `self`; `None` when no tick ran.
    pub fn since(&self, earlier: &MixerSnapshot) -> Option<crate::report::MixerCost> {
        let ticks = self.ticks - earlier.ticks;
        if ticks <= 0.0 {
            return None;
        }
        let counts: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .map(|&(le, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == le)
                    .map_or(0.0, |(_, c)| *c);
                (le, c - before)
            })
            .collect();
        // A quantile's bucket bound: an upper limit of the tick's duration.
        let quantile = |q: f64| {
            let total = counts.last().map_or(0.0, |(_, c)| *c);
            counts
                .iter()
                .find(|(_, c)| *c >= q * total && total > 0.0)
                .map(|(le, _)| le * 1000.0)
        };
        Some(crate::report::MixerCost {
            ticks,
            encodes_per_tick: (self.encodes - earlier.encodes) / ticks,
            late_ticks: self.late - earlier.late,
            concealed_share: {
                let decodes = self.decodes - earlier.decodes;
                (decodes > 0.0).then(|| (self.concealed - earlier.concealed) / decodes)
            },
            tick_p50_ms_at_most: quantile(0.5),
            tick_p99_ms_at_most: quantile(0.99),
        })
    }
}

#[cfg(test)]
mod proc_tests {
    #[test]
    fn this_process_has_used_cpu_and_memory() {
        let me = std::process::id();
        // Spin until the kernel has charged at least one clock tick.
        let spin = std::time::Instant::now();
        while super::cpu_seconds(me).unwrap() == 0.0 && spin.elapsed().as_secs() < 5 {}
        assert!(super::cpu_seconds(me).unwrap() > 0.0);
        let rss = super::rss_bytes(me).unwrap();
        assert!(rss > 1 << 20 && rss.is_multiple_of(1024), "{rss}");
        assert_eq!(super::cpu_seconds(u32::MAX), None);
        // A thread of ours, named, that spins until /proc has counted its CPU.
        let spun = std::thread::Builder::new()
            .name("proc-test-spin".into())
            .spawn(move || {
                let start = std::time::Instant::now();
                while super::thread_cpu_seconds(me, "proc-test-spin").unwrap() == 0.0
                    && start.elapsed().as_secs() < 5
                {}
                super::thread_cpu_seconds(me, "proc-test-spin").unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(spun > 0.0);
        assert_eq!(super::thread_cpu_seconds(me, "no-such-thread"), Some(0.0));
        // Every live thread's share, read first, is within the process's total.
        let live = super::thread_cpu_seconds(me, "").unwrap();
        assert!(live <= super::cpu_seconds(me).unwrap(), "{live}");
        assert_eq!(super::rss_bytes(u32::MAX), None);
    }
}

#[cfg(test)]
mod mixer_tests {
    use super::mixer_in;

    #[test]
    fn mixer_work_over_a_window_comes_from_two_scrapes() {
        let at = |ticks: f64, fast: f64| {
            format!(
                "amphi_mixer_ticks_total {ticks}\n\
                 amphi_mixer_encodes_total {}\n\
                 amphi_mixer_late_ticks_total 1\n\
                 # TYPE amphi_mixer_tick_seconds histogram\n\
                 amphi_mixer_tick_seconds_bucket{{le=\"0.001\"}} {fast}\n\
                 amphi_mixer_tick_seconds_bucket{{le=\"0.005\"}} {ticks}\n\
                 amphi_mixer_tick_seconds_bucket{{le=\"+Inf\"}} {ticks}\n",
                ticks * 11.0
            )
        };
        let a = mixer_in(&at(100.0, 100.0));
        let b = mixer_in(&at(300.0, 250.0));
        let cost = b.since(&a).unwrap();
        assert_eq!(cost.ticks, 200.0);
        assert_eq!(cost.encodes_per_tick, 11.0);
        assert_eq!(cost.late_ticks, 0.0);
        assert_eq!(cost.tick_p50_ms_at_most, Some(1.0));
        assert_eq!(cost.tick_p99_ms_at_most, Some(5.0));
        assert!(a.since(&a).is_none(), "no tick, no figures");
    }
}

#[cfg(test)]
mod scrape_tests {
    use super::{mixer_in, sum_metric};

    /// A /metrics response as [`super::scrape`] returns it, in the exporter's format: HTTP
    /// head, HELP and TYPE lines, labelled series, one histogram per mixer worker.
    const SCRAPE: &str = "HTTP/1.1 200 OK\r
content-length: 1234\r
content-type: text/plain; version=0.0.4\r
\r
# HELP amphi_packets_forwarded_total Packets forwarded to listeners.
# TYPE amphi_packets_forwarded_total counter
amphi_packets_forwarded_total 1500
# TYPE amphi_packets_forwarded_total_extra counter
amphi_packets_forwarded_total_extra 7
# TYPE amphi_packets_dropped_total counter
amphi_packets_dropped_total{reason=\"queue_full\"} 2
amphi_packets_dropped_total{reason=\"no_route\"} 3
# TYPE amphi_peers gauge
amphi_peers 4
# TYPE amphi_mixer_ticks_total counter
amphi_mixer_ticks_total{worker=\"0\"} 100
amphi_mixer_ticks_total{worker=\"1\"} 50
# HELP amphi_mixer_tick_seconds Time one mixer tick took.
# TYPE amphi_mixer_tick_seconds histogram
amphi_mixer_tick_seconds_bucket{worker=\"0\",le=\"0.001\"} 90
amphi_mixer_tick_seconds_bucket{worker=\"0\",le=\"0.005\"} 100
amphi_mixer_tick_seconds_bucket{worker=\"0\",le=\"+Inf\"} 100
amphi_mixer_tick_seconds_sum{worker=\"0\"} 0.2
amphi_mixer_tick_seconds_count{worker=\"0\"} 100
amphi_mixer_tick_seconds_bucket{worker=\"1\",le=\"0.001\"} 10
amphi_mixer_tick_seconds_bucket{worker=\"1\",le=\"0.005\"} 40
amphi_mixer_tick_seconds_bucket{worker=\"1\",le=\"+Inf\"} 50
amphi_mixer_tick_seconds_sum{worker=\"1\"} 0.3
amphi_mixer_tick_seconds_count{worker=\"1\"} 50
";

    #[test]
    fn counters_gauges_and_histogram_counts_are_summed_over_label_sets() {
        assert_eq!(sum_metric(SCRAPE, "amphi_packets_forwarded_total"), 1500.0);
        assert_eq!(sum_metric(SCRAPE, "amphi_packets_dropped_total"), 5.0);
        assert_eq!(sum_metric(SCRAPE, "amphi_peers"), 4.0);
        assert_eq!(sum_metric(SCRAPE, "amphi_mixer_tick_seconds_count"), 150.0);
        assert_eq!(sum_metric(SCRAPE, "amphi_mixer_tick_seconds_sum"), 0.5);
        assert_eq!(sum_metric(SCRAPE, "amphi_absent"), 0.0);
    }

    #[test]
    fn histogram_buckets_add_up_across_workers() {
        let mixer = mixer_in(SCRAPE);
        assert_eq!(mixer.ticks, 150.0);
        assert_eq!(
            mixer.buckets,
            [(0.001, 100.0), (0.005, 140.0), (f64::INFINITY, 150.0)]
        );
    }
}
