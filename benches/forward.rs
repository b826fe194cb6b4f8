//! Forwarding cost: one host, many listeners, against the real binary in its own process.
//!
//! `cargo bench --bench forward` — listener counts from `AMPHI_BENCH_LISTENERS` (default
//! `100,500,1000`), measurement window `AMPHI_BENCH_SECS` (default 10). Reports server CPU µs
//! per forwarded packet, delivery, and resident memory per peer, next to a probe that measures
//! the bare cost of one SRTP protect (AES-128-CM + HMAC-SHA1-80, with the OpenSSL calls str0m
//! makes) plus one UDP send of the same size, in the same run. Clients run in this process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use amphi::config::DEV_SIGNING_KEY;
use amphi::token::{claims_for, TokenKeys};
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};

use amphi_swarm::probe::PACKET_BYTES;

fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn scrape(addr: &str, name: &str) -> f64 {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let counts: Vec<usize> = std::env::var("AMPHI_BENCH_LISTENERS")
        .unwrap_or_else(|_| {
            if quick {
                "3".into()
            } else {
                "100,500,1000".into()
            }
        })
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let secs: u64 = std::env::var("AMPHI_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2 } else { 10 });

    let mut child = Command::new(env!("CARGO_BIN_EXE_amphi"))
        .args(["serve", "--dev", "--bind", "127.0.0.1:0", "--udp-port", "0"])
        .env("AMPHI_LOG", "warn,amphi=info")
        // The bench's own AMPHI_BENCH_* settings are not server configuration.
        .env_remove("AMPHI_BENCH_N")
        .env_remove("AMPHI_BENCH_LISTENERS")
        .env_remove("AMPHI_BENCH_SECS")
        .env("AMPHI_TIMEOUTS_AUDIENCE_COUNT_INTERVAL", "5s")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if l.contains("WARN") || l.contains("ERROR") {
                eprintln!("server: {l}");
            }
        }
    });
    let url = format!("http://{addr}");
    let keys = TokenKeys::new(DEV_SIGNING_KEY.as_bytes(), Duration::from_secs(60));
    let token = |id: &str, role: &str| {
        let mut c = claims_for(id, Duration::from_secs(3600));
        c.roles = vec![role.to_string()];
        keys.mint(&c)
    };

    let probe = amphi_swarm::probe::srtp_send(if quick { 2_000 } else { 200_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let idle_rss = rss_kib(pid);
        let host_signal = Signal::connect(&url, &token("host", "host")).await.unwrap();
        host_signal.join("bench", "host").await.unwrap();
        let host = AudioPeer::start(
            &host_signal,
            "bench",
            PeerOptions {
                publish: Some(Box::new(Tone::new(440.0))),
                slots: 0,
                ..PeerOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(host.wait_connected(Duration::from_secs(10)).await);
        let mut listeners: Vec<(Signal, AudioPeer)> = Vec::new();
        println!(
            "probe: SRTP protect + UDP send of {PACKET_BYTES} B = {:.2} µs CPU per packet",
            probe.as_secs_f64() * 1e6
        );
        println!(
            "{:>9} {:>14} {:>12} {:>10} {:>12} {:>12}",
            "listeners", "µs/fwd packet", "x bare cost", "delivery", "RSS/peer KiB", "fwd pkts/s"
        );
        for &n in &counts {
            while listeners.len() < n {
                let batch: Vec<_> = (listeners.len()..n.min(listeners.len() + 50))
                    .map(|i| {
                        let url = url.clone();
                        let t = token(&format!("l{i}"), "audience");
                        async move {
                            let s = Signal::connect(&url, &t).await.unwrap();
                            s.join("bench", "audience").await.unwrap();
                            let opts = PeerOptions {
                                slots: 1,
                                decode: false,
                                ..PeerOptions::default()
                            };
                            let p = AudioPeer::start(&s, "bench", opts).await.unwrap();
                            assert!(p.wait_connected(Duration::from_secs(30)).await);
                            (s, p)
                        }
                    })
                    .collect();
                listeners.extend(futures_util::future::join_all(batch).await);
            }
            // Let the new listeners settle before measuring.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rx0: u64 = listeners
                .iter()
                .map(|(_, p)| p.stats().received_packets())
                .sum();
            let tx0 = host.stats().sent_packets;
            let fwd0 = scrape(&addr, "amphi_packets_forwarded_total");
            let cpu0 = proc_cpu_seconds(pid);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let cpu1 = proc_cpu_seconds(pid);
            let fwd1 = scrape(&addr, "amphi_packets_forwarded_total");
            let tx1 = host.stats().sent_packets;
            let rx1: u64 = listeners
                .iter()
                .map(|(_, p)| p.stats().received_packets())
                .sum();
            let forwarded = fwd1 - fwd0;
            let per_packet = (cpu1 - cpu0) / forwarded.max(1.0);
            let expected = ((tx1 - tx0) * n as u64) as f64;
            let delivery = (rx1 - rx0) as f64 / expected.max(1.0);
            let rss_per_peer = rss_kib(pid).saturating_sub(idle_rss) as f64 / (n + 1) as f64;
            println!(
                "{n:>9} {:>14.2} {:>12.2} {:>9.2}% {:>12.1} {:>12.0}",
                per_packet * 1e6,
                per_packet / probe.as_secs_f64(),
                delivery * 100.0,
                rss_per_peer,
                forwarded / secs as f64,
            );
        }
        for (s, p) in listeners {
            p.close().await;
            s.close().await;
        }
        host.close().await;
    });
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let _ = child.wait();
}
