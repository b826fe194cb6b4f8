//! The demo page itself, in headless Chromium at a phone's width (360×740) and a desktop's
//! (1280×800): nothing reaches past the viewport at any step, a listener's page shows the audio
//! its own peer connection receives, and a call shows who is on the other end and a timer that
//! runs. `drive.mjs --screenshot-steps` leaves a screenshot of every step in
//! `$TMPDIR/amphi-page-<channel|call>-<viewport>/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::browser::{require_browser, run_driver};
use crate::common::*;
use serde_json::Value;

const PHONE: &str = "360x740";
const DESKTOP: &str = "1280x800";
// Long enough to wrap on a phone: the page must break it rather than widen.
const HOST: &str = "a-host-with-a-rather-long-identity-for-a-phone@example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_at_phone_width_shows_a_channel_without_overflow() {
    channel_at(PHONE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_at_desktop_width_shows_a_channel_without_overflow() {
    channel_at(DESKTOP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_at_phone_width_shows_a_call_with_the_peer_and_a_running_timer() {
    call_at(PHONE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_at_desktop_width_shows_a_call_with_the_peer_and_a_running_timer() {
    call_at(DESKTOP).await;
}

/// A fresh directory for one test's screenshots, kept after the test for looking at.
fn shots_dir(what: &str, viewport: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("amphi-page-{what}-{viewport}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The driver's arguments for one page at `viewport`, screenshots into `shots`, then `more`.
fn page_args(url: &str, viewport: &str, shots: &Path, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--url".into(),
        url.into(),
        "--viewport".into(),
        viewport.into(),
        "--screenshot-steps".into(),
        shots.display().to_string(),
    ];
    args.extend(more.iter().map(|a| a.to_string()));
    args
}

/// What every page must show: no sideways overflow at any step, no errors, and a screenshot
/// of each step where it was asked for.
fn check_page(report: &Value, shots: &Path) {
    assert_eq!(
        report["overflowX"], false,
        "something reaches past the viewport: {}",
        report["overflow"]
    );
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let taken = report["screenshots"].as_array().expect("screenshots");
    assert_eq!(
        taken.len(),
        report["steps"].as_array().map_or(0, Vec::len),
        "{report}"
    );
    for path in taken {
        let path = Path::new(path.as_str().unwrap());
        assert!(
            path.starts_with(shots) && path.exists(),
            "screenshot {}",
            path.display()
        );
    }
}

/// One page is a host (after checking its microphone), another listens; the listener's page
/// counts the host's audio from its own getStats.
async fn channel_at(viewport: &str) {
    require_browser();
    let server = start();
    let url = server.http_url();
    let shots = shots_dir("channel", viewport);
    let flags = tempfile::tempdir().unwrap();
    let (ready, done) = (flags.path().join("ready"), flags.path().join("done"));
    let (ready_arg, done_arg) = (ready.display().to_string(), done.display().to_string());
    let host_args = page_args(
        &url,
        viewport,
        &shots,
        &[
            "--channel",
            "stage",
            "--identity",
            HOST,
            "--role",
            "host",
            "--mic-check",
            "--ready-file",
            ready_arg.as_str(),
            "--until-file",
            done_arg.as_str(),
            // At most; the host goes once the listener is done.
            "--seconds",
            "90",
        ],
    );
    let host = tokio::spawn(run_driver(host_args));
    eventually(Duration::from_secs(90), || {
        ready.exists() || host.is_finished()
    })
    .await;
    if !ready.exists() {
        let stopped = host.await;
        panic!("the host's page did not connect: {stopped:?}");
    }
    let listener = run_driver(page_args(
        &url,
        viewport,
        &shots,
        &[
            "--channel",
            "stage",
            "--identity",
            "listener",
            "--role",
            "audience",
            "--seconds",
            "3",
        ],
    ))
    .await;
    std::fs::write(&done, "").unwrap();
    let host = host.await.unwrap();

    check_page(&host, &shots);
    assert_eq!(host["joined"], true, "{host}");
    assert_eq!(
        host["micCheck"]["moved"], true,
        "the microphone check's meter moved: {host}"
    );
    assert!(
        host["outbound"]["packetsSent"].as_u64().unwrap_or(0) > 50,
        "{host}"
    );

    check_page(&listener, &shots);
    assert_eq!(listener["role"], "audience", "{listener}");
    assert!(
        listener["participants"].to_string().contains(HOST),
        "the listener's page lists the host: {listener}"
    );
    // Seen at some point, not necessarily at the end: the host's browser may pause sending on
    // a loaded machine (the page then rightly says "quiet").
    assert_eq!(
        listener["rx"]["seen"], true,
        "the receive indicator showed audio coming in: {listener}"
    );
    assert!(
        listener["rx"]["packets"].as_u64().unwrap_or(0) > 50,
        "the receive indicator counts packets: {listener}"
    );
    eprintln!("screenshots of the channel: {}", shots.display());
}

/// One page calls another. The callee pastes a token that names her (the page is refused a
/// development token): the caller's page shows her name once she is in the call, each page
/// shows who is calling or being called, and both timers run.
async fn call_at(viewport: &str) {
    require_browser();
    let server = start();
    let url = server.http_url();
    let shots = shots_dir("call", viewport);
    let mut named = claims("bea-callee", &[]);
    named.grants = vec!["call".into()];
    named.name = Some("Bea Callee".into());
    let token = keys().mint(&named);
    let callee_args = page_args(
        &url,
        viewport,
        &shots,
        &[
            "--identity",
            "bea-callee",
            "--answer-call",
            "--token",
            token.as_str(),
            "--seconds",
            "3",
        ],
    );
    let callee = tokio::spawn(run_driver(callee_args));
    // The callee hangs up first; the caller's 30 s are only a bound.
    let caller = run_driver(page_args(
        &url,
        viewport,
        &shots,
        &[
            "--identity",
            "carl-caller",
            "--call",
            "bea-callee",
            "--seconds",
            "30",
        ],
    ))
    .await;
    let callee = callee.await.unwrap();

    for report in [&caller, &callee] {
        check_page(report, &shots);
        assert_eq!(report["ended"], true, "{report}");
        check_timer(report);
        assert_eq!(
            report["callRx"]["state"], "receiving",
            "the receive indicator in the call: {report}"
        );
    }
    assert_eq!(caller["placed"], true, "{caller}");
    assert_eq!(
        caller["presence"], "bea-callee is online",
        "before calling, the caller's page says the callee is online: {caller}"
    );
    assert_eq!(
        caller["ringingPeer"], "bea-callee",
        "while ringing, the caller's page names who it calls: {caller}"
    );
    assert_eq!(
        caller["peerName"], "Bea Callee",
        "the callee's name from her token: {caller}"
    );
    assert_eq!(callee["answered"], true, "{callee}");
    assert_eq!(callee["ringingPeer"], "carl-caller", "{callee}");
    assert_eq!(callee["peerName"], "carl-caller", "{callee}");
    assert!(
        callee["outbound"]["packetsSent"].as_u64().unwrap_or(0) > 50,
        "{callee}"
    );
    eprintln!("screenshots of the call: {}", shots.display());
}

/// Two readings of the call timer (mm:ss) at least a second apart: it moved forward.
fn check_timer(report: &Value) {
    let readings = report["timer"].as_array().expect("timer readings");
    let (first, second) = (&readings[0], &readings[1]);
    let seconds = |reading: &Value| -> u64 {
        reading["text"]
            .as_str()
            .unwrap_or_default()
            .split(':')
            .fold(0, |total, part| {
                total * 60 + part.parse::<u64>().unwrap_or(0)
            })
    };
    let apart = second["at"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(first["at"].as_u64().unwrap_or(0));
    assert!(apart >= 1000, "the readings are {apart} ms apart: {report}");
    assert_eq!(first["shown"], true, "{report}");
    assert!(
        seconds(second) > seconds(first),
        "the timer runs: {} then {}",
        first["text"],
        second["text"]
    );
}
