//! The server under load: started here (`--spawn-server`) or reached by URL; its CPU and
//! memory from /proc, its counters from /metrics.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Sums every sample of `name` (all label sets) in the server's /metrics text.
pub async fn metric(url: &str, name: &str) -> Option<f64> {
    let text = scrape(url).await?;
    Some(sum_metric(&text, name))
}

pub fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
