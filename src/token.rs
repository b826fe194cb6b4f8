//! Access tokens: HS256 JWTs minted by the application backend (or `amphi token`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amphi_core::jwt::{Hs256, JwtError};
use serde::{Deserialize, Serialize};

use crate::ids::{ChannelId, Identity};

/// Grant that opens the admin API.
pub const GRANT_ADMIN: &str = "admin";
/// Grant that makes an identity callable (presence).
pub const GRANT_CALL: &str = "call";
/// Grant that lets an app server observe every call and act in calls for other identities.
pub const GRANT_PROXY: &str = "proxy";
/// Every grant a token may carry.
pub const GRANTS: [&str; 3] = [GRANT_ADMIN, GRANT_CALL, GRANT_PROXY];

/// Claims carried by an access token. `sub` is the identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The channel (ID or URI) this token may join; absent or `"*"` means any channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Roles the holder may take; empty means the server's default role only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The token's ID: the admin API can revoke it (`POST /api/tokens/revoke`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// A token that passed verification.
#[derive(Debug, Clone)]
pub struct Grant {
    pub identity: Identity,
    pub name: Option<String>,
    pub channel: Option<String>,
    pub roles: Vec<String>,
    pub grants: Vec<String>,
    pub jti: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
}

impl Grant {
    pub fn has(&self, grant: &str) -> bool {
        self.grants.iter().any(|g| g == grant)
    }

    /// Whether the token opens `resolved`, the channel a join maps to (by ID or by URI).
    /// A claim that reads as a channel ID names that channel only: a claim "room1" does not
    /// open the URI channel derived from "room1". A URI channel is granted by its URI (when
    /// that is not also a channel ID) or its `uri-…` ID.
    pub fn allows_channel(&self, resolved: &ChannelId) -> bool {
        match self.channel.as_deref() {
            None | Some("*") => true,
            Some(c) if ChannelId::parse(c).is_ok() => c == resolved.as_str(),
            Some(c) => ChannelId::from_uri(c).is_ok_and(|id| &id == resolved),
        }
    }

    pub fn allows_role(&self, role: &str, default_role: &str) -> bool {
        role_allowed(&self.roles, role, default_role)
    }
}

pub use crate::roles::role_allowed;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no access token: pass ?token=<JWT> or an Authorization: Bearer header")]
    Missing,
    #[error("the token has expired; mint a new one")]
    Expired,
    #[error("the token's signature does not match this server's signing key")]
    BadSignature,
    #[error("the token must be signed with HS256 (alg 'none' and others are refused)")]
    BadAlgorithm,
    #[error("the token lacks the required claim '{0}'")]
    MissingClaim(String),
    #[error("the token is not yet valid (nbf is in the future)")]
    NotYetValid,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token was revoked; mint a new one")]
    Revoked,
}

impl TokenError {
    /// The wire code for HTTP 401 bodies; finer than `unauthorized` so tools can tell why.
    pub fn code(&self) -> &'static str {
        "unauthorized"
    }
}

/// Signs and verifies tokens with one HS256 key (`amphi_core::jwt`).
#[derive(Clone)]
pub struct TokenKeys {
    key: Hs256,
}

impl TokenKeys {
    pub fn new(secret: &[u8], leeway: Duration) -> Self {
        Self {
            key: Hs256::new(secret, leeway.as_secs()),
        }
    }

    pub fn mint(&self, claims: &Claims) -> String {
        self.key.sign(claims)
    }

    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let c: Claims = self.key.verify(token, now_unix()).map_err(|e| match e {
            JwtError::Expired => TokenError::Expired,
            JwtError::BadSignature => TokenError::BadSignature,
            JwtError::BadAlgorithm => TokenError::BadAlgorithm,
            JwtError::MissingClaim(c) => TokenError::MissingClaim(c),
            JwtError::NotYetValid => TokenError::NotYetValid,
            JwtError::Malformed(why) => TokenError::Malformed(why),
        })?;
        let identity = Identity::parse(&c.sub)
            .map_err(|e| TokenError::Malformed(format!("claim 'sub': {e}")))?;
        Ok(Grant {
            identity,
            name: c.name,
            channel: c.channel,
            roles: c.roles,
            grants: c.grants,
            jti: c.jti,
            expires_at: c.exp,
        })
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh token ID: 128 random bits, hex.
pub fn new_jti() -> String {
    amphi_proto::ids::random_hex128()
}

/// Claims for `identity` valid for `ttl` from now.
pub fn claims_for(identity: &str, ttl: Duration) -> Claims {
    let now = now_unix();
    Claims {
        sub: identity.to_string(),
        name: None,
        channel: None,
        roles: Vec::new(),
        grants: Vec::new(),
        exp: now + ttl.as_secs(),
        iat: Some(now),
        jti: Some(new_jti()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&[7u8; 32], Duration::from_secs(60))
    }

    #[test]
    fn round_trip() {
        let mut claims = claims_for("alice", Duration::from_secs(600));
        claims.roles = vec!["host".into()];
        claims.channel = Some("c1".into());
        let grant = keys().verify(&keys().mint(&claims)).unwrap();
        assert_eq!(grant.identity.as_str(), "alice");
        assert!(grant.allows_role("host", "audience"));
        assert!(!grant.allows_role("audience", "audience"));
        let c1 = ChannelId::parse("c1").unwrap();
        assert!(grant.allows_channel(&c1));
        assert!(!grant.allows_channel(&ChannelId::parse("c2").unwrap()));
        // The URI channel of "c1" is another channel.
        let uri_c1 = ChannelId::from_uri("c1").unwrap();
        assert!(!grant.allows_channel(&uri_c1));
        // A URI claim opens its URI channel (by URI or by ID) and nothing else.
        let url = "https://live.example.test/rooms/42";
        let mut claims = claims_for("bob", Duration::from_secs(600));
        claims.channel = Some(url.into());
        let grant = keys().verify(&keys().mint(&claims)).unwrap();
        let room = ChannelId::from_uri(url).unwrap();
        assert!(grant.allows_channel(&room));
        assert!(!grant.allows_channel(&c1));
    }

    /// Tokens cross between this server and a general JWT library both ways: an app backend
    /// may mint with any HS256 implementation.
    #[test]
    fn tokens_interoperate_with_another_jwt_implementation() {
        use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header};
        let mut claims = claims_for("alice", Duration::from_secs(600));
        claims.grants = vec!["call".into()];
        let theirs = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        let grant = keys().verify(&theirs).unwrap();
        assert_eq!(
            (grant.identity.as_str(), grant.has("call")),
            ("alice", true)
        );
        let ours = keys().mint(&claims);
        let read = decode::<Claims>(
            &ours,
            &DecodingKey::from_secret(&[7u8; 32]),
            &jsonwebtoken::Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(read.claims, claims);
    }

    #[test]
    fn failures_are_told_apart() {
        let k = keys();
        let mut claims = claims_for("alice", Duration::from_secs(600));
        claims.exp = now_unix() - 120;
        assert!(matches!(
            k.verify(&k.mint(&claims)),
            Err(TokenError::Expired)
        ));
        // Within the leeway an expired token still passes.
        claims.exp = now_unix() - 30;
        assert!(k.verify(&k.mint(&claims)).is_ok());
        let other = TokenKeys::new(&[8u8; 32], Duration::from_secs(60));
        let fresh = claims_for("alice", Duration::from_secs(600));
        assert!(matches!(
            k.verify(&other.mint(&fresh)),
            Err(TokenError::BadSignature)
        ));
        assert!(matches!(
            k.verify("not.a.jwt"),
            Err(TokenError::Malformed(_))
        ));
    }
}
