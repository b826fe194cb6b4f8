//! `amphi-join`: joins a channel from a terminal, like a page would. It publishes a tone or a
//! WAV file (as a host), or listens and writes what it hears to a WAV file, and prints every
//! event it receives as a JSON line.
//!
//! ```sh
//! amphi-join --url http://127.0.0.1:7880 --channel lobby --identity bot --role host --tone 440
//! amphi-join --url http://127.0.0.1:7880 --channel lobby --identity ear --record heard.wav --seconds 10
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use amphi_client::{AudioPeer, PeerOptions, Signal, Source, Tone, Wav};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "amphi-join",
    version,
    about = "Join an Amphi channel: publish a tone or a WAV file, or record what you hear",
    after_help = "Example: amphi-join --url http://127.0.0.1:7880 --channel lobby --role host --tone 440 --seconds 30\n\
                  A server started with `serve --dev` gives tokens itself; otherwise pass --token \
                  (e.g. from `amphi token --config FILE --identity bot --role host`)."
)]
struct Cli {
    /// The server's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:7880")]
    url: String,
    /// The channel to join.
    #[arg(long)]
    channel: String,
    /// Your identity (with a development server, the token is made for it).
    #[arg(long, default_value = "amphi-join")]
    identity: String,
    /// The role to join as: a role that publishes (host) to send audio.
    #[arg(long, default_value = "audience")]
    role: String,
    /// An access token (default: asked of a development server's /dev/token).
    #[arg(long, env = "AMPHI_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Publish a sine tone of this frequency in Hz.
    #[arg(long, conflicts_with = "wav")]
    tone: Option<f64>,
    /// Publish this WAV file (16-bit PCM, 48 kHz mono), looped.
    #[arg(long)]
    wav: Option<PathBuf>,
    /// Write what you hear (every speaker summed) to this WAV file (48 kHz mono) at the end.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Stay this many seconds (default: until Ctrl-C).
    #[arg(long)]
    seconds: Option<f64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("amphi-join: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let source: Option<Box<dyn Source>> = match (&cli.tone, &cli.wav) {
        (Some(f), _) => Some(Box::new(Tone::new(*f))),
        (_, Some(path)) => {
            Some(Box::new(Wav::open(path).map_err(|e| {
                format!("cannot read {}: {e}", path.display())
            })?))
        }
        _ => None,
    };
    let token = match &cli.token {
        Some(t) => t.clone(),
        None => dev_token(&cli.url, &cli.identity, &cli.channel, &cli.role).await?,
    };
    let signal = Signal::connect(&cli.url, &token)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", cli.url))?;
    let joined = signal
        .join(&cli.channel, &cli.role)
        .await
        .map_err(|e| format!("cannot join '{}': {e}", cli.channel))?;
    println!("{joined}");
    let opts = PeerOptions {
        slots: if source.is_some() { 1 } else { 3 },
        publish: source,
        keep_audio: cli.record.is_some(),
        ..PeerOptions::default()
    };
    let peer = AudioPeer::start(&signal, &cli.channel, opts)
        .await
        .map_err(|e| format!("cannot start audio: {e}"))?;
    if !peer.wait_connected(Duration::from_secs(10)).await {
        return Err(
            "the audio connection did not come up within 10 s (is the UDP port reachable?)".into(),
        );
    }
    eprintln!(
        "amphi-join: in '{}' as {}; audio connected",
        cli.channel, cli.role
    );
    let until = cli
        .seconds
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    loop {
        let left = until.map(|t| t.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            break;
        }
        let wait = left
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_millis(200));
        tokio::select! {
            ev = signal.next_event(wait) => {
                if let Some(ev) = ev {
                    println!("{ev}");
                    if ev["event"] == "left" {
                        break;
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let stats = peer.stats();
    eprintln!(
        "amphi-join: sent {} packets, received {}",
        stats.sent_packets,
        stats.received_packets()
    );
    if let Some(path) = &cli.record {
        let samples = mixed(&stats.slots);
        write_wav(path, &samples).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!(
            "amphi-join: wrote {:.1} s to {}",
            samples.len() as f64 / 48_000.0,
            path.display()
        );
    }
    let _ = signal
        .request("leave", serde_json::json!({"channel": cli.channel}))
        .await;
    peer.close().await;
    Ok(())
}

/// Every slot's decoded audio summed (slots start when their speaker does, so they are
/// lined up at their ends, which arrive together).
fn mixed(slots: &[amphi_client::SlotStats]) -> Vec<i16> {
    let len = slots.iter().map(|s| s.samples.len()).max().unwrap_or(0);
    let mut sum = vec![0i32; len];
    for s in slots {
        let offset = len - s.samples.len();
        for (i, v) in s.samples.iter().enumerate() {
            sum[offset + i] += i32::from(*v);
        }
    }
    sum.into_iter()
        .map(|v| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
        .collect()
}

fn write_wav(path: &std::path::Path, samples: &[i16]) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in samples {
        w.write_sample(*s)?;
    }
    w.finalize()
}

/// A token from a development server (`serve --dev` mints them at `/dev/token`).
async fn dev_token(url: &str, identity: &str, channel: &str, role: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url
        .strip_prefix("http://")
        .ok_or("--url must start with http:// to ask for a development token; pass --token")?
        .trim_end_matches('/');
    let body =
        serde_json::json!({"identity": identity, "channel": channel, "role": role}).to_string();
    let mut conn = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let req = format!(
        "POST /dev/token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match json["token"].as_str() {
        Some(t) if head.starts_with("HTTP/1.1 200") => Ok(t.to_string()),
        _ => Err(format!(
            "the server gave no development token ({}); pass --token",
            json["message"]
                .as_str()
                .unwrap_or(head.lines().next().unwrap_or(""))
        )),
    }
}
