//! HS256 JSON Web Tokens (RFC 7519 with one algorithm, RFC 7518 §3.2): the only kind Amphi
//! mints or accepts. Kept to that one algorithm on purpose: a general JWT library brings RSA,
//! elliptic curves and EdDSA, none of which an HS256 verifier may ever take, and the
//! algorithm-confusion class of bugs with them.
//!
//! Checks, in order: three base64url parts; a JSON header whose `alg` is `HS256` (anything
//! else, `none` included, is refused before the signature); the HMAC, compared in constant
//! time; a JSON object payload with a numeric `exp` and a `sub`; `exp` not past and `nbf` (when
//! present) not ahead of `now` by more than the leeway. Time is passed in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `{"alg":"HS256","typ":"JWT"}`, base64url: every token minted here starts with it.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// The claims every token must carry.
const REQUIRED: [&str; 2] = ["exp", "sub"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not HS256")]
    BadAlgorithm,
    #[error("the signature does not match")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("missing claim {0}")]
    MissingClaim(String),
    #[error("{0}")]
    Malformed(String),
}

/// One signing key and the clock leeway its verification allows.
#[derive(Clone)]
pub struct Hs256 {
    mac: HmacSha256,
    leeway_s: u64,
}

impl Hs256 {
    pub fn new(secret: &[u8], leeway_s: u64) -> Self {
        Self {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length"),
            leeway_s,
        }
    }

    /// `claims` as a signed token.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize to JSON"));
        let mut token = format!("{HEADER}.{payload}");
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        token.push('.');
        token.push_str(&signature);
        token
    }

    /// The claims of `token` when it passes every check at `now_s` (unix seconds).
    pub fn verify<T: DeserializeOwned>(&self, token: &str, now_s: u64) -> Result<T, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("a JWT has three dot-separated parts"));
        };
        let header_json: Value = serde_json::from_slice(&decode(header, "header")?)
            .map_err(|e| malformed(format!("the header is not JSON: {e}")))?;
        if header_json.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(JwtError::BadAlgorithm);
        }
        let signature = decode(signature, "signature")?;
        // The header, the dot and the payload, as they came.
        let signed = &token[..header.len() + 1 + payload.len()];
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| JwtError::BadSignature)?;

        let claims: Value = serde_json::from_slice(&decode(payload, "payload")?)
            .map_err(|e| malformed(format!("the payload is not JSON: {e}")))?;
        let object = claims
            .as_object()
            .ok_or_else(|| malformed("the payload is not a JSON object"))?;
        if let Some(missing) = REQUIRED.iter().find(|c| !object.contains_key(**c)) {
            return Err(JwtError::MissingClaim((*missing).to_string()));
        }
        let exp = seconds(object, "exp")?.expect("exp is present");
        if exp.saturating_add(self.leeway_s) < now_s {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = seconds(object, "nbf")? {
            if nbf > now_s.saturating_add(self.leeway_s) {
                return Err(JwtError::NotYetValid);
            }
        }
        serde_json::from_value(claims).map_err(|e| {
            let text = e.to_string();
            match text.strip_prefix("missing field `") {
                Some(rest) => JwtError::MissingClaim(rest.split('`').next().unwrap_or("").into()),
                None => malformed(format!("claims: {text}")),
            }
        })
    }
}

fn decode(part: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| malformed(format!("the {what} is not base64url: {e}")))
}

/// A time claim in whole seconds; a fractional or negative one is malformed.
fn seconds(claims: &serde_json::Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| malformed(format!("claim '{name}' is not a number of seconds"))),
    }
}

fn malformed(why: impl Into<String>) -> JwtError {
    let mut why: String = why.into();
    if why.len() > 200 {
        let mut end = 200;
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        why.truncate(end);
    }
    JwtError::Malformed(why)
}

#[cfg(test)]
mod tests;
