//! Video in calls, with real Rust clients (str0m) on loopback: each member's camera reaches
//! the other through the call's channel, a new receiver's sender is asked for a keyframe,
//! and a change to audio stops video both ways (and back to video starts it again).

use std::time::{Duration, Instant};

use crate::common::*;
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone, VideoFile};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);

/// Polls `f` until it holds (bounded).
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + SECS;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn member(signal: &Signal, channel: &str, freq: f64) -> AudioPeer {
    signal.join(channel, "call").await.unwrap();
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(freq))),
        slots: 1,
        camera: Some(VideoFile::test_pattern()),
        video_slots: 1,
        ..PeerOptions::default()
    };
    let peer = AudioPeer::start(signal, channel, opts).await.unwrap();
    assert!(peer.wait_connected(SECS).await, "peer connected");
    peer
}

/// Alice calls Bob with `media`; Bob accepts; returns both signals, the call ID and channel.
async fn call(server: &amphi::ServerHandle, media: &str) -> (Signal, Signal, String, String) {
    let base = server.http_url();
    let a = Signal::connect(&base, &token_with("alice", &[], &["call"]))
        .await
        .unwrap();
    let b = Signal::connect(&base, &token_with("bob", &[], &["call"]))
        .await
        .unwrap();
    let reply = a
        .request("call", json!({"callees": ["bob"], "media": media}))
        .await
        .unwrap();
    let id = reply["call_id"].as_str().unwrap().to_string();
    b.wait_event("call_incoming", SECS).await.expect("rings");
    b.request("accept", json!({"call_id": id, "media": media}))
        .await
        .unwrap();
    let connected = a
        .wait_event("call_connected", SECS)
        .await
        .expect("connected");
    let channel = connected["channel"].as_str().unwrap().to_string();
    (a, b, id, channel)
}

/// Alice asks for `media`, Bob agrees; both see the result.
async fn change(a: &Signal, b: &Signal, id: &str, media: &str) {
    let tx: Value = a
        .request("media_change", json!({"call_id": id, "media": media}))
        .await
        .unwrap();
    b.wait_event("media_change_requested", SECS).await.unwrap();
    b.request(
        "media_change_reply",
        json!({"transaction": tx["transaction"], "agree": true}),
    )
    .await
    .unwrap();
    // Each side also holds the results of earlier changes: this one is by its transaction.
    let result = loop {
        let r = a.wait_event("media_change_result", SECS).await.unwrap();
        if r["transaction"] == tx["transaction"] {
            break r;
        }
    };
    assert_eq!(result["result"], "accepted", "{result}");
    assert_eq!(result["media"], media);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_video_call_see_each_other_until_it_turns_to_audio() {
    let server = start();
    let (a, b, id, channel) = call(&server, "video").await;
    let pa = member(&a, &channel, 440.0).await;
    let pb = member(&b, &channel, 660.0).await;
    // Each decodes-ready stream starts at a keyframe: a receiver's slot binding asked the
    // other side's camera for one.
    until("alice sees bob", || pa.stats().video.keyframes >= 1).await;
    until("bob sees alice", || pb.stats().video.keyframes >= 1).await;
    until("a few frames each way", || {
        pa.stats().video.frames >= 10 && pb.stats().video.frames >= 10
    })
    .await;
    assert!(pa.stats().video.keyframe_requests + pb.stats().video.keyframe_requests >= 1);
    // Audio flows beside it.
    assert!(pa.wait_packets(50, SECS).await && pb.wait_packets(50, SECS).await);
    let forwarded = metric(&server, "amphi_video_packets_total").await;
    assert!(forwarded >= 20.0, "counted {forwarded}");

    // To audio: video stops both ways, audio goes on.
    change(&a, &b, &id, "audio").await;
    let dropping = "amphi_packets_dropped_total{reason=\"video_off\"}";
    wait_metric(&server, dropping, 10.0, SECS).await;
    let (va, vb) = (pa.stats().video.frames, pb.stats().video.frames);
    let heard = pa.stats().received_packets();
    assert!(pa.wait_packets(heard + 25, SECS).await, "audio goes on");
    // Frames still in flight at the change may arrive; none after the drops began.
    assert!(pa.stats().video.frames <= va + 1, "alice still sees bob");
    assert!(pb.stats().video.frames <= vb + 1, "bob still sees alice");
    assert!(metric(&server, dropping).await >= 10.0);

    // Back to video: it flows again, from a keyframe.
    change(&b, &a, &id, "video").await;
    let (va, vb) = (pa.stats().video.frames, pb.stats().video.frames);
    until("video again", || {
        pa.stats().video.frames >= va + 5 && pb.stats().video.frames >= vb + 5
    })
    .await;

    // Camera off on one side: the other stops receiving, the first still receives.
    pa.set_camera(false).await;
    a.request("call_media_state", json!({"call_id": id, "camera": false}))
        .await
        .unwrap();
    let state = b.wait_event("remote_media_state", SECS).await.unwrap();
    assert_eq!(state["camera"], false);
    let vb = pb.stats().video.frames;
    let va = pa.stats().video.frames;
    until("alice still sees bob", || pa.stats().video.frames >= va + 5).await;
    assert!(
        pb.stats().video.frames <= vb + 1,
        "bob sees alice's camera off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_call_carries_no_video_and_channels_refuse_video_m_lines() {
    let server = start();
    let (a, b, _id, channel) = call(&server, "audio").await;
    let pa = member(&a, &channel, 440.0).await;
    let pb = member(&b, &channel, 660.0).await;
    assert!(pa.wait_packets(50, SECS).await && pb.wait_packets(50, SECS).await);
    let dropping = "amphi_packets_dropped_total{reason=\"video_off\"}";
    wait_metric(&server, dropping, 10.0, SECS).await;
    assert_eq!(pa.stats().video.frames + pb.stats().video.frames, 0);

    // Outside calls, an offer with video is refused with a reason.
    let s = Signal::connect(&server.http_url(), &token("vid", &["host"]))
        .await
        .unwrap();
    s.join("plain", "host").await.unwrap();
    let opts = PeerOptions {
        camera: Some(VideoFile::test_pattern()),
        ..PeerOptions::default()
    };
    let err = match AudioPeer::start(&s, "plain", opts).await {
        Ok(_) => panic!("a video offer in a channel was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("call channels only"), "{err}");
}
