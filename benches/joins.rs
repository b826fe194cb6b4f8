//! Join throughput and resident memory per idle participant, against the real binary.
//!
//! `cargo bench --bench joins` (N participants: `AMPHI_BENCH_N`, default 2000). The server is
//! a separate process so that its resident memory is its own; clients run here.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use amphi::config::DEV_SIGNING_KEY;
use amphi::token::{claims_for, TokenKeys};
use amphi_proto::protocol::{encode_request, AudioMode, Request};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn rss_kib(pid: u32) -> u64 {
    amphi_swarm::server::rss_bytes(pid).expect("the server's memory") / 1024
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// Connects and joins; returns the socket and the join request's round trip.
async fn join(addr: String, token: String, channel: String) -> (Ws, Duration) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}"))
        .await
        .unwrap();
    next_json(&mut ws).await;
    let t = Instant::now();
    let join = Request::Join {
        channel,
        uri: false,
        role: Some("audience".into()),
        metadata: None,
        audio: AudioMode::Auto,
    };
    ws.send(Message::Text(encode_request(Some(1), &join).into()))
        .await
        .unwrap();
    loop {
        let v = next_json(&mut ws).await;
        if v["id"] == 1 {
            assert_eq!(v["type"], "ok", "{v}");
            return (ws, t.elapsed());
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this with no flag: do a tiny run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("AMPHI_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20 } else { 2000 });
    let mut child = Command::new(env!("CARGO_BIN_EXE_amphi"))
        .args(["serve", "--dev", "--bind", "127.0.0.1:0"])
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
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let keys = TokenKeys::new(DEV_SIGNING_KEY.as_bytes(), Duration::from_secs(60));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // One warm-up participant so the baseline includes the channel and the runtime.
        let warm = join(
            addr.clone(),
            keys.mint(&claims_for("warm", Duration::from_secs(600))),
            "bench".into(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss_kib(pid);
        let started = Instant::now();
        let mut sockets = Vec::with_capacity(n);
        let mut rtts = Vec::with_capacity(n);
        let tokens: Vec<String> = (0..n)
            .map(|i| keys.mint(&claims_for(&format!("u{i}"), Duration::from_secs(600))))
            .collect();
        for chunk in tokens.chunks(64) {
            let joins = chunk
                .iter()
                .map(|t| join(addr.clone(), t.clone(), "bench".into()));
            for (ws, rtt) in futures_util::future::join_all(joins).await {
                sockets.push(ws);
                rtts.push(rtt);
            }
        }
        let elapsed = started.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss_kib(pid);
        rtts.sort();
        println!("participants                 {n}");
        println!(
            "connect+join rate            {:.0} joins/s ({elapsed:.2?} for {n}, 64 in flight)",
            n as f64 / elapsed.as_secs_f64()
        );
        println!(
            "join round trip              p50 {:.2?}  p99 {:.2?}  max {:.2?}",
            pct(&rtts, 0.5),
            pct(&rtts, 0.99),
            rtts[rtts.len() - 1]
        );
        println!(
            "server RSS                   {before} KiB idle -> {after} KiB with {n} participants"
        );
        println!(
            "RSS per idle participant     {:.1} KiB",
            after.saturating_sub(before) as f64 / n as f64
        );
        drop(sockets);
        drop(warm);
    });
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let _ = child.wait();
}
