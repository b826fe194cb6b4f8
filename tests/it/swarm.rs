//! The swarm against a real server: a tiny run's report, and /metrics during a run.

use std::time::Duration;

use amphi_swarm::{Kind, Scenario};

fn tiny() -> Scenario {
    Scenario {
        kind: Kind::Channel,
        duration: Duration::from_secs(4),
        channels: 1,
        hosts: 1,
        listeners: 4,
        join_rate: 20.0,
        ..Scenario::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_swarm_against_a_spawned_server() {
    let scenario = Scenario {
        spawn_server: Some(env!("CARGO_BIN_EXE_amphi").into()),
        ..tiny()
    };
    let report = amphi_swarm::run(scenario, false, std::future::pending())
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.listeners_started, 4);
    assert_eq!(report.listeners_with_audio, 4, "every listener heard audio");
    assert!(report.latency.count > 100);
    assert!(
        report.latency.p50_ms > 0.0 && report.latency.p99_ms < 500.0,
        "{:?}",
        report.latency
    );
    assert!(report.first_audio.p99_ms > 0.0 && report.first_audio.p99_ms < 5000.0);
    assert!(report.join.count == 4);
    // Losses are counted against what reached each listener's socket by its stop (the herd
    // reads the rest before the tally), so a loopback run loses nothing real.
    assert!(report.delivery > 0.99, "{}", report.delivery);
    // Latency is taken at the kernel's arrival stamp; the herd's own wait is reported beside.
    assert!(report.swarm.herd_threads > 0);
    assert!(report.swarm.queue.count > 100, "{:?}", report.swarm.queue);
    assert!(report.table().contains("swarm queue"));
    let cpu = report.server.cpu_us_per_forwarded_packet.unwrap();
    assert!(cpu > 0.0);
    // The media workers' share is read per thread; it is part of the whole, never more.
    let media = report.server.media_cpu_us_per_forwarded_packet.unwrap();
    assert!(media > 0.0 && media <= cpu, "{media} of {cpu}");
    assert!(report.server.rss_bytes_per_peer.is_some());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    report.write_json(&json).unwrap();
    let parsed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(parsed["listeners_with_audio"], 4);
    assert!(parsed["timeline"].as_array().unwrap().len() >= 3);
    let svg = dir.path().join("plot.svg");
    report.plot(&svg).unwrap();
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    assert!(report.table().contains("end-to-end"));
}

const METRICS: &[&str] = &[
    "amphi_forward_latency_seconds_count",
    "amphi_inbound_jitter_seconds_count",
    "amphi_receiver_jitter_seconds_count",
    "amphi_receiver_loss_ratio_count",
    "amphi_rtt_seconds_count",
    "amphi_join_latency_seconds_count",
    "amphi_first_audio_latency_seconds_count",
    "amphi_packets_forwarded_total",
    "amphi_channels",
    "amphi_participants",
    "amphi_peers",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_during_a_swarm_run() {
    let server = crate::common::start();
    let scenario = Scenario {
        url: server.http_url(),
        // The run ends once every series has observations (listeners send RTCP receiver
        // reports every 5 s, str0m's audio interval); this bounds it if they never do.
        duration: Duration::from_secs(30),
        ..tiny()
    };
    let url = server.http_url();
    let (done, stop) = tokio::sync::oneshot::channel::<()>();
    let scrape = tokio::spawn(async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut text;
        loop {
            text = amphi_swarm::server::scrape(&url).await.unwrap();
            let observed = METRICS
                .iter()
                .all(|name| amphi_swarm::server::sum_metric(&text, name) > 0.0);
            if observed || std::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let _ = done.send(());
        text
    });
    let report = amphi_swarm::run(scenario, false, async {
        let _ = stop.await;
    })
    .await
    .unwrap();
    assert_eq!(report.listeners_with_audio, 4);
    let text = scrape.await.unwrap();
    for name in METRICS {
        let v = amphi_swarm::server::sum_metric(&text, name);
        assert!(v > 0.0, "{name} has no observations:\n{text}");
    }
    assert!(text.contains("amphi_packets_dropped_total"));
    assert!(text.contains("amphi_forward_latency_seconds_bucket{le=\"0.0001\"}"));
}
