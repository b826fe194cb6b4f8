//! Graceful shutdown of the real binary on SIGINT and SIGTERM.

use std::process::{Child, Command};
use std::time::Duration;

use crate::common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Starts `amphi serve --dev` on a free port; returns the child and its address.
fn spawn_server() -> (Child, String) {
    spawn_binary(&[])
}

async fn connect(
    addr: &str,
    identity: &str,
    role: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://{addr}/ws?token={}", token(identity, &[role]));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_json(&mut ws).await; // welcome
    use futures_util::SinkExt;
    ws.send(Message::Text(
        json!({"id": 1, "type": "join", "channel": "sd", "role": role})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        if next_json(&mut ws).await["id"] == 1 {
            break;
        }
    }
    ws
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Close(f))) => return json!({"closed": f.map(|f| u16::from(f.code))}),
            Some(Ok(_)) => continue,
            other => return json!({"ended": format!("{other:?}")}),
        }
    }
}

async fn shutdown_with(signal: &str) {
    let (mut child, addr) = spawn_server();
    let mut host = connect(&addr, "host", "host").await;
    let mut aud = connect(&addr, "aud", "audience").await;
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for ws in [&mut host, &mut aud] {
        // Skip channel traffic until `left`, which must come before the close.
        let left = loop {
            let v = next_json(ws).await;
            assert!(
                v.get("closed").is_none() && v.get("ended").is_none(),
                "closed before left: {v}"
            );
            if v["event"] == "left" {
                break v;
            }
        };
        assert_eq!(left["reason"], "server_shutdown");
        assert_eq!(left["channel"], "sd");
        assert_eq!(next_json(ws).await["closed"], 1001);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "server did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_sends_left_to_everyone_and_exits_zero() {
    shutdown_with("-INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_left_to_everyone_and_exits_zero() {
    shutdown_with("-TERM").await;
}

#[test]
fn serve_without_key_refuses_to_start_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_amphi"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("AMPHI_AUTH_SIGNING_KEY", "too-short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32"), "{err}");
}

#[test]
fn serve_with_the_development_key_outside_dev_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_amphi"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("AMPHI_AUTH_SIGNING_KEY", amphi::config::DEV_SIGNING_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("published development key"), "{err}");
}

#[test]
fn token_command_mints_a_verifiable_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_amphi"))
        .args([
            "token",
            "--dev",
            "--identity",
            "alice",
            "--channel",
            "c1",
            "--role",
            "host",
            "--ttl",
            "10m",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let grant = keys().verify(token.trim()).unwrap();
    assert_eq!(grant.identity.as_str(), "alice");
    assert_eq!(grant.roles, vec!["host".to_string()]);
    assert_eq!(grant.channel.as_deref(), Some("c1"));
}

#[test]
fn token_command_refuses_roles_and_grants_the_configuration_does_not_know() {
    let mint = |extra: &[&str]| {
        let mut args = vec!["token", "--dev", "--identity", "alice"];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_amphi"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = mint(&["--role", "hots"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("role 'hots' is not in the role table") && err.contains("host"),
        "{err}"
    );
    let out = mint(&["--grant", "admni"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("grant 'admni' is unknown"), "{err}");
    assert!(mint(&["--role", "audience", "--grant", "call"])
        .status
        .success());
}

#[test]
fn second_server_on_a_used_udp_port_refuses_to_start_and_names_the_port() {
    // A free port, held by a running server (which binds it with SO_REUSEPORT). Between
    // picking a free port and the server binding it, another test's process may take it:
    // then pick again, until the server is seen holding its port.
    let (port, first) = (0..10)
        .find_map(|_| {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let first = start_with(|c| c.media.udp_port = port);
            // The media plane binds on the server's thread, after start_with returns.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            let held = loop {
                if std::net::UdpSocket::bind(("127.0.0.1", port)).is_err() {
                    break true;
                }
                if std::time::Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            held.then_some((port, first))
        })
        .expect("a server holding a UDP port");
    let out = Command::new(env!("CARGO_BIN_EXE_amphi"))
        .args(["serve", "--dev", "--bind", "127.0.0.1:0", "--udp-port"])
        .arg(port.to_string())
        .env("AMPHI_CALLS_DATABASE", ":memory:")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second server started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("UDP port {port}")) && err.contains("already in use"),
        "{err}"
    );
    first.shutdown().unwrap();
}
