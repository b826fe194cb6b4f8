//! Calls with media and with a database that outlives the server: both sides hear each other
//! through the call's private channel, and a server killed mid-call closes the call's rows as
//! `server_restart` when it starts again, losing no acknowledged row.

use std::process::Child;
use std::time::Duration;

use crate::common::*;
use amphi_client::audio::dominant;
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);

async fn side(
    server: &amphi::ServerHandle,
    channel: &str,
    signal: &Signal,
    freq: f64,
) -> (AudioPeer, String) {
    let joined = signal.join(channel, "host").await.unwrap();
    assert_eq!(joined["role"], "call", "the call role, whatever was asked");
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(freq))),
        slots: 1,
        keep_audio: true,
        ..PeerOptions::default()
    };
    let _ = server;
    let peer = AudioPeer::start(signal, channel, opts).await.unwrap();
    assert!(peer.wait_connected(SECS).await, "peer connected");
    (peer, joined["participant"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_of_a_call_hear_each_other() {
    let server = start();
    let base = server.http_url();
    let a = Signal::connect(&base, &token_with("alice", &[], &["call"]))
        .await
        .unwrap();
    let b = Signal::connect(&base, &token_with("bob", &[], &["call"]))
        .await
        .unwrap();
    let reply = a
        .request("call", json!({"callees": ["bob"], "media": "audio"}))
        .await
        .unwrap();
    let id = reply["call_id"].as_str().unwrap().to_string();
    b.wait_event("call_incoming", SECS).await.expect("rings");
    b.request("accept", json!({"call_id": id})).await.unwrap();
    let connected = a
        .wait_event("call_connected", SECS)
        .await
        .expect("connected");
    let channel = connected["channel"].as_str().unwrap().to_string();
    // Outsiders cannot listen in.
    let eve = Signal::connect(&base, &token_with("eve", &["host"], &["call"]))
        .await
        .unwrap();
    let err = eve
        .join(&channel, "audience")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("forbidden"), "{err}");

    let (pa, a_id) = side(&server, &channel, &a, 440.0).await;
    let (pb, b_id) = side(&server, &channel, &b, 660.0).await;
    assert!(pa.wait_packets(100, SECS).await, "alice hears bob");
    assert!(pb.wait_packets(100, SECS).await, "bob hears alice");
    let tail =
        |s: &amphi_client::SlotStats| s.samples[s.samples.len().saturating_sub(24_000)..].to_vec();
    let sa = pa.stats();
    let sb = pb.stats();
    assert_eq!(
        dominant(&tail(sa.slot_for(&b_id).unwrap()), &[440.0, 660.0]),
        660.0
    );
    assert_eq!(
        dominant(&tail(sb.slot_for(&a_id).unwrap()), &[440.0, 660.0]),
        440.0
    );

    a.request("hangup", json!({"call_id": id})).await.unwrap();
    let log = a.wait_event("call_log", SECS).await.expect("call_log");
    let row = &log["log"];
    assert_eq!(row["end_reason"], "hangup");
    assert!(
        row["first_audio_ms"].as_i64().is_some(),
        "first audio timed: {row}"
    );
    assert!(row["answer_ms"].as_i64().is_some(), "{row}");
    assert!(row["duration_ms"].as_i64().unwrap() > 0, "{row}");
    // The call's channel is stopped with the call.
    let left = b
        .wait_event("left", SECS)
        .await
        .expect("left the call channel");
    assert_eq!(left["reason"], "channel_stopped");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "amphi_call_ring_seconds_count",
        "amphi_call_answer_seconds_count",
        "amphi_call_first_audio_seconds_count",
    ] {
        let n: f64 = metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(" ").next()?.parse::<f64>().ok())
            .sum();
        assert!(n >= 1.0, "{name} observed");
    }
    pa.close().await;
    pb.close().await;
}

/// Starts `amphi serve --dev` on free ports with its call log at `db`.
fn spawn_server(db: &std::path::Path) -> (Child, String) {
    spawn_binary(&[("AMPHI_CALLS_DATABASE", db.as_os_str())])
}

async fn user(addr: &str, name: &str) -> Client {
    Client::connect_url(&format!(
        "ws://{addr}/ws?token={}",
        token_with(name, &[], &["call"])
    ))
    .await
}

async fn wait_call_event(c: &mut Client, name: &str, id: &str) -> Value {
    loop {
        let v = c.wait_event(name).await;
        if v["call_id"] == id {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_call_closes_the_row_as_server_restart_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("calls.sqlite");
    let (mut child, addr) = spawn_server(&db);
    let mut a = user(&addr, "alice").await;
    let mut b = user(&addr, "bob").await;
    // Finished calls, each acknowledged by its `call_log` event.
    let mut finished = Vec::new();
    for _ in 0..3 {
        let reply = a
            .ok("call", json!({"callees": ["bob"], "media": "audio"}))
            .await;
        let id = reply["call_id"].as_str().unwrap().to_string();
        wait_call_event(&mut b, "call_incoming", &id).await;
        b.ok("accept", json!({"call_id": id})).await;
        wait_call_event(&mut a, "call_connected", &id).await;
        b.ok("hangup", json!({"call_id": id})).await;
        wait_call_event(&mut a, "call_log", &id).await;
        wait_call_event(&mut b, "call_log", &id).await;
        finished.push(id);
    }
    // And one in progress: its `call` was acknowledged, it is connected.
    let reply = a
        .ok("call", json!({"callees": ["bob"], "media": "audio"}))
        .await;
    let open = reply["call_id"].as_str().unwrap().to_string();
    wait_call_event(&mut b, "call_incoming", &open).await;
    b.ok("accept", json!({"call_id": open})).await;
    wait_call_event(&mut a, "call_connected", &open).await;

    child.kill().unwrap(); // SIGKILL: no shutdown code runs.
    child.wait().unwrap();
    drop((a, b));

    let (mut child, addr) = spawn_server(&db);
    for name in ["alice", "bob"] {
        let mut c = user(&addr, name).await;
        let page = c
            .ok("call_logs", json!({"count": 100, "order": "asc"}))
            .await;
        let logs = page["logs"].as_array().unwrap();
        let ids: Vec<&str> = logs
            .iter()
            .map(|l| l["call_id"].as_str().unwrap())
            .collect();
        let mut expect: Vec<&str> = finished.iter().map(String::as_str).collect();
        expect.push(&open);
        assert_eq!(ids, expect, "{name}'s rows");
        for l in &logs[..3] {
            assert_eq!(l["end_reason"], "hangup", "{l}");
        }
        let last = &logs[3];
        assert_eq!(last["end_reason"], "server_restart", "{last}");
        assert!(last["connect_ms"].is_i64(), "{last}");
        assert!(
            last["end_ms"].as_i64() >= last["connect_ms"].as_i64(),
            "{last}"
        );
        let ongoing = c.ok("ongoing_calls", json!({})).await;
        assert_eq!(ongoing["logs"], json!([]));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_host_taken_into_a_call_goes_silent_in_the_channel_and_comes_back() {
    let server = start();
    let base = server.http_url();
    let host = Signal::connect(&base, &token_with("star", &["host"], &["call"]))
        .await
        .unwrap();
    host.join("show", "host").await.unwrap();
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(440.0))),
        slots: 1,
        ..PeerOptions::default()
    };
    let host_peer = AudioPeer::start(&host, "show", opts).await.unwrap();
    assert!(host_peer.wait_connected(SECS).await);
    let fan = Signal::connect(&base, &token_with("fan", &["audience"], &["call"]))
        .await
        .unwrap();
    fan.join("show", "audience").await.unwrap();
    let opts = PeerOptions {
        slots: 1,
        ..PeerOptions::default()
    };
    let listener = AudioPeer::start(&fan, "show", opts).await.unwrap();
    assert!(
        listener.wait_packets(25, SECS).await,
        "the fan hears the show"
    );

    let reply = fan
        .request(
            "call",
            json!({"callees": ["star"], "media": "audio", "live_channel": "show"}),
        )
        .await
        .unwrap();
    let id = reply["call_id"].as_str().unwrap().to_string();
    host.wait_event("call_incoming", SECS).await.expect("rings");
    // A paused host is routed as muted: its packets are dropped as such.
    let dropping = "amphi_packets_dropped_total{reason=\"muted\"}";
    let drops_before = metric(&server, dropping).await;
    host.request("accept", json!({"call_id": id}))
        .await
        .unwrap();
    let paused = fan
        .wait_event("publishing_paused", SECS)
        .await
        .expect("paused");
    assert_eq!(paused["paused"], true);
    // The show's audio stops for its audience while the call lasts: once the server drops
    // the host's packets, none reach the audience while half a second of them is dropped.
    // Ten drops (200 ms of the host's packets): the pause is applied.
    let first = wait_metric(&server, dropping, drops_before + 10.0, SECS).await;
    assert!(
        first >= drops_before + 10.0,
        "the paused host's packets are dropped"
    );
    let before = listener.received_packets();
    let dropped = wait_metric(&server, dropping, first + 25.0, SECS).await;
    assert!(
        dropped >= first + 25.0,
        "drops counted: {first} -> {dropped}"
    );
    let during = listener.received_packets() - before;
    assert!(
        during <= 2,
        "{during} packets reached the audience during the call"
    );

    fan.request("hangup", json!({"call_id": id})).await.unwrap();
    let resumed = fan
        .wait_event("publishing_paused", SECS)
        .await
        .expect("resumed");
    assert_eq!(resumed["paused"], false);
    let after = listener.received_packets();
    assert!(
        listener.wait_packets(after + 25, SECS).await,
        "the show is heard again"
    );
    listener.close().await;
    host_peer.close().await;
}
