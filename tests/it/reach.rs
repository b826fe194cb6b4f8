//! Reach beyond loopback: HTTPS and WSS from a configured certificate, and `--dev --lan`
//! joined by Chromium from another network namespace (a veth pair the test creates), the
//! way a phone on the same network would join.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use amphi::config::Config;
use serde_json::Value;

fn tls_client() -> reqwest::Client {
    // The certificates here are self-signed: what is checked is that the port speaks TLS.
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_certificate_serves_https_and_wss_only() {
    let dir = std::env::temp_dir().join(format!("amphi-reach-tls-{}", std::process::id()));
    let (cert, key) = amphi::tls::dev_certificate(&dir, &[]).unwrap();
    let server = start_with(|c| {
        c.server.tls_cert = Some(cert.clone());
        c.server.tls_key = Some(key.clone());
    });
    assert!(server.http_url().starts_with("https://"));
    let health = tls_client()
        .get(format!("{}/healthz", server.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Plain HTTP on the TLS port gets no page.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", server.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // The page's module, over TLS, names the secure WebSocket scheme for https pages.
    let js = tls_client()
        .get(format!("{}/amphi.js", server.http_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("wss:"));
    server.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_certificate_without_its_key_is_refused_at_start() {
    let mut config = Config::default();
    config.server.tls_cert = Some("/nonexistent/cert.pem".into());
    let err = config.validate(true).unwrap_err().to_string();
    assert!(
        err.contains("server.tls_cert and server.tls_key go together"),
        "{err}"
    );
    config.server.tls_key = Some("/nonexistent/key.pem".into());
    let err = config.validate(true).unwrap_err().to_string();
    assert!(
        err.contains("server.tls_cert is /nonexistent/cert.pem"),
        "{err}"
    );
}

/// A network namespace joined to this one by a veth pair, removed (with its veth) on drop.
struct Namespace {
    name: String,
    host_ip: String,
}

impl Namespace {
    fn create() -> Self {
        let id = std::process::id() % 10_000;
        let name = format!("amphi-lan-{id}");
        let (host_if, ns_if) = (format!("alh{id}"), format!("aln{id}"));
        let subnet = id % 250 + 1;
        let host_ip = format!("10.201.{subnet}.1");
        let ns_ip = format!("10.201.{subnet}.2");
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), name.clone()],
            [
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ]
            .map(String::from)
            .to_vec(),
            ["link", "set", &ns_if, "netns", &name]
                .map(String::from)
                .to_vec(),
            ["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]
                .map(String::from)
                .to_vec(),
            ["link", "set", &host_if, "up"].map(String::from).to_vec(),
            [
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ns_ip}/30"),
                "dev",
                &ns_if,
            ]
            .map(String::from)
            .to_vec(),
            ["-n", &name, "link", "set", &ns_if, "up"]
                .map(String::from)
                .to_vec(),
            ["-n", &name, "link", "set", "lo", "up"]
                .map(String::from)
                .to_vec(),
        ];
        let ns = Namespace { name, host_ip };
        for step in steps {
            let ok = Command::new("ip")
                .args(&step)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip {} failed", step.join(" "));
        }
        ns
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs the page driver, inside `netns` when given; returns its JSON line.
async fn page(netns: Option<&str>, args: &[&str]) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "node"]);
            c
        }
        None => Command::new("node"),
    };
    cmd.arg("drive.mjs").args(args).current_dir(dir);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "driver printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `serve --dev --lan`: every interface, HTTPS with a generated certificate, media announced
/// at the LAN address. Chromium in another namespace (another machine, as far as the network
/// goes) opens the page over HTTPS at that address and hears a host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_lan_serves_a_page_another_machine_joins_over_https_and_hears_a_host() {
    if !is_root() {
        // Creating a network namespace needs root; scripts/test.sh and CI run as root.
        eprintln!("skipped: creating a network namespace needs root");
        return;
    }
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "run ./scripts/test.sh as root"
    );
    let ns = Namespace::create();
    let data = tempfile::tempdir().unwrap();
    let (mut child, addr, log) = spawn_binary_with(
        &["--lan"],
        &[
            ("XDG_DATA_HOME", data.path().as_os_str()),
            ("AMPHI_MEDIA_PUBLIC_IP", ns.host_ip.as_ref()),
        ],
    );
    let port = addr.rsplit(':').next().unwrap().to_string();
    assert!(
        addr.starts_with("0.0.0.0:"),
        "--lan binds every interface: {addr}"
    );
    let lines: Vec<String> = log.try_iter().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("LAN MODE") && l.contains(&ns.host_ip)),
        "the LAN mode is announced with its address: {lines:?}"
    );
    assert!(
        data.path().join("amphi-dev/lan-cert.pem").exists(),
        "certificate kept in the data directory; log: {lines:?}"
    );
    let lan_url = format!("https://{}:{port}", ns.host_ip);
    let local_url = format!("https://127.0.0.1:{port}");
    let host_args = [
        "--url",
        &local_url,
        "--channel",
        "lan",
        "--identity",
        "desk",
        "--role",
        "host",
        "--seconds",
        "10",
        "--ignore-https-errors",
    ];
    let phone_args = [
        "--url",
        &lan_url,
        "--channel",
        "lan",
        "--identity",
        "phone",
        "--role",
        "audience",
        "--seconds",
        "5",
        "--ignore-https-errors",
    ];
    let (host, phone) = tokio::join!(page(None, &host_args), page(Some(&ns.name), &phone_args));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(host["joined"], true, "{host}");
    assert_eq!(phone["joined"], true, "{phone}");
    let inbound = phone["inbound"].as_array().expect("inbound stats");
    let heard = inbound
        .iter()
        .find(|i| i["packetsReceived"].as_u64().unwrap_or(0) > 100)
        .unwrap_or_else(|| panic!("the phone heard nothing: {phone}"));
    assert_eq!(heard["identity"], "desk", "{phone}");
    assert!(heard["totalAudioEnergy"].as_f64().unwrap() > 0.0, "{phone}");
}
