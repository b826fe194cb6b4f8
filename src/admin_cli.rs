//! `amphi channels`, `amphi calls`, `amphi webhooks`, `amphi kick`, `amphi mute`: an operator's
//! commands over the admin API of a running server (docs/protocol.md §10), with a token given or minted from the configuration's
//! signing key.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use amphi::config::Config;
use amphi::token::{claims_for, TokenKeys};

/// Where the server is and how to prove the `admin` grant.
#[derive(Args)]
pub struct Target {
    /// The server's HTTP address (default: http:// and the configuration's server.bind).
    #[arg(long, env = "AMPHI_URL", global = true)]
    pub url: Option<String>,
    /// An admin token (default: one minted for a minute from the configuration's signing key).
    #[arg(long, env = "AMPHI_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

#[derive(Subcommand)]
pub enum ChannelsCommand {
    /// Every live channel: members, hosts, audience, age.
    List,
    /// One channel and its members.
    Show { channel: String },
    /// End a channel for everyone.
    Stop { channel: String },
}

#[derive(Subcommand)]
pub enum CallsCommand {
    /// Every call in progress: caller, whether answered, each member's state.
    List,
    /// One call: media, phase, times, members.
    Show { call: String },
    /// End a call for everyone (reason `terminated`).
    End { call: String },
    /// A user's call log, newest first.
    Log {
        identity: String,
        /// Rows to show (1-100).
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
}

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Where webhooks go and how deliveries are doing: queued, delivered, failed, last error.
    Status,
    /// POST one signed `webhook_test` event now and show what the receiver answered.
    Test,
}

/// A member, by identity or participant ID.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Member {
    #[arg(long)]
    pub identity: Option<String>,
    #[arg(long)]
    pub participant: Option<String>,
}

impl Member {
    fn body(&self) -> Value {
        match (&self.identity, &self.participant) {
            (Some(i), _) => json!({ "identity": i }),
            (_, Some(p)) => json!({ "participant": p }),
            _ => json!({}),
        }
    }
}

/// What to ask the admin API, as a method, path and body.
pub enum Call {
    Get(String),
    Post(String, Value),
}

pub fn channels(cmd: &ChannelsCommand) -> Call {
    match cmd {
        ChannelsCommand::List => Call::Get("/api/channels".into()),
        ChannelsCommand::Show { channel } => Call::Get(format!("/api/channels/{}", path(channel))),
        ChannelsCommand::Stop { channel } => {
            Call::Post(format!("/api/channels/{}/stop", path(channel)), json!({}))
        }
    }
}

pub fn calls(cmd: &CallsCommand) -> Call {
    match cmd {
        CallsCommand::List => Call::Get("/api/calls".into()),
        CallsCommand::Show { call } => Call::Get(format!("/api/calls/{}", path(call))),
        CallsCommand::End { call } => {
            Call::Post(format!("/api/calls/{}/end", path(call)), json!({}))
        }
        CallsCommand::Log { identity, count } => {
            Call::Get(format!("/api/users/{}/calls?count={count}", path(identity)))
        }
    }
}

pub fn webhooks(cmd: &WebhooksCommand) -> Call {
    match cmd {
        WebhooksCommand::Status => Call::Get("/api/webhooks".into()),
        WebhooksCommand::Test => Call::Post("/api/webhooks/test".into(), json!({})),
    }
}

pub fn kick(channel: &str, member: &Member) -> Call {
    Call::Post(
        format!("/api/channels/{}/kick", path(channel)),
        member.body(),
    )
}

pub fn mute(
    channel: &str,
    member: Option<&Member>,
    unmute: bool,
    include_moderators: bool,
) -> Call {
    match member {
        Some(m) => {
            let mut body = m.body();
            body["muted"] = json!(!unmute);
            Call::Post(format!("/api/channels/{}/mute", path(channel)), body)
        }
        None => Call::Post(
            format!("/api/channels/{}/mute_all", path(channel)),
            json!({ "muted": !unmute, "spare_moderators": !include_moderators }),
        ),
    }
}

/// A channel ID as one path segment.
fn path(channel: &str) -> String {
    channel
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends `call` to the server and prints the reply: a table for the channel list, the JSON
/// otherwise. An error reply is returned with the server's message.
pub fn run(config: &Config, target: &Target, call: Call) -> Result<(), String> {
    let url = target.url.clone().unwrap_or_else(|| {
        let scheme = if config.server.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", config.server.bind)
    });
    let token = match &target.token {
        Some(t) => t.clone(),
        None if config.auth.signing_key.is_empty() => {
            return Err(
                "no admin token: pass --token (or AMPHI_ADMIN_TOKEN), or a configuration \
                        with the server's signing key (--config FILE or --dev)"
                    .into(),
            )
        }
        None => {
            let mut claims = claims_for("amphi-cli", Duration::from_secs(60));
            claims.grants = vec!["admin".into()];
            TokenKeys::new(config.auth.signing_key.as_bytes(), config.auth.leeway).mint(&claims)
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let table: Option<fn(&Value) -> String> = match &call {
        Call::Get(p) if p == "/api/channels" => Some(channel_table),
        Call::Get(p) if p == "/api/calls" => Some(call_table),
        _ => None,
    };
    let (status, reply) = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let req = match call {
            Call::Get(p) => client.get(format!("{url}{p}")),
            Call::Post(p, body) => client.post(format!("{url}{p}")).json(&body),
        };
        let resp = req
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the server at {url}: {e}"))?;
        let status = resp.status();
        let reply: Value = resp.json().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, reply))
    })?;
    if !status.is_success() {
        return Err(format!(
            "{} ({}): {}",
            reply["code"].as_str().unwrap_or("error"),
            status.as_u16(),
            reply["message"].as_str().unwrap_or("")
        ));
    }
    if let Some(table) = table {
        print!("{}", table(&reply));
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    }
    Ok(())
}

fn channel_table(reply: &Value) -> String {
    let mut out = format!(
        "{:<32} {:>8} {:>6} {:>9} {:>8}\n",
        "CHANNEL", "MEMBERS", "HOSTS", "AUDIENCE", "AGE"
    );
    for c in reply["channels"].as_array().into_iter().flatten() {
        out += &format!(
            "{:<32} {:>8} {:>6} {:>9} {:>7}s\n",
            c["channel"].as_str().unwrap_or(""),
            c["participants"],
            c["hosts"],
            c["audience_count"],
            c["age_seconds"]
        );
    }
    out
}

fn call_table(reply: &Value) -> String {
    let mut out = format!(
        "{:<20} {:<20} {:<9} MEMBERS\n",
        "CALL", "CALLER", "ANSWERED"
    );
    for c in reply["calls"].as_array().into_iter().flatten() {
        let members: Vec<String> = c["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                format!(
                    "{} ({})",
                    m["user"].as_str().unwrap_or(""),
                    m["state"].as_str().unwrap_or("")
                )
            })
            .collect();
        out += &format!(
            "{:<20} {:<20} {:<9} {}\n",
            c["call_id"].as_str().unwrap_or(""),
            c["caller"].as_str().unwrap_or(""),
            if c["answered"] == true { "yes" } else { "no" },
            members.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids_are_one_path_segment() {
        assert_eq!(path("room-1"), "room-1");
        assert_eq!(path("call:c-1"), "call%3Ac-1");
        assert_eq!(path("a/b"), "a%2Fb");
    }

    #[test]
    fn the_call_list_is_a_table() {
        let t = call_table(&json!({"calls": [
            {"call_id": "c-1", "caller": "alice", "answered": false,
             "members": [{"user": "alice", "state": "connected"}, {"user": "bob", "state": "ringing"}]}
        ]}));
        let row = t.lines().nth(1).unwrap();
        assert!(row.starts_with("c-1"), "{t}");
        assert!(row.contains("alice (connected), bob (ringing)"), "{t}");
        assert!(row.contains(" no "), "{t}");
    }

    #[test]
    fn the_list_is_a_table() {
        let t = channel_table(&json!({"channels": [
            {"channel": "room1", "participants": 3, "hosts": 1, "audience_count": 2, "age_seconds": 42}
        ]}));
        assert!(t.lines().nth(1).unwrap().starts_with("room1"), "{t}");
        assert!(t.contains("42s"), "{t}");
    }
}
