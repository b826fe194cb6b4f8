//! `amphi-join` from a terminal: one publishes a tone into a channel, another records what it
//! hears to a WAV file, and the recording holds the tone; events are printed as JSON lines.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use amphi_client::audio::dominant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publishes_a_tone_another_records_it() {
    let server = start();
    let url = server.http_url();
    let bin = env!("CARGO_BIN_EXE_amphi-join");
    let mut host = Command::new(bin)
        .args(["--url", &url, "--channel", "cli-tone", "--identity", "bot"])
        .args(["--role", "host", "--tone", "660", "--seconds", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The host says when its audio is up.
    let stderr = host.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let up = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the host reports");
    assert!(up.contains("audio connected"), "{up}");

    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("heard.wav");
    let wav_arg = wav.display().to_string();
    let url2 = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_amphi-join"))
            .args(["--url", &url2, "--channel", "cli-tone", "--identity", "ear"])
            .args(["--record", &wav_arg, "--seconds", "3"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The join reply and the events, one JSON object per line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["role"], "audience", "{stdout}");
    assert!(stderr.contains("wrote"), "{stderr}");

    let mut reader = hound::WavReader::open(&wav).unwrap();
    assert_eq!(reader.spec().sample_rate, 48_000);
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    assert!(samples.len() > 48_000, "{} samples", samples.len());
    let tail = &samples[samples.len() - 24_000..];
    assert_eq!(dominant(tail, &[440.0, 660.0, 880.0]), 660.0);

    let _ = host.kill();
    let _ = host.wait();
    // A server that gives no development token says so, and how to pass one.
    let out = Command::new(bin)
        .args(["--url", "https://example.invalid", "--channel", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"));
}
