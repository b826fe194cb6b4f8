//! Server configuration: defaults, strict TOML parsing, `AMPHI_*` environment overrides and
//! validation with messages that say what to change.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::roles::{RoleSpec, RoleTable};

mod validate;

/// Used by `--dev` only. Announced in the log at start so nobody mistakes it for a secret.
pub const DEV_SIGNING_KEY: &str = "amphi-dev-signing-key-do-not-use-in-production";

/// HS256 keys shorter than the hash output make brute force cheaper than the hash (RFC 7518 §3.2).
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

/// Environment variables that configure the process itself rather than a config key.
const ENV_NOT_KEYS: &[&str] = &["AMPHI_CONFIG", "AMPHI_LOG"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub timeouts: TimeoutsConfig,
    pub media: MediaConfig,
    pub calls: CallsConfig,
    /// Role name → permissions. Replaces the default table entirely when present.
    pub roles: BTreeMap<String, RoleSpec>,
    /// Role given to a token that names no roles.
    pub default_role: String,
    /// Set by `--dev`, not by the file: enables the development token endpoint.
    #[serde(skip)]
    pub dev: bool,
    /// Set by `--dev --lan`, not by the file: development mode reachable from the local
    /// network (all interfaces, HTTPS with a generated certificate).
    #[serde(skip)]
    pub lan: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// HTTP/WebSocket worker threads; 0 means one per core.
    pub workers: usize,
    /// How long a graceful shutdown waits for connections to flush before closing them.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <this>` (for a
    /// server whose port faces the internet); empty: open, as Prometheus expects on a
    /// private network.
    pub metrics_token: String,
    /// When set, `/metrics` is served on this address only (a private interface or port for
    /// Prometheus) and no longer on `bind`.
    pub metrics_bind: Option<SocketAddr>,
    /// Web origins (`https://app.example.com`, or `*`) whose pages may load `/amphi.js` and
    /// call `/dev/token` from their own origin (CORS). Empty: same origin only.
    pub cors_origins: Vec<String>,
    /// PEM certificate chain and private key: when both are set the signalling port speaks
    /// HTTPS and WSS only (a browser on another machine needs a secure page for its
    /// microphone).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret shared with the application backend that mints tokens.
    pub signing_key: String,
    /// Clock skew tolerated on `exp`/`nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_frame_bytes: usize,
    pub messages_per_second: u32,
    pub message_burst: u32,
    pub rate_limit_strikes: u32,
    pub max_channels_per_connection: usize,
    pub max_participants_per_channel: usize,
    /// Channel memberships across the server (a connection in two channels holds two): past
    /// it, joins are refused with `busy` and a retry hint.
    pub max_participants: usize,
    pub max_metadata_bytes: usize,
    pub outbound_queue: usize,
    pub channel_queue: usize,
    /// Channel events a session keeps (shared frames, a reference each) for its client to
    /// get back what it missed when it resumes.
    pub resume_buffer: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Address the media UDP socket binds to.
    pub bind_ip: IpAddr,
    /// The one UDP port every peer uses; 0 picks a free port (tests).
    pub udp_port: u16,
    /// Address announced to clients in the ICE candidate; defaults to `bind_ip`. Set it to
    /// the public address when binding 0.0.0.0 behind a 1:1 NAT.
    pub public_ip: Option<IpAddr>,
    /// Media worker threads, each with its own socket on the same port; 0 = one per core.
    pub workers: usize,
    /// Kernel receive and send buffer per worker socket, in bytes.
    pub socket_buffer_bytes: usize,
    /// Receive slots one listener may have (server renegotiation stops there).
    pub max_slots: usize,
    /// Packets waiting in one worker's queue from the other workers; overflow is dropped
    /// and counted (`queue_full`).
    pub worker_queue: usize,
    /// WebRTC peer connections across the server: past it, a new `media_offer` is refused
    /// with `busy` and a retry hint (renegotiating an existing peer is not).
    pub max_peers: usize,
    /// ICE over TCP (RFC 6544): a passive TCP candidate on the UDP port's number, for clients
    /// whose network blocks UDP. UDP stays preferred wherever it works.
    pub ice_tcp: bool,
    /// A new channel's policy. `forward`: every listener receives each speaker's own
    /// stream. `mix`: the server decodes the speakers, and every listener receives one mixed
    /// stream (speakers the mix without themselves). `auto`: forward while at most
    /// `mix_auto_above` speakers are unmuted, mix above. Moderators change it per channel.
    pub mix_policy: MixPolicy,
    /// The `auto` policy's threshold.
    pub mix_auto_above: usize,
    /// Bit rate of the mixed stream.
    pub mix_bitrate: i32,
    /// Opus encoder complexity of the mix, 0 (cheapest) to 10.
    pub mix_complexity: i32,
    /// Where recordings of channels' mixes are written (created when missing).
    pub recordings_dir: std::path::PathBuf,
    /// A recording stops (reason `limit`) at this size…
    pub max_recording_bytes: u64,
    /// …or after this long.
    #[serde(with = "humantime_serde")]
    pub max_recording_duration: Duration,
    /// Recordings running at once, across channels.
    pub max_recordings: usize,
    /// Where files to play into channels are looked up (by name; nothing outside it).
    pub playback_dir: std::path::PathBuf,
    /// Largest file that can be played (it is held in memory while it plays).
    pub max_playback_bytes: u64,
    /// Playbacks running at once, across channels.
    pub max_playbacks: usize,
}

pub use crate::protocol::MixPolicy;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// How long a callee's devices ring before the call is missed.
    #[serde(with = "humantime_serde")]
    pub ring_timeout: Duration,
    /// How long a connected member whose connection dropped keeps its place in a call.
    #[serde(with = "humantime_serde")]
    pub reconnect_grace: Duration,
    /// How long a media change request waits for the other side's answer.
    #[serde(with = "humantime_serde")]
    pub media_change_timeout: Duration,
    /// The call-log database (SQLite); `:memory:` keeps logs for the process only.
    pub database: String,
    /// The role both sides take in the call's private channel; it must publish and subscribe.
    pub role: String,
    /// Calls in progress at once across the server; a call beyond it gets `busy`.
    pub max_calls: usize,
    /// Calls one identity may place per minute (across its connections and proxies acting
    /// for it); more get `rate_limited`.
    pub max_calls_per_minute: u32,
    /// Callees one call may ring (at most 31, a call's 32 members less its caller).
    pub max_callees: usize,
    /// Where signed call webhooks are POSTed (http://…); empty disables webhooks.
    pub webhook_url: String,
    /// HMAC-SHA256 key for the webhook signature.
    pub webhook_secret: String,
    /// Per-attempt HTTP timeout for a webhook.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Webhook events held at once (waiting or in flight); beyond it they are dropped and
    /// counted.
    pub webhook_queue: usize,
    /// Attempts per webhook event, the first included.
    pub webhook_attempts: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub empty_channel_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub audience_count_interval: Duration,
    /// How long a session whose connection dropped keeps its memberships and peers for the
    /// client to resume it (`resume`); 0 turns resuming off.
    #[serde(with = "humantime_serde")]
    pub resume_window: Duration,
    /// How long a kick keeps the kicked identity out of the channel; 0: until the token it
    /// joined with expires.
    #[serde(with = "humantime_serde")]
    pub kick_ban: Duration,
    /// A connection that has joined no channel this long after it opened is closed (1008),
    /// unless its token lets it take or place calls (it may wait to be called).
    #[serde(with = "humantime_serde")]
    pub join_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            timeouts: TimeoutsConfig::default(),
            media: MediaConfig::default(),
            calls: CallsConfig::default(),
            roles: RoleTable::default_specs(),
            default_role: "audience".into(),
            dev: false,
            lan: false,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:7880".parse().expect("literal address"),
            workers: 0,
            shutdown_timeout: Duration::from_secs(5),
            metrics_token: String::new(),
            metrics_bind: None,
            cors_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            signing_key: String::new(),
            leeway: Duration::from_secs(60),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            // Large enough for any control message with metadata; media never travels here.
            max_frame_bytes: 64 * 1024,
            // A person clicking produces a few requests per second; 20/s with a burst of 40
            // leaves room for scripted clients while capping a flooder's cost.
            messages_per_second: 20,
            message_burst: 40,
            rate_limit_strikes: 20,
            max_channels_per_connection: 8,
            max_participants_per_channel: 10_000,
            max_participants: 100_000,
            max_metadata_bytes: 4096,
            // Events queued for one connection before it counts as too slow and is dropped.
            // A host sees one event per join; bursts of hundreds of joins within a few
            // milliseconds are normal when a show starts. The queue costs nothing when empty.
            outbound_queue: 1024,
            resume_buffer: 256,
            // Requests queued for one channel; joins of thousands arrive in bursts.
            channel_queue: 8192,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            udp_port: 7882,
            public_ip: None,
            workers: 0,
            // At 1,000 peers the default 208 KiB socket buffer overflowed in bursts and dropped
            // packets silently; 8 MiB holds well over 100 ms of traffic at that scale.
            socket_buffer_bytes: 8 * 1024 * 1024,
            max_slots: 16,
            worker_queue: 4096,
            max_peers: 10_000,
            ice_tcp: true,
            mix_policy: MixPolicy::Forward,
            mix_auto_above: 3,
            mix_bitrate: 32_000,
            mix_complexity: 5,
            recordings_dir: "recordings".into(),
            // About 17 hours of the mix at 32 kb/s, or the duration below, whichever is first.
            max_recording_bytes: 256 * 1024 * 1024,
            max_recording_duration: Duration::from_secs(4 * 3600),
            max_recordings: 16,
            playback_dir: "media".into(),
            max_playback_bytes: 16 * 1024 * 1024,
            max_playbacks: 16,
        }
    }
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            ring_timeout: Duration::from_secs(60),
            // Long enough for a phone to switch from Wi-Fi to mobile data and reconnect.
            reconnect_grace: Duration::from_secs(20),
            media_change_timeout: crate::calls::call::MEDIA_CHANGE_TIMEOUT,
            database: "amphi-calls.sqlite".into(),
            role: "call".into(),
            max_calls: 10_000,
            max_calls_per_minute: 20,
            max_callees: 8,
            webhook_url: String::new(),
            webhook_secret: String::new(),
            webhook_timeout: Duration::from_secs(5),
            webhook_queue: 10_000,
            webhook_attempts: 8,
        }
    }
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
            empty_channel_grace: Duration::from_secs(30),
            audience_count_interval: Duration::from_secs(1),
            join_timeout: Duration::from_secs(10),
            kick_ban: Duration::ZERO,
            resume_window: Duration::from_secs(20),
        }
    }
}

impl Config {
    /// The embedded default: loopback only, development key.
    pub fn dev() -> Self {
        let mut config = Self::default();
        config.auth.signing_key = DEV_SIGNING_KEY.into();
        config.dev = true;
        config
    }

    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.into(),
            message: e.message().to_string(),
        })?;
        Self::from_table(table, origin)
    }

    fn from_table(table: toml::Table, origin: &str) -> Result<Self, ConfigError> {
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: origin.into(),
                message: e.message().to_string(),
            })
    }

    /// Reads `path` (or starts from defaults) and applies `AMPHI_<SECTION>_<KEY>` overrides.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    message: e.message().to_string(),
                })?;
                (table, p.display().to_string())
            }
            None => (toml::Table::new(), "built-in defaults".to_string()),
        };
        // Checked before the environment is laid over it, so that the file's own mistakes
        // are reported against the file and not against the first variable.
        Self::from_table(table.clone(), &origin)?;
        apply_env(&mut table, env)?;
        Self::from_table(table, &origin)
    }

    pub fn role_table(&self) -> RoleTable {
        RoleTable::new(self.roles.clone())
    }
}

const SECTIONS: &[&str] = &["server", "auth", "limits", "timeouts", "media", "calls"];

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, value) in env {
        let Some(rest) = var.strip_prefix("AMPHI_") else {
            continue;
        };
        if ENV_NOT_KEYS.contains(&var.as_str()) {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let (section, key) = if lower == "default_role" {
            (None, lower)
        } else {
            let section = SECTIONS
                .iter()
                .find(|s| lower.starts_with(&format!("{s}_")))
                .ok_or_else(|| ConfigError::Env {
                    var: var.clone(),
                    message: format!(
                        "not a configuration key; overrides look like AMPHI_<SECTION>_<KEY> \
                         with SECTION one of {}",
                        SECTIONS.join(", ")
                    ),
                })?;
            (Some(*section), lower[section.len() + 1..].to_string())
        };
        let mut refusal = None;
        for candidate in typed(&value) {
            set(table, section, &key, candidate).map_err(|message| ConfigError::Env {
                var: var.clone(),
                message,
            })?;
            match Config::from_table(table.clone(), "") {
                Ok(_) => {
                    refusal = None;
                    break;
                }
                Err(ConfigError::Parse { message, .. }) => refusal = Some(message),
                Err(other) => return Err(other),
            }
        }
        if let Some(message) = refusal {
            // A misspelt key may hold a secret: its value stays out of the message.
            let message = if message.starts_with("unknown field") {
                message
            } else {
                format!("{value:?}: {message}")
            };
            return Err(ConfigError::Env { var, message });
        }
    }
    Ok(())
}

fn set(
    table: &mut toml::Table,
    section: Option<&str>,
    key: &str,
    value: toml::Value,
) -> Result<(), String> {
    let Some(section) = section else {
        table.insert(key.to_string(), value);
        return Ok(());
    };
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(section_table) = entry else {
        return Err(format!("[{section}] in the config file is not a table"));
    };
    section_table.insert(key.to_string(), value);
    Ok(())
}

/// Environment values are untyped text, so the key's type decides: a number or boolean is
/// tried first, so that `AMPHI_LIMITS_OUTBOUND_QUEUE=512` reaches an integer key, then the
/// text itself, so that a key taking text keeps a digit-only secret as it was written.
fn typed(value: &str) -> Vec<toml::Value> {
    let text = toml::Value::String(value.to_string());
    if let Ok(i) = value.parse::<i64>() {
        vec![toml::Value::Integer(i), text]
    } else if let Ok(b) = value.parse::<bool>() {
        vec![toml::Value::Boolean(b), text]
    } else {
        vec![text]
    }
}

#[cfg(test)]
mod tests;
