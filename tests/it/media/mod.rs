//! Audio over WebRTC through the server, with real Rust clients (str0m) on loopback.

mod mixing;
mod tcp;

use std::time::Duration;

use crate::common::*;
use amphi_client::audio::dominant;
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};
use serde_json::json;

const SECS: Duration = Duration::from_secs(10);

async fn signal(server: &amphi::ServerHandle, identity: &str, role: &str) -> Signal {
    Signal::connect(&server.http_url(), &token(identity, &[role]))
        .await
        .unwrap()
}

async fn listener(
    server: &amphi::ServerHandle,
    channel: &str,
    identity: &str,
) -> (Signal, AudioPeer) {
    let s = signal(server, identity, "audience").await;
    s.join(channel, "audience").await.unwrap();
    let opts = PeerOptions {
        slots: 2,
        keep_audio: true,
        ..PeerOptions::default()
    };
    let peer = AudioPeer::start(&s, channel, opts).await.unwrap();
    assert!(peer.wait_connected(SECS).await, "{identity} connected");
    (s, peer)
}

async fn host(
    server: &amphi::ServerHandle,
    channel: &str,
    identity: &str,
    freq: f64,
) -> (Signal, AudioPeer, String) {
    let s = signal(server, identity, "host").await;
    let reply = s.join(channel, "host").await.unwrap();
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(freq))),
        slots: 1,
        ..PeerOptions::default()
    };
    let peer = AudioPeer::start(&s, channel, opts).await.unwrap();
    assert!(peer.wait_connected(SECS).await, "{identity} connected");
    (s, peer, reply["participant"].as_str().unwrap().to_string())
}

/// Waits (bounded) until `l` has received 99 % of the `sent` packets of `host`; the callers
/// assert the ratio after.
async fn drained(l: &AudioPeer, host: &str, sent: u64) {
    let heard = || l.stats().slot_for(host).map_or(0, |s| s.packets);
    eventually(SECS, || heard() as f64 >= sent as f64 * 0.99).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_tone_reaches_two_listeners_and_not_itself() {
    let server = start();
    let (_s1, l1) = listener(&server, "tone", "l1").await;
    let (_s2, l2) = listener(&server, "tone", "l2").await;
    let (_hs, h, host_id) = host(&server, "tone", "h", 440.0).await;
    assert!(l1.wait_packets(50, SECS).await, "l1 hears the host");
    assert!(l2.wait_packets(50, SECS).await, "l2 hears the host");
    // Three seconds of audio heard, then the host stops and what it sent drains.
    assert!(l1.wait_packets(150, SECS).await, "l1 heard 3 s of audio");
    h.set_sending(false).await;
    let sent = h.stats().sent_packets;
    for l in [&l1, &l2] {
        drained(l, &host_id, sent).await;
    }
    let sent = h.stats().sent_packets;
    for l in [&l1, &l2] {
        let stats = l.stats();
        let slot = stats.slot_for(&host_id).expect("a slot carries the host");
        // Packets sent before the listener's slot was bound cannot arrive; the host connected
        // after both listeners, so all of them should.
        let ratio = slot.packets as f64 / sent as f64;
        assert!(ratio >= 0.99, "received {} of {sent}", slot.packets);
        assert_eq!(slot.decode_errors, 0);
        let tail = &slot.samples[slot.samples.len().saturating_sub(48_000)..];
        assert_eq!(
            dominant(tail, &[220.0, 330.0, 440.0, 660.0, 880.0, 1000.0]),
            440.0
        );
    }
    assert_eq!(h.stats().received_packets(), 0, "a host never hears itself");
    // Workers flush their counters every housekeeping tick (250 ms): wait for this one.
    let want = (2 * sent) as f64 * 0.99;
    let forwarded = wait_metric(&server, "amphi_packets_forwarded_total", want, SECS).await;
    assert!(forwarded >= want, "forwarded {forwarded} of {}", 2 * sent);
    // The listeners agreed to AES-GCM: the worker sealed nearly all of it itself (str0m
    // carries a stream's first packet and one in 64 after it).
    let sealed = metric(&server, "amphi_media_sealed_total").await;
    assert!(
        sealed >= forwarded * 0.95 && sealed < forwarded,
        "sealed {sealed} of {forwarded}"
    );
    assert!(metric(&server, "amphi_forward_latency_seconds_count").await > 0.0);
    assert!(metric(&server, "amphi_inbound_jitter_seconds_count").await > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_cannot_publish() {
    let server = start();
    let (_hs, _h, _) = host(&server, "pub", "h", 440.0).await;
    let (_ls, l) = listener(&server, "pub", "l").await;
    let aud = signal(&server, "sneaky", "audience").await;
    aud.join("pub", "audience").await.unwrap();
    let err = AudioPeer::start(
        &aud,
        "pub",
        PeerOptions {
            publish: Some(Box::new(Tone::new(880.0))),
            slots: 1,
            ..PeerOptions::default()
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("forbidden"), "{err}");
    // Only the host's audio reaches the listener: one slot with packets.
    assert!(l.wait_packets(50, SECS).await);
    let stats = l.stats();
    assert_eq!(stats.slots.iter().filter(|s| s.packets > 0).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_on_an_m_line_offered_recvonly_reaches_nobody_and_is_counted() {
    let server = start();
    let (_ls, l) = listener(&server, "liar", "l").await;
    let (_hs, _h, honest) = host(&server, "liar", "h", 440.0).await;
    // A host (allowed to publish) that offers its microphone as recvonly and sends anyway.
    let s = signal(&server, "liar", "host").await;
    let liar = participant(&s.join("liar", "host").await.unwrap());
    let dropping = "amphi_packets_dropped_total{reason=\"not_permitted\"}";
    let before = metric(&server, dropping).await;
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(880.0))),
        slots: 1,
        misreport_mic: true,
        ..PeerOptions::default()
    };
    let p = AudioPeer::start(&s, "liar", opts).await.unwrap();
    assert!(p.wait_connected(SECS).await);
    // One second of its packets dropped and counted.
    let dropped = wait_metric(&server, dropping, before + 50.0, SECS).await;
    assert!(dropped >= before + 50.0, "counted {before} -> {dropped}");
    assert!(p.stats().sent_packets >= 50);
    let heard = l.stats();
    assert!(heard.slot_for(&honest).map_or(0, |s| s.packets) > 0);
    let from_liar = heard.slot_for(&liar).map_or(0, |s| s.packets);
    assert_eq!(
        from_liar, 0,
        "the listener heard the misreported microphone"
    );
    assert_eq!(
        heard.received_packets(),
        heard.slot_for(&honest).unwrap().packets,
        "every packet the listener got came from the honest host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demoted_host_is_dropped_and_counted() {
    let server = start();
    let (hs, h, _) = host(&server, "demote", "h", 440.0).await;
    let (_ls, l) = listener(&server, "demote", "l").await;
    assert!(l.wait_packets(25, SECS).await);
    let before_drop = metric(
        &server,
        "amphi_packets_dropped_total{reason=\"not_permitted\"}",
    )
    .await;
    // The host steps down but keeps sending: once the server drops its packets, the
    // listener hears nothing more of it while half a second of them is dropped.
    hs.request("set_role", json!({"channel": "demote", "role": "audience"}))
        .await
        .unwrap();
    let dropping = "amphi_packets_dropped_total{reason=\"not_permitted\"}";
    // Ten drops (200 ms of this host's packets): the worker has applied the demotion.
    let first = wait_metric(&server, dropping, before_drop + 10.0, SECS).await;
    assert!(
        first >= before_drop + 10.0,
        "drops counted: {before_drop} -> {first}"
    );
    let at_demotion = l.stats().received_packets();
    let dropped = wait_metric(&server, dropping, first + 25.0, SECS).await;
    assert!(
        dropped >= first + 25.0,
        "drops counted: {first} -> {dropped}"
    );
    assert!(h.stats().sent_packets > 0);
    assert!(
        l.stats().received_packets() <= at_demotion + 2,
        "nothing after demotion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_listener_loses_only_its_own_packets() {
    let server = start();
    let (_s1, fast1) = listener(&server, "slow", "fast1").await;
    let (_s2, fast2) = listener(&server, "slow", "fast2").await;
    // A small kernel buffer: while it does not read, the slow listener's own socket overflows.
    let s3 = signal(&server, "slow", "audience").await;
    s3.join("slow", "audience").await.unwrap();
    let opts = PeerOptions {
        recv_buffer: Some(4096),
        ..PeerOptions::default()
    };
    let slow = AudioPeer::start(&s3, "slow", opts).await.unwrap();
    assert!(slow.wait_connected(SECS).await);
    let (_hs, h, host_id) = host(&server, "slow", "h", 440.0).await;
    assert!(slow.wait_packets(25, SECS).await);
    slow.stall(Duration::from_secs(2)).await;
    // Three seconds of audio for the fast listeners: the stall and one second after it.
    let mark = fast1.received_packets();
    assert!(fast1.wait_packets(mark + 150, SECS).await);
    h.set_sending(false).await;
    let sent = h.stats().sent_packets;
    // The fast listeners drain what was sent; the stalled one's loss can only shrink as late
    // packets arrive, so it is judged after them.
    for l in [&fast1, &fast2] {
        drained(l, &host_id, sent).await;
    }
    for l in [&fast1, &fast2] {
        let got = l.stats().slot_for(&host_id).unwrap().packets;
        assert!(
            got as f64 >= sent as f64 * 0.99,
            "fast listener got {got} of {sent}"
        );
    }
    let got = slow.stats().slot_for(&host_id).unwrap().packets;
    assert!(
        (got as f64) < sent as f64 * 0.9,
        "the stalled listener lost packets: {got} of {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_hosts_than_slots_renegotiates_and_speakers_are_announced() {
    let server = start();
    let s = signal(&server, "l", "audience").await;
    s.join("reneg", "audience").await.unwrap();
    let l = AudioPeer::start(
        &s,
        "reneg",
        PeerOptions {
            slots: 1,
            keep_audio: true,
            ..PeerOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(l.wait_connected(SECS).await);
    let (_a, _ha, a_id) = host(&server, "reneg", "a", 440.0).await;
    let (_b, _hb, b_id) = host(&server, "reneg", "b", 660.0).await;
    let deadline = std::time::Instant::now() + SECS;
    loop {
        let st = l.stats();
        let heard = |id: &str| st.slot_for(id).is_some_and(|x| x.packets > 25);
        if heard(&a_id) && heard(&b_id) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both hosts heard: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = l.stats();
    let a = st.slot_for(&a_id).unwrap();
    let b = st.slot_for(&b_id).unwrap();
    assert_ne!(a.mid, b.mid);
    let tail =
        |x: &amphi_client::SlotStats| x.samples[x.samples.len().saturating_sub(24_000)..].to_vec();
    assert_eq!(dominant(&tail(a), &[440.0, 660.0]), 440.0);
    assert_eq!(dominant(&tail(b), &[440.0, 660.0]), 660.0);
    // Speaking is announced to the audience.
    let e = s
        .wait_event("active_speaker", SECS)
        .await
        .expect("active_speaker");
    assert!(e["seq"].as_u64().is_some());
    let p = e["participant"].as_str().unwrap();
    assert!(p == a_id || p == b_id);
    let e = s
        .wait_event("audio_levels", SECS)
        .await
        .expect("audio_levels");
    assert!(e["speakers"][0]["volume"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_listener_with_enough_slots_is_not_renegotiated() {
    let server = start();
    let (_hs, _h, host_id) = host(&server, "late", "h", 440.0).await;
    let (s, l) = listener(&server, "late", "late").await;
    assert!(l.wait_packets(25, SECS).await);
    assert!(l.stats().slot_for(&host_id).is_some());
    while let Some(e) = s.next_event(Duration::from_millis(200)).await {
        assert_ne!(e["event"], "media_offer", "no renegotiation needed: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_listeners_on_one_thread_hears_the_host() {
    let server = start();
    let herd = amphi_client::Herd::start("herd-test").unwrap();
    let mut members = Vec::new();
    for i in 0..20 {
        let s = signal(&server, &format!("herd-{i}"), "audience").await;
        s.join("herd", "audience").await.unwrap();
        let p = herd.join(&s, "herd", 1).await.unwrap();
        members.push((s, p));
    }
    let (_hs, h, host_id) = host(&server, "herd", "h", 440.0).await;
    for (_, p) in &members {
        assert!(
            p.wait_packets(50, SECS).await,
            "a herd member hears the host"
        );
    }
    h.set_sending(false).await;
    let sent = h.stats().sent_packets;
    for (_, p) in &members {
        let heard = || p.stats().slot_for(&host_id).map_or(0, |s| s.packets);
        eventually(SECS, || heard() as f64 >= sent as f64 * 0.99).await;
        let stats = p.stats();
        let slot = stats
            .slot_for(&host_id)
            .expect("the track event named the slot");
        assert!(
            slot.packets as f64 >= sent as f64 * 0.99,
            "{} of {sent}",
            slot.packets
        );
        assert_eq!(slot.lost(), 0);
        assert!(stats.latency_us.len() >= 50, "end-to-end latency measured");
    }
    for (_, p) in members.drain(..) {
        p.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_connections_past_capacity_are_refused_and_the_admitted_keep_every_packet() {
    let server = start_with(|c| c.media.max_peers = 3);
    let (_s1, l1) = listener(&server, "cap", "l1").await;
    let (_s2, l2) = listener(&server, "cap", "l2").await;
    let (_hs, h, host_id) = host(&server, "cap", "h", 440.0).await;
    // Twice the capacity offered: three more listeners are refused at their offer.
    let mut refused = Vec::new();
    for i in 0..3 {
        let s = signal(&server, &format!("extra{i}"), "audience").await;
        s.join("cap", "audience").await.unwrap();
        match AudioPeer::start(&s, "cap", PeerOptions::default()).await {
            Err(amphi_client::ClientError::Server { code, message, .. }) => {
                assert_eq!(code, "busy", "{message}");
                assert!(message.contains("media.max_peers"), "{message}");
            }
            Err(e) => panic!("extra{i}: {e}"),
            Ok(_) => panic!("extra{i} got a peer past media.max_peers"),
        }
        refused.push(s);
    }
    assert!(l1.wait_packets(150, SECS).await, "l1 heard 3 s of audio");
    h.set_sending(false).await;
    let sent = h.stats().sent_packets;
    for l in [&l1, &l2] {
        let heard = || l.stats().slot_for(&host_id).map_or(0, |s| s.packets);
        eventually(SECS, || heard() as f64 >= sent as f64 * 0.999).await;
        assert!(
            heard() as f64 >= sent as f64 * 0.999,
            "an admitted listener got {} of {sent}",
            heard()
        );
    }
    assert_eq!(
        metric(&server, "amphi_admission_refused_total{what=\"peers\"}").await,
        3.0
    );
}
