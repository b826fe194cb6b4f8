//! The demo page in headless Chromium (Debian's `/usr/bin/chromium`, driven by Playwright in
//! `tests/browser/drive.mjs`) against a real server, with Rust clients on the other side.
//! `scripts/test.sh` installs Chromium and the driver's npm package.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};
use serde_json::Value;

const SECS: Duration = Duration::from_secs(20);

/// Fails with what to install when Chromium or the driver's npm package is missing.
pub(crate) fn require_browser() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: run ./scripts/test.sh as root (it installs the Debian package)"
    );
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm install` in tests/browser (scripts/test.sh does)"
    );
}

/// Runs the page as one participant for `seconds`; returns what it reported.
async fn drive(url: &str, channel: &str, identity: &str, role: &str, seconds: u32) -> Value {
    drive_hearing(url, channel, identity, role, "auto", seconds).await
}

/// `drive`, with the page asking to receive `audio` (`auto`, `mixed` or `forwarded`).
async fn drive_hearing(
    url: &str,
    channel: &str,
    identity: &str,
    role: &str,
    audio: &str,
    seconds: u32,
) -> Value {
    run_driver(vec![
        "--audio".into(),
        audio.into(),
        "--url".into(),
        url.into(),
        "--channel".into(),
        channel.into(),
        "--identity".into(),
        identity.into(),
        "--role".into(),
        role.into(),
        "--seconds".into(),
        seconds.to_string(),
    ])
    .await
}

/// A Rust client in `channel` as `role`, its peer connected.
async fn rust_peer(
    url: &str,
    channel: &str,
    identity: &str,
    role: &str,
    opts: PeerOptions,
) -> (Signal, AudioPeer) {
    let s = Signal::connect(url, &token(identity, &[role]))
        .await
        .unwrap();
    s.join(channel, role).await.unwrap();
    let peer = AudioPeer::start(&s, channel, opts).await.unwrap();
    assert!(peer.wait_connected(SECS).await, "{identity} connected");
    (s, peer)
}

/// Runs `drive.mjs` with `args`; its JSON line, once it reported success.
pub(crate) async fn run_driver(args: Vec<String>) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut all = vec!["drive.mjs".to_string()];
    all.extend(args);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").args(all).current_dir(dir).output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "driver printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "driver failed: {v}");
    v
}

/// A Chromium host sends RED (RFC 2198, Opus with the previous frame again): a Chromium
/// listener that negotiated RED gets it as it came, a Rust listener without RED gets the
/// primary Opus frames alone and decodes the beep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_host_is_heard_by_a_rust_listener() {
    require_browser();
    let server = start();
    let url = server.http_url();
    let opts = PeerOptions {
        slots: 2,
        keep_audio: true,
        ..PeerOptions::default()
    };
    let (_s, listener) = rust_peer(&url, "web", "rusty", "audience", opts).await;
    let page_url = url.clone();
    let browser_listener =
        tokio::spawn(async move { drive(&page_url, "web", "chrome-ear", "audience", 8).await });
    let page = tokio::spawn(async move { drive(&url, "web", "chrome-host", "host", 6).await });
    assert!(
        listener.wait_packets(100, SECS).await,
        "the browser host is heard"
    );
    let report = page.await.unwrap();
    assert_eq!(report["joined"], true);
    assert!(
        report["outbound"]["packetsSent"].as_u64().unwrap() > 100,
        "{report}"
    );
    let stats = listener.stats();
    let slot = stats
        .slots
        .iter()
        .find(|x| x.packets > 0)
        .expect("a slot with audio");
    assert_eq!(slot.decode_errors, 0);
    let energy = slot
        .samples
        .iter()
        .map(|&x| f64::from(x).abs())
        .sum::<f64>()
        / slot.samples.len().max(1) as f64;
    assert!(
        energy > 50.0,
        "the fake microphone's beep is audible: mean |x| = {energy}"
    );
    let ear = browser_listener.await.unwrap();
    let heard = ear["inbound"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["packetsReceived"].as_u64().unwrap_or(0) > 100)
        .unwrap_or_else(|| panic!("the browser listener heard the host: {ear}"));
    assert!(heard["totalAudioEnergy"].as_f64().unwrap() > 0.0, "{ear}");
    // The page sent RED (its stats name the codec inside, Opus, so the server counts it),
    // the other page got it as RED and the Rust listener as Opus.
    let text = metrics_text(&server).await;
    let red_in = metric_in(&text, "amphi_red_packets_total");
    let as_red = metric_in(&text, "amphi_red_forwarded_total{as=\"red\"}");
    let as_opus = metric_in(&text, "amphi_red_forwarded_total{as=\"opus\"}");
    assert!(red_in > 100.0, "{red_in} RED packets came in");
    assert!(
        as_red > 100.0 && as_opus > 100.0,
        "as RED {as_red}, as Opus {as_opus}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_audience_hears_a_rust_host() {
    require_browser();
    let server = start();
    let url = server.http_url();
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(440.0))),
        slots: 1,
        ..PeerOptions::default()
    };
    let (_s, _host) = rust_peer(&url, "web2", "rust-host", "host", opts).await;
    let report = drive(&url, "web2", "chrome-fan", "audience", 5).await;
    assert_eq!(report["joined"], true, "{report}");
    assert_eq!(report["role"], "audience");
    assert!(report["outbound"].is_null() || report["outbound"]["packetsSent"] == 0);
    let inbound = report["inbound"].as_array().expect("inbound stats");
    let heard = inbound
        .iter()
        .find(|i| i["packetsReceived"].as_u64().unwrap_or(0) > 100)
        .unwrap_or_else(|| panic!("no inbound audio: {report}"));
    assert!(
        heard["totalAudioEnergy"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(heard["identity"], "rust-host", "{report}");
    let names = report["participants"].to_string();
    assert!(
        names.contains("rust-host"),
        "the page lists the host: {names}"
    );
    // Chromium agrees to AES-GCM: what it heard, the worker sealed itself.
    let sealed = metric(&server, "amphi_media_sealed_total").await;
    assert!(sealed > 100.0, "sealed {sealed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_answers_a_call_from_a_rust_client_and_both_hear_each_other() {
    require_browser();
    let server = start();
    let url = server.http_url();
    let s = Signal::connect(&url, &token_with("rust-caller", &[], &["call"]))
        .await
        .unwrap();
    // The page is not online yet: it is rung when it comes online.
    let reply = s
        .request(
            "call",
            serde_json::json!({"callees": ["chrome-callee"], "media": "audio"}),
        )
        .await
        .unwrap();
    let id = reply["call_id"].as_str().unwrap().to_string();
    let page_url = url.clone();
    let page = tokio::spawn(async move {
        run_driver(vec![
            "--url".into(),
            page_url,
            "--identity".into(),
            "chrome-callee".into(),
            "--answer-call".into(),
            "--seconds".into(),
            "5".into(),
        ])
        .await
    });
    let connected = s
        .wait_event("call_connected", Duration::from_secs(40))
        .await
        .expect("the page answers");
    assert_eq!(connected["call_id"], id.as_str());
    let channel = connected["channel"].as_str().unwrap().to_string();
    s.join(&channel, "call").await.unwrap();
    let peer = AudioPeer::start(
        &s,
        &channel,
        PeerOptions {
            publish: Some(Box::new(Tone::new(440.0))),
            slots: 1,
            ..PeerOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(peer.wait_connected(SECS).await);
    assert!(
        peer.wait_packets(100, SECS).await,
        "the caller hears the browser"
    );
    let report = page.await.unwrap();
    assert_eq!(report["answered"], true, "{report}");
    assert!(
        report["outbound"]["packetsSent"].as_u64().unwrap_or(0) > 100,
        "{report}"
    );
    let inbound = report["inbound"].as_array().expect("inbound stats");
    assert!(
        inbound
            .iter()
            .any(|i| i["packetsReceived"].as_u64().unwrap_or(0) > 50
                && i["totalAudioEnergy"].as_f64().unwrap_or(0.0) > 0.0),
        "the browser hears the caller: {report}"
    );
    let ended = s
        .wait_event("call_ended", SECS)
        .await
        .expect("the page hung up");
    assert_eq!(ended["reason"], "hangup");
    assert_eq!(report["ended"], true, "{report}");
    peer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_hears_two_rust_hosts_mixed_in_one_stream() {
    chromium_hears_the_mix(amphi::config::MixPolicy::Mix, "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_asks_for_the_mix_in_a_forwarding_channel() {
    chromium_hears_the_mix(amphi::config::MixPolicy::Forward, "mixed").await;
}

/// Two Rust hosts with tones in a channel of `policy`; a Chromium page, asking to receive
/// `audio`, hears them both on one inbound stream.
async fn chromium_hears_the_mix(policy: amphi::config::MixPolicy, audio: &str) {
    require_browser();
    let server = start_with(|c| c.media.mix_policy = policy);
    let url = server.http_url();
    let mut hosts = Vec::new();
    for (name, freq) in [("mix-a", 440.0), ("mix-b", 660.0)] {
        let s = Signal::connect(&url, &token(name, &["host"]))
            .await
            .unwrap();
        s.join("webmix", "host").await.unwrap();
        let opts = PeerOptions {
            publish: Some(Box::new(Tone::new(freq))),
            slots: 1,
            ..PeerOptions::default()
        };
        let p = AudioPeer::start(&s, "webmix", opts).await.unwrap();
        assert!(p.wait_connected(SECS).await);
        hosts.push((s, p));
    }
    let report = drive_hearing(&url, "webmix", "chrome-mix", "audience", audio, 5).await;
    assert_eq!(report["joined"], true, "{report}");
    let inbound = report["inbound"].as_array().expect("inbound stats");
    let carrying: Vec<&Value> = inbound
        .iter()
        .filter(|i| i["packetsReceived"].as_u64().unwrap_or(0) > 100)
        .collect();
    assert_eq!(
        carrying.len(),
        1,
        "one inbound stream carries the mix: {report}"
    );
    assert!(
        carrying[0]["totalAudioEnergy"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    // The Rust hosts hear each other through their mix-minus.
    for (_, h) in &hosts {
        assert!(h.wait_packets(50, SECS).await);
    }
}

/// A TCP proxy on loopback in front of `to` whose connections the test can cut at once, as a
/// failing network would (no WebSocket close frame); new connections go through afterwards.
struct Cutter {
    url: String,
    live: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Cutter {
    async fn start(to: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let live: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let conns = live.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let to = to.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { url, live }
    }

    fn cut(&self) {
        for task in self.live.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_resumes_its_session_when_its_connection_drops() {
    require_browser();
    let server = start();
    let proxy = Cutter::start(server.http_url().trim_start_matches("http://").to_string()).await;
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(440.0))),
        slots: 1,
        ..PeerOptions::default()
    };
    let (hs, _h) = rust_peer(&server.http_url(), "again", "tone", "host", opts).await;
    let page_url = proxy.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let ready_arg = ready.to_string_lossy().to_string();
    let page = tokio::spawn(async move {
        run_driver(vec![
            "--ready-file".into(),
            ready_arg,
            "--url".into(),
            page_url,
            "--channel".into(),
            "again".into(),
            "--identity".into(),
            "chrome-again".into(),
            "--role".into(),
            "audience".into(),
            "--interrupt".into(),
            "--seconds".into(),
            "3".into(),
        ])
        .await
    });
    // Once the page is in and its audio connected, the network fails under it.
    let e = hs
        .wait_event("participant_joined", SECS)
        .await
        .expect("the page joined");
    assert_eq!(e["identity"], "chrome-again");
    assert!(
        eventually(SECS, || ready.exists()).await,
        "the page connected its audio"
    );
    proxy.cut();
    let report = page.await.unwrap();
    assert_eq!(report["joined"], true, "{report}");
    assert!(
        report["resumed"]
            .as_str()
            .unwrap_or_default()
            .contains("reconnected"),
        "{report}"
    );
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let heard: u64 = report["inbound"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["packetsReceived"].as_u64())
        .sum();
    assert!(heard > 100, "audio went on: {report}");
    // Nobody saw it drop out: it left only when the page said goodbye at the end.
    while let Some(e) = hs.next_event(Duration::from_millis(100)).await {
        if e["event"] == "participant_left" {
            assert_eq!(e["reason"], "left", "{e}");
        }
    }
}

/// A video call between a Rust client (a VP8 file as its camera) and the page (Chromium's
/// fake camera): each receives the other's video, Chromium decodes it; the Rust side then
/// turns the call to audio, the page agrees and stops its camera, and video stops both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_a_rust_client_see_each_other_in_a_video_call_until_it_turns_to_audio() {
    require_browser();
    let server = start();
    let url = server.http_url();
    let s = Signal::connect(&url, &token_with("rust-video", &[], &["call"]))
        .await
        .unwrap();
    let reply = s
        .request(
            "call",
            serde_json::json!({"callees": ["chrome-video"], "media": "video"}),
        )
        .await
        .unwrap();
    let id = reply["call_id"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let shot = std::env::temp_dir().join("amphi-video-call.png");
    let (page_url, ready_arg, shot_arg) = (
        url.clone(),
        ready.display().to_string(),
        shot.display().to_string(),
    );
    let page = tokio::spawn(async move {
        run_driver(vec![
            "--url".into(),
            page_url,
            "--identity".into(),
            "chrome-video".into(),
            "--answer-call".into(),
            "--watch-video".into(),
            "--ready-file".into(),
            ready_arg,
            "--screenshot".into(),
            shot_arg,
            "--seconds".into(),
            "1".into(),
        ])
        .await
    });
    let connected = s
        .wait_event("call_connected", Duration::from_secs(40))
        .await
        .expect("the page answers");
    let channel = connected["channel"].as_str().unwrap().to_string();
    s.join(&channel, "call").await.unwrap();
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(440.0))),
        slots: 1,
        camera: Some(amphi_client::VideoFile::test_pattern()),
        video_slots: 1,
        ..PeerOptions::default()
    };
    let peer = AudioPeer::start(&s, &channel, opts).await.unwrap();
    assert!(peer.wait_connected(SECS).await);
    // The page writes the file once it has decoded our video and sent its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while !ready.exists() || peer.stats().video.frames < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "video both ways: the Rust client got {:?}",
            peer.stats().video
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(peer.stats().video.keyframes >= 1);
    let tx = s
        .request(
            "media_change",
            serde_json::json!({"call_id": id, "media": "audio"}),
        )
        .await
        .unwrap();
    let result = loop {
        let r = s.wait_event("media_change_result", SECS).await.unwrap();
        if r["transaction"] == tx["transaction"] {
            break r;
        }
    };
    assert_eq!(result["result"], "accepted", "the page agrees to audio");
    let dropping = "amphi_packets_dropped_total{reason=\"video_off\"}";
    wait_metric(&server, dropping, 10.0, SECS).await;
    let frames = peer.stats().video.frames;
    let heard = peer.stats().received_packets();
    assert!(peer.wait_packets(heard + 50, SECS).await, "audio goes on");
    assert!(
        peer.stats().video.frames <= frames + 1,
        "the Rust client still gets video"
    );

    check_video_report(&page.await.unwrap());
    eprintln!("screenshot of the video call: {}", shot.display());
    peer.close().await;
}

/// The page's side of the video call: it decoded the Rust client's VP8, and after the change
/// to audio it neither decodes nor sends video, and its camera is stopped.
fn check_video_report(report: &Value) {
    assert_eq!(report["answered"], true, "{report}");
    let seen = &report["videoSeen"];
    assert!(
        seen["framesDecoded"].as_u64().unwrap_or(0) >= 10,
        "Chromium decodes the Rust client's video: {report}"
    );
    assert_eq!(seen["codec"], "video/VP8", "{report}");
    let after = report["videoAfter"].as_array().expect("samples");
    let (first, last) = (&after[0], &after[after.len() - 1]);
    assert!(
        last["framesDecoded"].as_u64() <= first["framesDecoded"].as_u64().map(|n| n + 1),
        "Chromium still decodes video after the change: {report}"
    );
    assert!(
        last["framesSent"].as_u64() <= first["framesSent"].as_u64().map(|n| n + 1),
        "Chromium still sends video after the change: {report}"
    );
    assert_eq!(report["cameraOn"], false, "the page stopped its camera");
}
