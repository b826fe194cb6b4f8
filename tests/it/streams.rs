//! The mix as a stream: an admin records a channel's mix to an Ogg Opus file (which libopus
//! decodes to both speakers' tones) and plays a file into another channel (whose listener
//! hears it); both announced to members and by webhook; bad requests refused by name.

use std::time::Duration;

use crate::common::webhooks::receiver;
use crate::common::*;
use amphi_client::audio::goertzel;
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);

async fn signal(server: &amphi::ServerHandle, identity: &str, role: &str) -> Signal {
    Signal::connect(&server.http_url(), &token(identity, &[role]))
        .await
        .unwrap()
}

async fn peer(s: &Signal, channel: &str, tone: Option<f64>) -> AudioPeer {
    let opts = PeerOptions {
        publish: tone.map(|f| Box::new(Tone::new(f)) as Box<dyn amphi_client::Source>),
        slots: if tone.is_some() { 1 } else { 2 },
        keep_audio: true,
        ..PeerOptions::default()
    };
    let p = AudioPeer::start(s, channel, opts).await.unwrap();
    assert!(p.wait_connected(SECS).await, "connected");
    p
}

/// Power of 440 Hz, 660 Hz and 1 kHz (none) in `samples`.
fn tones(samples: &[i16]) -> (f64, f64, f64) {
    (
        goertzel(samples, 440.0),
        goertzel(samples, 660.0),
        goertzel(samples, 1000.0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_mix_decodes_to_both_speakers_and_plays_back_into_another_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (hook_url, hooks) = receiver(0).await;
    let server = start_with(|c| {
        c.media.recordings_dir = dir.path().to_path_buf();
        c.media.playback_dir = dir.path().to_path_buf();
        c.calls.webhook_url = hook_url;
        c.calls.webhook_secret = "streams-test-secret-0123456789abcdef".into();
    });
    let ls = signal(&server, "l", "audience").await;
    ls.join("rec", "audience").await.unwrap();
    let l = peer(&ls, "rec", None).await;
    let mut hosts = Vec::new();
    for (name, f) in [("h1", 440.0), ("h2", 660.0)] {
        let s = signal(&server, name, "host").await;
        s.join("rec", "host").await.unwrap();
        let p = peer(&s, "rec", Some(f)).await;
        hosts.push((s, p));
    }
    // A recording is of the mix, whatever the channel does; this one mixes.
    hosts[0]
        .0
        .request("set_mix", json!({"channel": "rec", "policy": "mix"}))
        .await
        .unwrap();
    ls.wait_event("mix_changed", SECS).await.expect("mixing");
    assert!(l.wait_packets(25, SECS).await, "the mix plays");

    // Refused by name: a path, a channel that does not exist.
    let (status, body) = admin_post(
        &server,
        "/api/channels/rec/record",
        json!({"file": "../x.ogg"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    let (status, _) = admin_post(&server, "/api/channels/nowhere/record", json!({})).await;
    assert_eq!(status, 404);

    let (status, body) = admin_post(
        &server,
        "/api/channels/rec/record",
        json!({"file": "both.ogg"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["file"], "both.ogg");
    let e = ls
        .wait_event("recording_started", SECS)
        .await
        .expect("announced");
    assert_eq!(e["file"], "both.ogg");
    let (status, body) = admin_post(
        &server,
        "/api/channels/rec/record",
        json!({"file": "again.ogg"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    // Two seconds of mix, then stop.
    let mark = l.received_packets();
    assert!(l.wait_packets(mark + 100, SECS).await);
    let (status, body) = admin_post(&server, "/api/channels/rec/record/stop", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let e = ls
        .wait_event("recording_stopped", SECS)
        .await
        .expect("announced");
    assert_eq!(e["reason"], "stopped");
    assert!(e["duration_ms"].as_u64().unwrap() >= 1_900, "{e}");
    let bytes = e["bytes"].as_u64().unwrap();

    // The file: Ogg Opus that libopus decodes to both tones.
    let file = std::fs::read(dir.path().join("both.ogg")).unwrap();
    assert_eq!(file.len() as u64, bytes, "the event says the file's size");
    let ogg = amphi_core::mix::ogg::read_ogg_opus(&file).unwrap();
    assert_eq!(ogg.channels, 1);
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    for (p, _) in &ogg.packets {
        let mut frame = [0i16; 960];
        assert_eq!(dec.decode(p, &mut frame, false).unwrap(), 960);
        pcm.extend_from_slice(&frame);
    }
    assert!(pcm.len() >= 48_000 * 19 / 10, "{} samples", pcm.len());
    let (a, b, none) = tones(&pcm[pcm.len() - 48_000..]);
    assert!(
        a > 20.0 * none && b > 20.0 * none,
        "both hosts recorded: {a} {b} {none}"
    );

    // Played into a forwarding channel: its listener hears the file on a slot of its own.
    let ps = signal(&server, "p", "audience").await;
    ps.join("replay", "audience").await.unwrap();
    let p = peer(&ps, "replay", None).await;
    let (status, body) = admin_post(
        &server,
        "/api/channels/replay/play",
        json!({"file": "missing.ogg"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    std::fs::write(dir.path().join("noise.ogg"), b"not an ogg file at all").unwrap();
    let (status, body) = admin_post(
        &server,
        "/api/channels/replay/play",
        json!({"file": "noise.ogg"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not an Ogg file"),
        "{body}"
    );
    let (status, body) = admin_post(
        &server,
        "/api/channels/replay/play",
        json!({"file": "both.ogg"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let player = body["participant"].as_str().unwrap().to_string();
    let e = ps
        .wait_event("playback_started", SECS)
        .await
        .expect("announced");
    assert_eq!(e["participant"].as_str(), Some(player.as_str()));
    let e = ps
        .wait_event("playback_stopped", SECS)
        .await
        .expect("it ends");
    assert_eq!(e["reason"], "finished");
    let stats = p.stats();
    // The slot was bound to the player (its track event named it) and freed when it ended.
    let slot = stats
        .slots
        .iter()
        .max_by_key(|s| s.packets)
        .expect("a slot carried the file");
    assert!(slot.packets >= 90, "{} packets of the file", slot.packets);
    assert_eq!(slot.decode_errors, 0);
    let heard = &slot.samples[slot.samples.len().saturating_sub(48_000)..];
    let (a, b, none) = tones(heard);
    assert!(
        a > 20.0 * none && b > 20.0 * none,
        "the file heard: {a} {b} {none}"
    );

    // Played into a channel the admin API turns to mixing: the file goes through the mixer
    // like a speaker.
    let qs = signal(&server, "q", "audience").await;
    let reply = qs.join("mixplay", "audience").await.unwrap();
    assert_eq!(reply["mixing"], false);
    let (status, body) = admin_post(
        &server,
        "/api/channels/mixplay/mix",
        json!({"policy": "mix"}),
    )
    .await;
    assert_eq!(
        (status, body["mixing"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let e = qs.wait_event("mix_changed", SECS).await.expect("announced");
    assert_eq!(e["policy"], "mix");
    let (status, _) = admin_post(
        &server,
        "/api/channels/mixplay/mix",
        json!({"policy": "loud"}),
    )
    .await;
    assert_eq!(status, 400);
    let q = peer(&qs, "mixplay", None).await;
    let (status, body) = admin_post(
        &server,
        "/api/channels/mixplay/play",
        json!({"file": "both.ogg"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let e = qs
        .wait_event("playback_stopped", SECS)
        .await
        .expect("it ends");
    assert_eq!(e["reason"], "finished");
    let stats = q.stats();
    let slot = stats.slots.iter().max_by_key(|s| s.packets).unwrap();
    assert!(slot.packets >= 90, "{} packets of the mix", slot.packets);
    let heard = &slot.samples[slot.samples.len().saturating_sub(48_000)..];
    let (a, b, none) = tones(heard);
    assert!(
        a > 20.0 * none && b > 20.0 * none,
        "the file in the mix: {a} {b} {none}"
    );

    // And by webhook, in order, per channel (among the channels' membership webhooks).
    eventually(SECS, || {
        hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                r.body.contains("\"type\":\"recording_") || r.body.contains("\"type\":\"playback_")
            })
            .count()
            >= 4
    })
    .await;
    let got: Vec<Value> = hooks
        .lock()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let of = |channel: &str| -> Vec<(String, u64)> {
        let all: Vec<(String, u64)> = got
            .iter()
            .filter(|v| v["channel"] == channel)
            .map(|v| {
                (
                    v["type"].as_str().unwrap().to_string(),
                    v["seq"].as_u64().unwrap(),
                )
            })
            .collect();
        let seqs: Vec<u64> = all.iter().map(|(_, s)| *s).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {all:?}");
        all.into_iter()
            .filter(|(k, _)| k.starts_with("recording_") || k.starts_with("playback_"))
            .collect()
    };
    let kinds = |v: Vec<(String, u64)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        kinds(of("rec")),
        vec!["recording_started", "recording_stopped"]
    );
    assert_eq!(
        kinds(of("replay")),
        vec!["playback_started", "playback_stopped"]
    );
    let stopped = got
        .iter()
        .find(|v| v["type"] == "recording_stopped")
        .unwrap();
    assert_eq!(stopped["data"]["bytes"].as_u64(), Some(bytes));
}
