//! The forwarding path from the inside: allocations and CPU of the media worker per packet
//! written to a listener, one host speaking to N listeners through one media worker.
//!
//! `cargo bench --bench forward` (`AMPHI_BENCH_LISTENERS`, default 50; `AMPHI_BENCH_SECONDS`,
//! default 10). The server runs in this process so that a counting allocator sees the media
//! worker's thread; the listeners (str0m, on loopback) run here too but on other threads,
//! which the counts leave out. Instruction counts: `scripts/bench-forward.sh` runs this binary
//! under `valgrind --tool=callgrind`, collecting inside the fan-out only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amphi::config::{Config, DEV_SIGNING_KEY};
use amphi::token::{claims_for, TokenKeys};
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};

/// Counts the allocations made on media worker threads (named `amphi-media-N`).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// 0 unknown, 1 a media worker, 2 another thread, 3 finding out (an allocation made
    /// while reading the thread's name is not counted).
    static KIND: Cell<u8> = const { Cell::new(0) };
}

fn on_media_thread() -> bool {
    KIND.try_with(|k| match k.get() {
        0 => {
            k.set(3);
            let media = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("amphi-media-"));
            k.set(if media { 1 } else { 2 });
            media
        }
        kind => kind == 1,
    })
    .unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if on_media_thread() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if on_media_thread() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) of this process's media worker threads.
fn media_cpu() -> Duration {
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if !head.contains("(amphi-media-") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
        ticks += fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    }
    Duration::from_secs_f64(ticks as f64 / ticks_per_s)
}

async fn forwarded(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("amphi_packets_forwarded_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn main() {
    let listeners = env("AMPHI_BENCH_LISTENERS", 50) as usize;
    let seconds = env("AMPHI_BENCH_SECONDS", 10);
    let mut config = Config::dev();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.workers = 1;
    config.media.udp_port = 0;
    config.media.workers = 1;
    config.calls.database = ":memory:".into();
    config.validate(true).unwrap();
    let server = amphi::spawn(config).unwrap();
    let url = server.http_url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let keys = TokenKeys::new(DEV_SIGNING_KEY.as_bytes(), Duration::from_secs(60));
        let token = |identity: &str, role: &str| {
            let mut c = claims_for(identity, Duration::from_secs(3600));
            c.roles = vec![role.to_string()];
            keys.mint(&c)
        };
        let mut peers = Vec::new();
        for i in 0..listeners {
            let s = Signal::connect(&url, &token(&format!("l{i}"), "audience"))
                .await
                .unwrap();
            s.join("bench", "audience").await.unwrap();
            let opts = PeerOptions {
                slots: 1,
                decode: false,
                ..PeerOptions::default()
            };
            let p = AudioPeer::start(&s, "bench", opts).await.unwrap();
            assert!(p.wait_connected(Duration::from_secs(30)).await);
            peers.push((s, p));
        }
        let host = Signal::connect(&url, &token("h", "host")).await.unwrap();
        host.join("bench", "host").await.unwrap();
        let opts = PeerOptions {
            publish: Some(Box::new(Tone::new(440.0))),
            slots: 0,
            decode: false,
            ..PeerOptions::default()
        };
        let _h = AudioPeer::start(&host, "bench", opts).await.unwrap();
        for (_, p) in &peers {
            assert!(p.wait_packets(25, Duration::from_secs(30)).await);
        }
        let (f0, a0, b0, c0) = (
            forwarded(&url).await,
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
            media_cpu(),
        );
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (f1, a1, b1, c1) = (
            forwarded(&url).await,
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
            media_cpu(),
        );
        let n = (f1 - f0).max(1) as f64;
        let received: u64 = peers.iter().map(|(_, p)| p.received_packets()).sum();
        println!(
            "forward bench: 1 host -> {listeners} listeners, one media worker, {:.1} s",
            started.elapsed().as_secs_f64()
        );
        println!("  packets written to listeners   {}", f1 - f0);
        println!(
            "  allocations per packet written {:.2}",
            (a1 - a0) as f64 / n
        );
        println!(
            "  bytes allocated per packet     {:.0}",
            (b1 - b0) as f64 / n
        );
        println!(
            "  media worker CPU per packet    {:.2} µs (from /proc, 10 ms ticks)",
            (c1 - c0).as_secs_f64() * 1e6 / n
        );
        println!("  packets received (whole run)   {received}");
        // For instruction counts: what the run forwarded in all, to divide callgrind's total.
        println!("  packets written (whole run)    {f1}");
    });
    server.shutdown().unwrap();
}
