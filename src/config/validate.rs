//! `Config::validate`: every invariant the server relies on, checked section by section, each
//! refusal naming the key and what it must be.

use std::time::Duration;

use super::{Config, ConfigError, DEV_SIGNING_KEY, MIN_SIGNING_KEY_BYTES};

impl Config {
    /// Checks every invariant the server relies on; `dev` relaxes the key requirement only.
    pub fn validate(&self, dev: bool) -> Result<(), ConfigError> {
        self.validate_media()?;
        self.validate_cors()?;
        self.validate_tls()?;
        self.validate_auth(dev)?;
        self.validate_limits()?;
        self.validate_timeouts()?;
        self.role_table().validate().map_err(ConfigError::Invalid)?;
        self.validate_calls()?;
        self.validate_default_role()
    }

    /// Each CORS origin is `*` or a scheme and host (and port), as browsers send `Origin`.
    fn validate_cors(&self) -> Result<(), ConfigError> {
        for origin in &self.server.cors_origins {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let valid = origin == "*" || rest.is_some_and(|r| !r.is_empty() && !r.contains('/'));
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "server.cors_origins has {origin:?}; an origin is \"*\" or a scheme and \
                     host such as \"https://app.example.com\", with no path"
                )));
            }
        }
        Ok(())
    }

    /// The mixer's encoder settings.
    fn validate_media(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let m = &self.media;
        if !(6_000..=510_000).contains(&m.mix_bitrate) {
            return bad(format!(
                "media.mix_bitrate is {}; Opus takes 6000 to 510000 bits per second",
                m.mix_bitrate
            ));
        }
        if !(0..=10).contains(&m.mix_complexity) {
            return bad(format!(
                "media.mix_complexity is {}; it goes from 0 to 10",
                m.mix_complexity
            ));
        }
        if m.max_peers == 0 {
            return bad("media.max_peers must be above 0".into());
        }
        Ok(())
    }

    /// The signing key (and, with `--dev`, a loopback bind).
    fn validate_auth(&self, dev: bool) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let key_len = self.auth.signing_key.len();
        if !dev && key_len < MIN_SIGNING_KEY_BYTES {
            return bad(format!(
                "auth.signing_key is {key_len} bytes; it must be at least {MIN_SIGNING_KEY_BYTES} \
                 (set it in the config file or AMPHI_AUTH_SIGNING_KEY, or run with --dev)"
            ));
        }
        if !dev && self.auth.signing_key == DEV_SIGNING_KEY {
            return bad(
                "auth.signing_key is the published development key: anyone could mint \
                 tokens for this server, admin tokens included. Set a secret of your own (for \
                 example `openssl rand -hex 32`) in the config file or AMPHI_AUTH_SIGNING_KEY, or \
                 run with --dev on loopback"
                    .into(),
            );
        }
        if dev && !self.lan && !self.server.bind.ip().is_loopback() {
            return bad(format!(
                "--dev serves on loopback only, but server.bind is {}; use 127.0.0.1 or ::1, \
                 or add --lan to serve the local network over HTTPS",
                self.server.bind
            ));
        }
        if self.lan && !dev {
            return bad("--lan is a development mode; it goes with --dev".into());
        }
        Ok(())
    }

    /// A certificate and its key come together, and both can be read.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        match (&s.tls_cert, &s.tls_key) {
            (None, None) => Ok(()),
            (Some(cert), Some(key)) => {
                for (name, path) in [("server.tls_cert", cert), ("server.tls_key", key)] {
                    if let Err(e) = std::fs::metadata(path) {
                        return Err(ConfigError::Invalid(format!(
                            "{name} is {}: {e}",
                            path.display()
                        )));
                    }
                }
                Ok(())
            }
            _ => Err(ConfigError::Invalid(
                "server.tls_cert and server.tls_key go together: set both (PEM files) for \
                 HTTPS, or neither"
                    .into(),
            )),
        }
    }

    /// Frame, rate, queue and membership limits.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let l = &self.limits;
        if l.max_frame_bytes < 1024 {
            return bad(format!(
                "limits.max_frame_bytes is {}; at least 1024 is needed for a join with metadata",
                l.max_frame_bytes
            ));
        }
        if l.messages_per_second == 0 || l.message_burst == 0 {
            return bad(
                "limits.messages_per_second and limits.message_burst must be above 0".into(),
            );
        }
        if l.outbound_queue < 16 || l.channel_queue < 16 {
            return bad(
                "limits.outbound_queue and limits.channel_queue must be at least 16".into(),
            );
        }
        if l.max_channels_per_connection == 0
            || l.max_participants_per_channel == 0
            || l.max_participants == 0
        {
            return bad(
                "limits.max_channels_per_connection, limits.max_participants_per_channel and \
                 limits.max_participants must be above 0"
                    .into(),
            );
        }
        Ok(())
    }

    /// The heartbeat and the session and channel timers.
    fn validate_timeouts(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let t = &self.timeouts;
        if t.heartbeat_interval.is_zero() || t.heartbeat_timeout <= t.heartbeat_interval {
            return bad(format!(
                "timeouts.heartbeat_timeout ({:?}) must be longer than timeouts.heartbeat_interval \
                 ({:?}), which must be above 0",
                t.heartbeat_timeout, t.heartbeat_interval
            ));
        }
        if t.join_timeout.is_zero() {
            return bad("timeouts.join_timeout must be above 0".into());
        }
        if t.audience_count_interval.is_zero() {
            return bad("timeouts.audience_count_interval must be above 0".into());
        }
        Ok(())
    }

    /// The call role, call timers, limits and webhooks.
    fn validate_calls(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let c = &self.calls;
        match self.roles.get(&c.role) {
            Some(spec)
                if spec.publish
                    && spec.subscribe
                    && (spec.max_per_channel == 0
                        || spec.max_per_channel >= crate::calls::call::MAX_MEMBERS) => {}
            Some(_) => {
                return bad(format!(
                    "calls.role '{}' must publish and subscribe (both sides of a call talk) \
                     and allow {} per channel (a group call's size)",
                    c.role,
                    crate::calls::call::MAX_MEMBERS
                ))
            }
            None => {
                return bad(format!(
                    "calls.role '{}' is not in the role table (roles: {})",
                    c.role,
                    self.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        }
        if c.ring_timeout.is_zero()
            || c.media_change_timeout.is_zero()
            || c.max_calls == 0
            || c.database.is_empty()
        {
            return bad(
                "calls.ring_timeout, calls.media_change_timeout and calls.max_calls must be above 0 \
                 and calls.database set"
                    .into(),
            );
        }
        // Far beyond any human answer; bounds the deadlines computed from them.
        let day = Duration::from_secs(86_400);
        if c.ring_timeout > day || c.reconnect_grace > day || c.media_change_timeout > day {
            return bad(
                "calls.ring_timeout, calls.reconnect_grace and calls.media_change_timeout must be \
                 at most a day"
                    .into(),
            );
        }
        if !c.webhook_url.is_empty() {
            if !c.webhook_url.starts_with("http://") && !c.webhook_url.starts_with("https://") {
                return bad(format!(
                    "calls.webhook_url '{}' must start with http:// or https://",
                    c.webhook_url
                ));
            }
            if c.webhook_secret.len() < 16 {
                return bad(
                    "calls.webhook_secret must be at least 16 bytes when calls.webhook_url is set"
                        .into(),
                );
            }
            if c.webhook_queue == 0 || c.webhook_attempts == 0 {
                return bad(
                    "calls.webhook_queue and calls.webhook_attempts must be above 0".into(),
                );
            }
        }
        Ok(())
    }

    /// The role a join without one gets.
    fn validate_default_role(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !self.roles.contains_key(&self.default_role) {
            return bad(format!(
                "default_role '{}' is not in the role table (roles: {})",
                self.default_role,
                self.roles.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }
}
