//! `amphi-swarm`: load an Amphi server with real clients and report what listeners feel.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use amphi_swarm::{Kind, Scenario};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

const EXAMPLES: &str = "\
Examples (from the repository root, after `cargo build --release --workspace`):
  # Spawn the server beside this binary: 1 host, 200 listeners joining at 50 a second, 20 s
  target/release/amphi-swarm --spawn-server --hosts 1 --listeners 200 --join-rate 50 \\
      --duration 20s --json report.json --plot report.svg

  # Against a running `amphi serve --dev`: 2 channels of 3 hosts and 50 listeners each
  target/release/amphi-swarm --url http://127.0.0.1:7880 --channels 2 --hosts 3 --slots 3 \\
      --listeners 50 --duration 30s

  # 300 one-to-one calls, 8 pairs at once (loadtest/scenarios/calls.toml, 60 s at most)
  target/release/amphi-swarm --scenario loadtest/scenarios/calls.toml --duration 60s \\
      --plot calls.svg";

#[derive(Parser)]
#[command(
    name = "amphi-swarm",
    version,
    about = "Load tool for Amphi: real WebRTC listeners and calls",
    after_help = EXAMPLES
)]
struct Cli {
    /// Scenario file (TOML, as in loadtest/scenarios/). Flags given override its values; the
    /// defaults shown apply only to what neither sets.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// What to run.
    #[arg(long, value_enum, default_value_t = Kind::Channel)]
    kind: Kind,
    /// Server to load, as `amphi serve` prints it; replaces a scenario file's spawned server.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:7880",
        conflicts_with_all = ["spawn_server", "server_bin"]
    )]
    url: String,
    /// Start `amphi serve --dev` on free loopback ports for the run, and measure its CPU and
    /// memory.
    #[arg(long)]
    spawn_server: bool,
    /// The server binary to spawn (implies --spawn-server) [default: `amphi` beside this
    /// binary].
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// How long the run lasts, joins and warm-up included (a unit is needed: 20s, 2m, 1m30s);
    /// everything stops then.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Channels, each with its own --hosts and --listeners (channel, churn).
    #[arg(long, value_name = "N", default_value_t = 1)]
    channels: usize,
    /// Hosts per channel, each on stage sending --source (channel, churn).
    #[arg(long, value_name = "N", default_value_t = 1)]
    hosts: usize,
    /// Listeners per channel: all joining (channel), or in at once (churn).
    #[arg(long, value_name = "N", default_value_t = 10)]
    listeners: usize,
    /// Listener joins per second, over all channels.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 50.0)]
    join_rate: f64,
    /// Churn: how long each listener stays before it leaves and another joins.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = humantime::parse_duration)]
    lifetime: Duration,
    /// What hosts send: `tone` (a pitch per host) or `wav:PATH` (48 kHz mono 16-bit, looped).
    #[arg(long, value_name = "SOURCE", default_value = "tone")]
    source: String,
    /// Receive slots each listener offers, capped at --hosts: the streams it hears at once.
    ///
    /// Per-second delivery expects that many streams per listener. With more hosts than
    /// slots the server renegotiates to add slots, so give --slots as many as --hosts for
    /// every host to be counted from the first packet.
    #[arg(long, value_name = "N", default_value_t = 4)]
    slots: usize,
    /// Calls: how many calls in all; the run ends at --calls or --duration, whichever first.
    #[arg(long, value_name = "N", default_value_t = 300)]
    calls: usize,
    /// Calls: pairs of users calling at once, each pair one call after another.
    #[arg(long, value_name = "PAIRS", default_value_t = 8)]
    concurrency: usize,
    /// The server mixes each channel (a host sends `set_mix`): one stream per listener.
    #[arg(long)]
    mix: bool,
    /// Hosts connect their media and send nothing (what idle channels cost).
    #[arg(long)]
    silent_hosts: bool,
    /// Threads driving the listeners, many peers each; 0 runs a task per listener.
    #[arg(long, value_name = "N", default_value_t = 1)]
    herd_threads: usize,
    /// HS256 key the server verifies tokens with [default: the key `amphi serve --dev` uses].
    #[arg(
        long,
        value_name = "KEY",
        env = "AMPHI_SWARM_SIGNING_KEY",
        hide_env_values = true
    )]
    signing_key: Option<String>,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an SVG plot here, and a PNG of it beside (FILE.png): latency percentiles,
    /// delivery and listeners over time, the steady window shaded (calls: setup percentiles
    /// and calls per second).
    #[arg(long, value_name = "FILE.svg", value_parser = svg_path)]
    plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Also measure the bare SRTP protect + UDP send cost on this machine (sendto, and
    /// sendmmsg by 64), for comparison.
    #[arg(long)]
    probe: bool,
}

/// The plot is named as its SVG; the PNG takes the same name with `.png`.
fn svg_path(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => Ok(path),
        _ => Err("name the plot FILE.svg (its PNG is written beside it as FILE.png)".into()),
    }
}

/// The scenario file's values (or the defaults), with the flags given over them: a flag left
/// at its default does not undo the file.
fn scenario(cli: &Cli, m: &ArgMatches) -> Result<Scenario, String> {
    let mut s = match &cli.scenario {
        Some(path) => load(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Scenario::default(),
    };
    let given = |id: &str| {
        matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if given(stringify!($f)) { s.$f = cli.$f.clone(); } )* };
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
        herd_threads
    );
    if let Some(key) = &cli.signing_key {
        s.signing_key = key.clone();
    }
    s.mix |= cli.mix;
    s.silent_hosts |= cli.silent_hosts;
    if given("url") {
        s.spawn_server = None;
    }
    if cli.spawn_server || cli.server_bin.is_some() {
        s.spawn_server = Some(cli.server_bin.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("amphi")))
                .unwrap_or_else(|| PathBuf::from("amphi"))
        }));
    }
    Ok(s)
}

/// A scenario file, named after its stem unless it names itself.
fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut s = Scenario::from_toml(&text)?;
    if s.name.is_none() {
        s.name = path.file_stem().map(|n| n.to_string_lossy().into_owned());
    }
    Ok(s)
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let s = match scenario(&cli, &matches) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("amphi-swarm: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        // The listeners' signalling and the sampler; hosts have a runtime of their own.
        .on_thread_start(amphi_client::herd::yield_to_speakers)
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
                let receivers = report.listeners_started.clamp(1, 2_000);
                let rounds = (200_000 / receivers as u32).max(20);
                let fanout = amphi_swarm::probe::fanout::measure_fanout(receivers, rounds);
                report.server.probe_fanout_us_per_packet = Some(fanout.as_secs_f64() * 1e6);
                report.server.probe_fanout_receivers = Some(receivers);
            }
            print!("{}", report.table());
            if let Some(path) = &cli.json {
                if let Err(e) = report.write_json(path) {
                    eprintln!("amphi-swarm: {}: {e}", path.display());
                }
            }
            if let Some(path) = &cli.plot {
                match report.plot(path) {
                    Ok(png) => eprintln!(
                        "amphi-swarm: plot written to {} and {}",
                        path.display(),
                        png.display()
                    ),
                    Err(e) => eprintln!("amphi-swarm: plot: {e}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Scenario, String> {
        let m = Cli::command()
            .try_get_matches_from(std::iter::once("amphi-swarm").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let cli = Cli::from_arg_matches(&m).map_err(|e| e.to_string())?;
        scenario(&cli, &m)
    }

    #[test]
    fn every_flag_has_help() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        for arg in cmd.get_arguments() {
            assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
        }
    }

    #[test]
    fn the_defaults_shown_are_the_scenario_defaults() {
        let s = parse(&[]).unwrap();
        let d = Scenario::default();
        assert_eq!(s.kind, d.kind);
        assert_eq!(s.url, d.url);
        assert_eq!(s.spawn_server, None);
        assert_eq!((s.duration, s.lifetime), (d.duration, d.lifetime));
        assert_eq!(
            (s.channels, s.hosts, s.listeners, s.slots),
            (d.channels, d.hosts, d.listeners, d.slots)
        );
        assert_eq!(s.join_rate, d.join_rate);
        assert_eq!(s.source, d.source);
        assert_eq!((s.calls, s.concurrency), (d.calls, d.concurrency));
        assert_eq!(s.herd_threads, d.herd_threads);
        // The defaults the CLI parses are the ones it prints.
        let cli = Cli::try_parse_from(["amphi-swarm"]).unwrap();
        assert_eq!(
            (cli.duration, cli.channels, cli.hosts, cli.slots),
            (d.duration, d.channels, d.hosts, d.slots)
        );
    }

    #[test]
    fn the_help_shows_defaults_and_examples() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "--duration <TIME>",
            "[default: 30s]",
            "[default: http://127.0.0.1:7880]",
            "--slots <N>",
            "[default: 4]",
            "Examples",
            "--spawn-server --hosts 1",
            "--url http://127.0.0.1:7880",
            "loadtest/scenarios/calls.toml",
        ] {
            assert!(help.contains(needle), "{needle} not in\n{help}");
        }
    }

    #[test]
    fn flags_given_override_a_scenario_file_and_defaults_do_not() {
        let dir = std::env::temp_dir().join(format!("amphi-swarm-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("busy.toml");
        std::fs::write(
            &file,
            "spawn_server = \"target/release/amphi\"\nduration = \"40s\"\nhosts = 3\nslots = 3\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let s = parse(&["--scenario", f, "--hosts", "5"]).unwrap();
        assert_eq!((s.hosts, s.slots), (5, 3));
        assert_eq!(s.duration, Duration::from_secs(40), "the file's, not 30s");
        assert_eq!(s.name.as_deref(), Some("busy"));
        assert!(s.spawn_server.is_some());
        // A URL on the command line reaches that server instead of spawning one.
        let s = parse(&["--scenario", f, "--url", "http://127.0.0.1:9"]).unwrap();
        assert_eq!(
            (s.spawn_server, s.url.as_str()),
            (None, "http://127.0.0.1:9")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn contradictions_and_bad_values_are_refused() {
        for args in [
            &["--url", "http://127.0.0.1:9", "--spawn-server"][..],
            &["--duration", "30"],
            &["--plot", "report.png"],
            &["--kind", "call"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        assert!(parse(&["--plot", "report.svg", "--duration", "1m30s"]).is_ok());
    }
}
