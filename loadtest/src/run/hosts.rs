//! The speaking peers. They run on a runtime and a thread of their own: a real speaker's
//! device sends each frame on time whatever its audience does, so the swarm's listeners
//! (joining, leaving, a thousand tasks waking at once) must not delay a host's next frame.

use std::time::Duration;

use amphi_client::{AudioPeer, PeerOptions, Signal, Source, Tone, Wav};

use crate::scenario::Scenario;
use crate::tokens::token;

pub(super) struct Hosts {
    runtime: tokio::runtime::Runtime,
    peers: Vec<(Signal, AudioPeer)>,
}

impl Hosts {
    /// Every channel's hosts, connected, joined and publishing (or silent when the scenario
    /// says so); the first host of each channel asks for the mix when the scenario mixes.
    pub(super) async fn start(scenario: &Scenario, url: &str) -> Result<Hosts, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("swarm-hosts")
            .enable_all()
            .build()
            .map_err(|e| format!("hosts' thread: {e}"))?;
        let (scenario, url) = (scenario.clone(), url.to_string());
        let peers = runtime
            .spawn(async move { start_hosts(&scenario, &url).await })
            .await
            .map_err(|e| format!("hosts: {e}"))??;
        Ok(Hosts { runtime, peers })
    }

    pub(super) async fn stop(self) {
        let Hosts { runtime, peers } = self;
        let _ = runtime
            .spawn(async move {
                for (signal, peer) in peers {
                    peer.close().await;
                    signal.close().await;
                }
            })
            .await;
        // Dropping a runtime from async code panics; its tasks are done by now.
        runtime.shutdown_background();
    }
}

fn source(spec: &str, index: usize) -> Result<Box<dyn Source>, String> {
    match spec.strip_prefix("wav:") {
        Some(path) => Wav::open(path.as_ref())
            .map(|w| Box::new(w) as Box<dyn Source>)
            .map_err(|e| format!("{path}: {e}")),
        // Distinct tones per host, so a listener's slots can be told apart.
        None => Ok(Box::new(Tone::new(440.0 + 110.0 * index as f64))),
    }
}

async fn start_hosts(scenario: &Scenario, url: &str) -> Result<Vec<(Signal, AudioPeer)>, String> {
    let mut hosts = Vec::new();
    for c in 0..scenario.channels {
        for h in 0..scenario.hosts {
            let identity = format!("host-{c}-{h}");
            let channel = format!("swarm-{c}");
            let signal = Signal::connect(url, &token(&scenario.signing_key, &identity, "host"))
                .await
                .map_err(|e| format!("{identity}: {e}"))?;
            signal
                .join(&channel, "host")
                .await
                .map_err(|e| format!("{identity}: join: {e}"))?;
            let opts = PeerOptions {
                publish: Some(source(&scenario.source, h)?),
                slots: 0,
                decode: false,
                ..PeerOptions::default()
            };
            let peer = AudioPeer::start(&signal, &channel, opts)
                .await
                .map_err(|e| format!("{identity}: media: {e}"))?;
            if !peer.wait_connected(Duration::from_secs(10)).await {
                return Err(format!("{identity}: media did not connect within 10 s"));
            }
            if scenario.mix && h == 0 {
                signal
                    .request(
                        "set_mix",
                        serde_json::json!({"channel": channel, "policy": "mix"}),
                    )
                    .await
                    .map_err(|e| format!("{identity}: set_mix: {e}"))?;
            }
            if scenario.silent_hosts {
                peer.set_sending(false).await;
            }
            hosts.push((signal, peer));
        }
    }
    Ok(hosts)
}
