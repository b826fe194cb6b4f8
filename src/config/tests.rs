use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn sample_config_parses_and_validates() {
    let text = include_str!("../../config/amphi.toml");
    let config = Config::from_toml_str(text, "config/amphi.toml").unwrap();
    config.validate(true).unwrap();
    assert!(config.roles.contains_key("host"));
    assert!(config.roles.contains_key("audience"));
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_toml_str("[server]\nbindd = \"x\"\n", "t.toml").unwrap_err();
    assert!(err.to_string().contains("bindd"), "{err}");
    let err = Config::from_toml_str("colour = 1\n", "t.toml").unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
}

#[test]
fn env_overrides_apply_and_unknown_ones_are_named() {
    let config = Config::load(
        None,
        env(&[
            ("AMPHI_SERVER_BIND", "127.0.0.1:9999"),
            ("AMPHI_LIMITS_OUTBOUND_QUEUE", "512"),
            ("AMPHI_TIMEOUTS_HEARTBEAT_TIMEOUT", "20s"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(config.server.bind.port(), 9999);
    assert_eq!(config.limits.outbound_queue, 512);
    assert_eq!(config.timeouts.heartbeat_timeout, Duration::from_secs(20));
    let err = Config::load(None, env(&[("AMPHI_BOGUS", "1")])).unwrap_err();
    assert!(err.to_string().contains("AMPHI_BOGUS"), "{err}");
    let err = Config::load(None, env(&[("AMPHI_SERVER_NOPE", "1")])).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn digit_only_and_boolean_looking_secrets_stay_text() {
    let config = Config::load(
        None,
        env(&[
            ("AMPHI_AUTH_SIGNING_KEY", "12345678901234567890123456789012"),
            ("AMPHI_CALLS_WEBHOOK_SECRET", "123456"),
            ("AMPHI_SERVER_METRICS_TOKEN", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(config.auth.signing_key, "12345678901234567890123456789012");
    assert_eq!(config.calls.webhook_secret, "123456");
    assert_eq!(config.server.metrics_token, "true");
}

#[test]
fn a_refused_override_names_its_variable_and_value() {
    let err = Config::load(None, env(&[("AMPHI_LIMITS_OUTBOUND_QUEUE", "lots")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("AMPHI_LIMITS_OUTBOUND_QUEUE"), "{err}");
    assert!(err.contains("\"lots\""), "{err}");
    let err = Config::load(None, env(&[("AMPHI_CALLS_RING_TIMEOUT", "-5")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("AMPHI_CALLS_RING_TIMEOUT"), "{err}");
    assert!(err.contains("\"-5\""), "{err}");
    let err = Config::load(None, env(&[("AMPHI_AUTH_SIGNING_KYE", "hunter2-secret")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("AMPHI_AUTH_SIGNING_KYE"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "a misspelt key's value may be a secret: {err}"
    );
}

#[test]
fn short_key_refuses_outside_dev() {
    let mut config = Config::default();
    config.auth.signing_key = "short".into();
    let err = config.validate(false).unwrap_err().to_string();
    assert!(err.contains("at least 32"), "{err}");
    config.validate(true).unwrap();
    config.auth.signing_key = "k".repeat(32);
    config.validate(false).unwrap();
}

#[test]
fn the_published_development_key_refuses_outside_dev() {
    let mut config = Config::default();
    config.auth.signing_key = DEV_SIGNING_KEY.into();
    let err = config.validate(false).unwrap_err().to_string();
    assert!(err.contains("published development key"), "{err}");
    config.validate(true).unwrap();
}

#[test]
fn dev_refuses_public_bind() {
    let mut config = Config::dev();
    config.server.bind = "0.0.0.0:7880".parse().unwrap();
    assert!(config.validate(true).is_err());
}

#[test]
fn heartbeat_and_roles_are_checked() {
    let mut config = Config::dev();
    config.timeouts.heartbeat_timeout = config.timeouts.heartbeat_interval;
    assert!(config.validate(true).is_err());
    let mut config = Config::dev();
    config.default_role = "ghost".into();
    let err = config.validate(true).unwrap_err().to_string();
    assert!(err.contains("ghost"), "{err}");
}
