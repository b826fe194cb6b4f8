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
    /// Pairs calling, accepting, talking and hanging up.
    Calls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
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
    pub signing_key: String,
    /// Receive slots each listener offers (capped at the number of hosts).
    pub slots: usize,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
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
        }
    }
}

impl Scenario {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
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
        if self.kind == Kind::Calls {
            return Err(
                "the calls scenario needs the server's call engine, which this version of \
                 Amphi does not run"
                    .into(),
            );
        }
        Ok(())
    }
}
