//! Access tokens for the swarm's clients, signed with the scenario's key.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn token(key: &str, identity: &str, role: &str) -> String {
    token_with_grants(key, identity, role, &[])
}

pub(crate) fn token_with_grants(key: &str, identity: &str, role: &str, grants: &[&str]) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 24 * 3600;
    let mut claims = serde_json::json!({"sub": identity, "roles": [role], "exp": exp});
    if !grants.is_empty() {
        claims["grants"] = grants.into();
    }
    amphi_core::jwt::Hs256::new(key.as_bytes(), 0).sign(&claims)
}
