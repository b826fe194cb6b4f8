//! `amphi-swarm`: load an Amphi server with real clients and report what listeners feel.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use amphi_swarm::{Kind, Scenario};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "amphi-swarm",
    version,
    about = "Load tool for Amphi: real WebRTC listeners and calls"
)]
struct Cli {
    /// Scenario file (TOML); flags override its values.
    #[arg(long)]
    scenario: Option<PathBuf>,
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Server URL (http://host:port).
    #[arg(long)]
    url: Option<String>,
    /// Start the server on loopback and measure its CPU and memory.
    #[arg(long)]
    spawn_server: bool,
    /// The server binary for --spawn-server (default: `amphi` next to this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[arg(long)]
    channels: Option<usize>,
    #[arg(long)]
    hosts: Option<usize>,
    /// Listeners per channel.
    #[arg(long)]
    listeners: Option<usize>,
    /// Listener joins per second.
    #[arg(long)]
    join_rate: Option<f64>,
    /// Churn: how long each listener stays.
    #[arg(long, value_parser = humantime::parse_duration)]
    lifetime: Option<Duration>,
    /// `tone` or `wav:PATH` (48 kHz mono 16-bit).
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    slots: Option<usize>,
    /// Calls: how many calls in all (the run also ends at --duration).
    #[arg(long)]
    calls: Option<usize>,
    /// Calls: pairs of users calling at once, each pair one call after another.
    #[arg(long)]
    concurrency: Option<usize>,
    /// The server mixes each channel (a host sends `set_mix`): one stream per listener.
    #[arg(long)]
    mix: bool,
    /// Hosts connect their media and send nothing (what idle channels cost).
    #[arg(long)]
    silent_hosts: bool,
    /// Threads driving the listeners, many peers each; 0: one task per listener.
    #[arg(long)]
    herd_threads: Option<usize>,
    /// HS256 key the server verifies tokens with (default: the --dev key).
    #[arg(long, env = "AMPHI_SWARM_SIGNING_KEY")]
    signing_key: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG plot here: latency percentiles and delivery over time (calls: setup
    /// percentiles and calls per second).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Also measure the bare SRTP protect + UDP send cost on this machine (sendto, and
    /// sendmmsg by 64), for comparison.
    #[arg(long)]
    probe: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut s = match &cli.scenario {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| Scenario::from_toml(&t))
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("amphi-swarm: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Scenario::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = cli.$f.clone() { s.$f = v; } )* };
    }
    set!(
        kind,
        url,
        duration,
        channels,
        hosts,
        listeners,
        join_rate,
        lifetime,
        source,
        slots,
        calls,
        concurrency,
        herd_threads,
        signing_key
    );
    s.mix |= cli.mix;
    s.silent_hosts |= cli.silent_hosts;
    if cli.spawn_server || cli.server_bin.is_some() {
        s.spawn_server = Some(cli.server_bin.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("amphi")))
                .unwrap_or_else(|| PathBuf::from("amphi"))
        }));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(amphi_swarm::run(s, !cli.quiet, async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    match result {
        Ok(mut report) => {
            if cli.probe {
                let probe = amphi_swarm::probe::measure(200_000);
                report.server.probe_us_per_packet = Some(probe.sendto.as_secs_f64() * 1e6);
                report.server.probe_batched_us_per_packet =
                    Some(probe.sendmmsg.as_secs_f64() * 1e6);
            }
            print!("{}", report.table());
            if let Some(path) = &cli.json {
                if let Err(e) = report.write_json(path) {
                    eprintln!("amphi-swarm: {}: {e}", path.display());
                }
            }
            if let Some(path) = &cli.plot {
                if let Err(e) = report.plot(path) {
                    eprintln!("amphi-swarm: plot: {e}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("amphi-swarm: {e}");
            ExitCode::FAILURE
        }
    }
}
