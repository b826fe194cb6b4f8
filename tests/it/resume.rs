//! Resume: a listener's WebSocket is cut while its peer connection is up. Its audio keeps
//! arriving; a new connection resumes the session, gets every event sent meanwhile once and
//! in order, and the session carries on through it. A stale or late resume is refused.

use std::time::Duration;

use crate::common::*;
use amphi_client::signal::ConnectOptions;
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_listener_resumes_without_missing_audio_or_events() {
    let server = start();
    let url = server.http_url();
    let token_l = token("lis", &["audience"]);
    // This test speaks the resume protocol by hand; the client's own resume is below.
    let manual = ConnectOptions {
        auto_resume: false,
        ..ConnectOptions::default()
    };
    let ls = Signal::connect_with(&url, &token_l, manual).await.unwrap();
    ls.join("r", "audience").await.unwrap();
    let opts = PeerOptions {
        slots: 1,
        ..PeerOptions::default()
    };
    let l = std::sync::Arc::new(AudioPeer::start(&ls, "r", opts).await.unwrap());
    assert!(l.wait_connected(SECS).await);
    let hs = Signal::connect(&url, &token("h", &["host"])).await.unwrap();
    let reply = hs.join("r", "host").await.unwrap();
    let host_id = reply["participant"].as_str().unwrap().to_string();
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(440.0))),
        slots: 1,
        ..PeerOptions::default()
    };
    let _h = AudioPeer::start(&hs, "r", opts).await.unwrap();
    assert!(
        l.wait_packets(25, SECS).await,
        "the listener hears the host"
    );
    let seen = ls
        .wait_event("participant_joined", SECS)
        .await
        .expect("the host's join")["seq"]
        .as_u64()
        .unwrap();
    let session = ls.welcome["session"].as_str().unwrap().to_string();
    let resume_token = ls.welcome["resume_token"].as_str().unwrap().to_string();

    // Watch the audio across the cut and the resume: the longest stretch with nothing new.
    let watching = {
        let l = l.clone();
        tokio::spawn(async move {
            let mut last = (std::time::Instant::now(), l.received_packets());
            let mut longest = Duration::ZERO;
            let end = std::time::Instant::now() + Duration::from_secs(3);
            while std::time::Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let n = l.received_packets();
                if n > last.1 {
                    longest = longest.max(last.0.elapsed());
                    last = (std::time::Instant::now(), n);
                }
            }
            longest
        })
    };
    // The network fails: no goodbye.
    ls.sever();
    // Meanwhile: the host mutes and unmutes, a second host joins.
    hs.request("mute", json!({"channel": "r", "muted": true}))
        .await
        .unwrap();
    hs.request("mute", json!({"channel": "r", "muted": false}))
        .await
        .unwrap();
    let h2 = Signal::connect(&url, &token("h2", &["host"]))
        .await
        .unwrap();
    h2.join("r", "host").await.unwrap();
    // Audio never stopped: the peer connection is the session's, not the socket's.
    let mark = l.received_packets();
    assert!(l.wait_packets(mark + 25, SECS).await, "audio while cut off");

    // A stale token and a stranger are refused; the rightful client resumes.
    let mut wrong = Client::connect(&server, &token_l).await;
    let e = wrong
        .err(
            "resume",
            json!({"session": session, "resume_token": "not-it", "last_seq": {}}),
            "session_gone",
        )
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("join afresh"),
        "{e}"
    );
    let mut stranger = Client::as_(&server, "mallory", &["audience"]).await;
    stranger
        .err(
            "resume",
            json!({"session": session, "resume_token": resume_token, "last_seq": {}}),
            "session_gone",
        )
        .await;
    let mut back = Client::connect(&server, &token_l).await;
    let (reply, after) = back
        .request(
            "resume",
            json!({"session": session, "resume_token": resume_token, "last_seq": {"r": seen}}),
        )
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    assert_eq!(reply["channels"], json!(["r"]));
    assert_eq!(reply["resync"], json!([]));
    let next_token = reply["resume_token"].as_str().unwrap().to_string();
    assert_ne!(next_token, resume_token, "each token is good once");
    // The missed events, once each, in seq order: two mutes and a join (among the speaking
    // events of the hosts and the media negotiation for the new host's slot).
    let membership = |e: &Value| {
        matches!(
            e["event"].as_str(),
            Some("mute_changed" | "participant_joined" | "participant_left")
        )
    };
    let mut frames: Vec<Value> = after;
    while frames.iter().filter(|e| membership(e)).count() < 3 {
        frames.push(back.recv().await);
    }
    let channel_events: Vec<&Value> = frames
        .iter()
        .filter(|e| e["type"] == "event" && e["channel"] == "r" && e["seq"].is_u64())
        .collect();
    let seqs: Vec<u64> = channel_events
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > seen,
        "once each, in order, none seen before: {seqs:?}"
    );
    let missed: Vec<&&Value> = channel_events.iter().filter(|e| membership(e)).collect();
    let names: Vec<&str> = missed.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        vec!["mute_changed", "mute_changed", "participant_joined"],
        "{frames:?}"
    );
    assert_eq!(missed[0]["participant"].as_str(), Some(host_id.as_str()));
    let longest = watching.await.unwrap();
    eprintln!("longest gap in the audio across the cut and the resume: {longest:?}");
    // The longest gap includes the host's own mute while the listener was cut off (two
    // request round trips: tens of milliseconds alone, over a second with Chromium tests
    // beside this one on two cores), so it is reported, not bounded. What shows the audio
    // never stopped is above (packets while cut off, on the same peer) and here: the same peer
    // goes on receiving after the resume, with no new offer or handshake.
    let mark = l.received_packets();
    assert!(
        l.wait_packets(mark + 25, SECS).await,
        "audio after the resume"
    );
    // The session carries on through the new connection: requests and events.
    back.ok("ping", json!({})).await;
    hs.request("mute", json!({"channel": "r", "muted": true}))
        .await
        .unwrap();
    let e = back.wait_event("mute_changed").await;
    assert_eq!(e["muted"], true);
    // A goodbye on the new connection ends the resumed session at once: the host sees it go.
    back.ws.close(None).await.unwrap();
    let e = hs
        .wait_event("participant_left", SECS)
        .await
        .expect("it left");
    assert_eq!(e["reason"], "disconnected");
    // The old token is spent.
    let mut again = Client::connect(&server, &token_l).await;
    again
        .err(
            "resume",
            json!({"session": session, "resume_token": resume_token}),
            "session_gone",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_the_window_gets_the_rejoin_error_and_the_member_is_gone() {
    let server = start_with(|c| c.timeouts.resume_window = Duration::from_millis(300));
    let mut host = Client::as_(&server, "host", &["host"]).await;
    host.join("w", "host").await;
    let token_b = token("bob", &["host"]);
    let mut bob = Client::connect(&server, &token_b).await;
    let session = bob.welcome["session"].as_str().unwrap().to_string();
    let resume_token = bob.welcome["resume_token"].as_str().unwrap().to_string();
    bob.join("w", "host").await;
    host.wait_event("participant_joined").await;
    drop(bob);
    // Only once the window has passed does the member leave, as disconnected.
    let e = host.wait_event("participant_left").await;
    assert_eq!(e["reason"], "disconnected");
    let mut late = Client::connect(&server, &token_b).await;
    late.err(
        "resume",
        json!({"session": session, "resume_token": resume_token}),
        "session_gone",
    )
    .await;
    // A client that says goodbye is not kept.
    let mut carol = Client::as_(&server, "carol", &["host"]).await;
    carol.join("w", "host").await;
    host.wait_event("participant_joined").await;
    carol.ws.close(None).await.unwrap();
    let e = host.wait_event("participant_left").await;
    assert_eq!(e["reason"], "disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_resumes_by_itself_and_misses_nothing() {
    let server = start();
    let url = server.http_url();
    let ls = Signal::connect(&url, &token("auto", &["audience"]))
        .await
        .unwrap();
    ls.join("a", "audience").await.unwrap();
    let opts = PeerOptions {
        slots: 1,
        ..PeerOptions::default()
    };
    let l = AudioPeer::start(&ls, "a", opts).await.unwrap();
    assert!(l.wait_connected(SECS).await);
    let hs = Signal::connect(&url, &token("ah", &["host"]))
        .await
        .unwrap();
    hs.join("a", "host").await.unwrap();
    let opts = PeerOptions {
        publish: Some(Box::new(Tone::new(440.0))),
        slots: 1,
        ..PeerOptions::default()
    };
    let _h = AudioPeer::start(&hs, "a", opts).await.unwrap();
    assert!(
        l.wait_packets(25, SECS).await,
        "the listener hears the host"
    );
    ls.wait_event("participant_joined", SECS).await.unwrap();

    let cut = std::time::Instant::now();
    ls.sever();
    ls.wait_event("reconnecting", SECS)
        .await
        .expect("the client noticed the cut");
    // Sent while the listener is away; it must get each once, in order, after the resume.
    for muted in [true, false, true, false] {
        hs.request("mute", json!({"channel": "a", "muted": muted}))
            .await
            .unwrap();
    }
    let back = ls
        .wait_event("reconnected", SECS)
        .await
        .expect("the client resumed");
    let took = cut.elapsed();
    assert!(took < Duration::from_secs(2), "resumed after {took:?}");
    assert_eq!(back["resync"], json!([]));
    let mut mutes = Vec::new();
    while mutes.len() < 4 {
        let e = ls.wait_event("mute_changed", SECS).await.expect("a mute");
        mutes.push((e["seq"].as_u64().unwrap(), e["muted"].as_bool().unwrap()));
    }
    assert!(mutes.windows(2).all(|w| w[0].0 < w[1].0), "{mutes:?}");
    assert_eq!(
        mutes.iter().map(|m| m.1).collect::<Vec<_>>(),
        vec![true, false, true, false]
    );
    // The same session goes on: its requests work, the audio never stopped.
    ls.request("ping", json!({})).await.unwrap();
    let mark = l.received_packets();
    assert!(l.wait_packets(mark + 25, SECS).await);
    assert!(
        ls.next_event(Duration::from_millis(300))
            .await
            .is_none_or(|e| e["event"] != "mute_changed"),
        "a missed event came twice"
    );
}

/// A TCP relay to the server that the test can cut, as a failing network would: open
/// connections are dropped without a close frame and new ones are refused.
struct Relay {
    addr: std::net::SocketAddr,
    cut: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Relay {
    async fn to(server: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let watch = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue;
                }
                let mut cut = watch.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(server).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Relay { addr, cut }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_past_its_window_is_told_its_session_is_gone() {
    let server = start();
    let relay = Relay::to(server.addr).await;
    let opts = ConnectOptions {
        resume_window: Duration::from_secs(1),
        ..ConnectOptions::default()
    };
    let ls = Signal::connect_with(&relay.url(), &token("far", &["audience"]), opts)
        .await
        .unwrap();
    ls.join("g", "audience").await.unwrap();
    relay.cut();
    ls.wait_event("reconnecting", SECS).await.unwrap();
    let gone = ls
        .wait_event("session_gone", SECS)
        .await
        .expect("the client gave up once its window passed");
    assert!(
        gone["message"].as_str().unwrap().contains("window"),
        "{gone}"
    );
    assert!(matches!(
        ls.request("ping", json!({})).await,
        Err(amphi_client::ClientError::Closed)
    ));
}
