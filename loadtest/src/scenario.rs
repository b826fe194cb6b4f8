//! What a swarm run does: a TOML scenario file, overridden by flags.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Used when no key is given: the key `amphi serve --dev` announces.
pub const DEV_SIGNING_KEY: &str = "amphi-dev-signing-key-do-not-use-in-production";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// C channels × H hosts × L listeners, listeners joining at a rate.
    Channel,
    /// Listeners join, stay `lifetime`, leave, and are replaced, at a rate.
    Churn,
    /// Pairs of users placing calls back to back: ring, answer, audio both ways, hang up.
    Calls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// What the run is called in the plot's title; a scenario file's stem when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kind: Kind,
    /// Server to load (`http://host:port`); ignored with `spawn_server`.
    pub url: String,
    /// Start this `amphi` binary on loopback and measure its CPU and memory.
    pub spawn_server: Option<PathBuf>,
    /// Everything stops after this long, whatever state it is in.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    pub channels: usize,
    pub hosts: usize,
    /// Listeners per channel.
    pub listeners: usize,
    /// Listener joins per second, over all channels.
    pub join_rate: f64,
    /// Churn: how long one listener stays.
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    /// `tone` or a 48 kHz mono 16-bit WAV file path.
    pub source: String,
    /// Never written into a report: a report is shared, the key must not be.
    #[serde(skip_serializing)]
    pub signing_key: String,
    /// Receive slots each listener offers (capped at the number of hosts).
    pub slots: usize,
    /// Calls: how many calls in all; the run also ends at `duration`, whichever comes first.
    pub calls: usize,
    /// Calls: pairs of users calling at the same time, each pair one call after another.
    pub concurrency: usize,
    /// Threads driving the listeners, each many peers (a socket each, one poll for all);
    /// 0 runs every listener as its own task instead (as the tests' clients do).
    pub herd_threads: usize,
    /// The server mixes: a host sets each channel's policy to `mix` before listeners join,
    /// and every listener receives one stream.
    pub mix: bool,
    /// Hosts connect and stay silent (an idle-cost run).
    pub silent_hosts: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: None,
            kind: Kind::Channel,
            url: "http://127.0.0.1:7880".into(),
            spawn_server: None,
            duration: Duration::from_secs(30),
            channels: 1,
            hosts: 1,
            listeners: 10,
            join_rate: 50.0,
            lifetime: Duration::from_secs(10),
            source: "tone".into(),
            signing_key: DEV_SIGNING_KEY.into(),
            slots: 4,
            calls: 300,
            concurrency: 8,
            herd_threads: 1,
            mix: false,
            silent_hosts: false,
        }
    }
}

impl Scenario {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The run's name (else its kind) and what it does, for a plot's title.
    pub fn label(&self) -> String {
        let n = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let stage = format!(
            "{} × {} × {} per channel",
            n(self.channels, "channel"),
            n(self.hosts, "host"),
            n(self.listeners, "listener")
        );
        let mix = if self.mix { ", mixed" } else { "" };
        let (kind, what) = match self.kind {
            Kind::Channel => ("channel", format!("{stage}{mix}")),
            Kind::Churn => (
                "churn",
                format!(
                    "{stage}{mix}, each staying {}",
                    humantime::format_duration(self.lifetime)
                ),
            ),
            Kind::Calls => (
                "calls",
                format!(
                    "{}, {} at once",
                    n(self.calls, "call"),
                    n(self.concurrency, "pair")
                ),
            ),
        };
        format!("{}: {what}", self.name.as_deref().unwrap_or(kind))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.channels == 0 || self.hosts == 0 {
            return Err("channels and hosts must be at least 1".into());
        }
        if self.join_rate <= 0.0 || !self.join_rate.is_finite() {
            return Err("join_rate must be a positive number of joins per second".into());
        }
        if self.duration.is_zero() {
            return Err("duration must be above 0".into());
        }
        if self.source != "tone" && !self.source.starts_with("wav:") {
            return Err(format!(
                "source must be `tone` or `wav:PATH`, not `{}`",
                self.source
            ));
        }
        if self.kind == Kind::Calls && (self.calls == 0 || self.concurrency == 0) {
            return Err("calls and concurrency must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_calls_scenario_file_parses_and_validates() {
        let s = Scenario::from_toml(include_str!("../scenarios/calls.toml")).unwrap();
        assert_eq!(s.kind, Kind::Calls);
        assert_eq!((s.calls, s.concurrency), (300, 8));
        assert_eq!(s.duration, Duration::from_secs(120));
        s.validate().unwrap();
    }

    #[test]
    fn a_written_scenario_keeps_no_signing_key() {
        let s = Scenario {
            signing_key: "a-very-secret-signing-key-0123456789".into(),
            ..Scenario::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            !json.contains("secret") && !json.contains("signing_key"),
            "{json}"
        );
        // Read back (a report's scenario), it has the default key, not an error.
        let back: Scenario = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kind, s.kind);
    }

    /// The repository's root, which scenario files name their paths from: the swarm runs
    /// there.
    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("loadtest/ is inside the repository")
            .canonicalize()
            .unwrap()
    }

    fn scenario_files() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        files
    }

    /// `path` as a scenario names it: relative, and once resolved an existing file inside the
    /// repository (no `..` out of it, no link to elsewhere).
    fn inside_repo(root: &Path, path: &Path, file: &Path) -> PathBuf {
        assert!(
            path.is_relative(),
            "{}: {} is absolute",
            file.display(),
            path.display()
        );
        let full = root.join(path).canonicalize().unwrap_or_else(|e| {
            panic!("{}: {}: {e}", file.display(), path.display());
        });
        assert!(
            full.starts_with(root),
            "{}: {} is outside the repository",
            file.display(),
            path.display()
        );
        full
    }

    #[test]
    fn every_scenario_file_loads_and_names_only_paths_inside_the_repository() {
        let root = repo_root();
        let files = scenario_files();
        assert!(files.len() >= 3, "{files:?}");
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            let s = Scenario::from_toml(&text)
                .and_then(|s| s.validate().map(|()| s))
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if let Some(wav) = s.source.strip_prefix("wav:") {
                let wav = inside_repo(&root, Path::new(wav), file);
                if let Err(e) = amphi_client::Wav::open(&wav) {
                    panic!("{}: {}: {e}", file.display(), wav.display());
                }
            }
            // The server binary is a build product, absent until `cargo build --release`; it
            // must still be the repository's own.
            if let Some(bin) = &s.spawn_server {
                assert!(
                    bin.is_relative() && bin.starts_with("target/release"),
                    "{}: spawn_server {} is not the repository's build",
                    file.display(),
                    bin.display()
                );
            }
        }
    }

    #[test]
    fn a_source_is_a_tone_or_a_wav_file() {
        for (source, ok) in [("tone", true), ("wav:x.wav", true), ("tnoe", false)] {
            let s = Scenario {
                source: source.into(),
                ..Scenario::default()
            };
            assert_eq!(s.validate().is_ok(), ok, "{source}");
        }
    }

    #[test]
    fn a_label_is_the_name_or_kind_and_what_the_run_does() {
        let s = Scenario {
            hosts: 10,
            listeners: 100,
            ..Scenario::default()
        };
        assert_eq!(
            s.label(),
            "channel: 1 channel × 10 hosts × 100 listeners per channel"
        );
        let named = Scenario {
            name: Some("one-host-1000".into()),
            kind: Kind::Calls,
            calls: 40,
            concurrency: 1,
            ..s
        };
        assert_eq!(named.label(), "one-host-1000: 40 calls, 1 pair at once");
    }

    #[test]
    fn calls_need_at_least_one_call_and_one_pair() {
        let calls = Scenario {
            kind: Kind::Calls,
            ..Scenario::default()
        };
        calls.validate().unwrap();
        for (n, pairs) in [(0, 8), (300, 0)] {
            let s = Scenario {
                calls: n,
                concurrency: pairs,
                ..calls.clone()
            };
            assert!(s.validate().unwrap_err().contains("concurrency"));
        }
        // Other kinds ignore the call settings.
        let channel = Scenario {
            calls: 0,
            concurrency: 0,
            ..Scenario::default()
        };
        channel.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        assert!(Scenario::from_toml("kind = \"calls\"\npairs = 3\n").is_err());
        assert!(Scenario::from_toml("kind = \"call\"\n").is_err());
        let s = Scenario::from_toml("kind = \"calls\"\ncalls = 5\nconcurrency = 2\n").unwrap();
        assert_eq!((s.kind, s.calls, s.concurrency), (Kind::Calls, 5, 2));
    }
}
