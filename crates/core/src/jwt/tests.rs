//! The verifier against every way a token can be wrong, and RFC 7515's HS256 example.

use super::*;
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn key() -> Hs256 {
    Hs256::new(b"a signing key of thirty-two bytes", 60)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token with `header` and `claims`, signed with `secret` as given (whatever the header says).
fn forge(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signed = format!("{}.{}", b64(header), b64(claims));
    let mut mac = HmacSha256::new_from_slice(secret).unwrap();
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn hs256(claims: &Value) -> String {
    forge(
        &json!({"alg": "HS256", "typ": "JWT"}),
        claims,
        b"a signing key of thirty-two bytes",
    )
}

fn check(token: &str) -> Result<Value, JwtError> {
    key().verify::<Value>(token, NOW)
}

#[test]
fn what_it_signs_it_verifies() {
    let claims = json!({"sub": "alice", "exp": NOW + 600, "roles": ["host"]});
    let token = key().sign(&claims);
    assert!(token.starts_with(HEADER));
    assert_eq!(check(&token).unwrap(), claims);
    // The header constant is what it claims to be.
    let header: Value = serde_json::from_slice(&decode(HEADER, "header").unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
}

#[test]
fn time_is_checked_with_the_leeway() {
    let at = |exp: u64| check(&hs256(&json!({"sub": "a", "exp": exp})));
    assert_eq!(at(NOW - 61), Err(JwtError::Expired));
    assert!(at(NOW - 60).is_ok(), "within the leeway");
    let nbf = |nbf: u64| check(&hs256(&json!({"sub": "a", "exp": NOW + 600, "nbf": nbf})));
    assert_eq!(nbf(NOW + 61), Err(JwtError::NotYetValid));
    assert!(nbf(NOW + 60).is_ok());
}

#[test]
fn other_algorithms_are_refused_before_the_signature() {
    let claims = json!({"sub": "eve", "exp": NOW + 600});
    for alg in [
        json!("none"),
        json!("HS512"),
        json!("RS256"),
        json!("hs256"),
        json!(null),
    ] {
        let header = json!({"alg": alg, "typ": "JWT"});
        let token = forge(&header, &claims, b"a signing key of thirty-two bytes");
        assert_eq!(check(&token), Err(JwtError::BadAlgorithm), "{alg}");
    }
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims));
    assert_eq!(check(&unsigned), Err(JwtError::BadAlgorithm));
    let no_alg = forge(
        &json!({"typ": "JWT"}),
        &claims,
        b"a signing key of thirty-two bytes",
    );
    assert_eq!(check(&no_alg), Err(JwtError::BadAlgorithm));
}

#[test]
fn a_changed_key_payload_or_signature_is_refused() {
    let claims = json!({"sub": "eve", "exp": NOW + 600});
    let other = forge(&json!({"alg": "HS256"}), &claims, b"another key");
    assert_eq!(check(&other), Err(JwtError::BadSignature));
    let token = hs256(&claims);
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let (header, _) = signed.split_once('.').unwrap();
    let admin = b64(&json!({"sub": "eve", "exp": NOW + 600, "grants": ["admin"]}));
    assert_eq!(
        check(&format!("{header}.{admin}.{signature}")),
        Err(JwtError::BadSignature)
    );
    assert_eq!(check(&format!("{signed}.")), Err(JwtError::BadSignature));
    let mut flipped = signature.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    assert_eq!(
        check(&format!("{signed}.{flipped}")),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn malformed_tokens_say_what_is_wrong() {
    let good = hs256(&json!({"sub": "a", "exp": NOW + 600}));
    for (token, hint) in [
        ("", "three"),
        ("abc.def", "three"),
        (&*format!("{good}.x"), "three"),
        ("!!.e30.", "header is not base64url"),
        (
            &*format!("{}.e30.", URL_SAFE_NO_PAD.encode("not json")),
            "header is not JSON",
        ),
        (&*format!("{}=", good), "signature is not base64url"),
    ] {
        match check(token) {
            Err(JwtError::Malformed(m)) => assert!(m.contains(hint), "{token:?}: {m}"),
            other => panic!("{token:?}: {other:?}"),
        }
    }
    for (claims, want) in [
        (
            json!({"exp": NOW + 600}),
            JwtError::MissingClaim("sub".into()),
        ),
        (json!({"sub": "a"}), JwtError::MissingClaim("exp".into())),
        (
            json!(["sub", "exp"]),
            JwtError::Malformed("the payload is not a JSON object".into()),
        ),
    ] {
        assert_eq!(check(&hs256(&claims)), Err(want), "{claims}");
    }
    for exp in [json!("soon"), json!(1.5), json!(-1)] {
        match check(&hs256(&json!({"sub": "a", "exp": exp}))) {
            Err(JwtError::Malformed(m)) => assert!(m.contains("exp"), "{m}"),
            other => panic!("{exp}: {other:?}"),
        }
    }
    let long = "x".repeat(10_000);
    match check(&format!("{long}.{long}.{long}")) {
        Err(JwtError::Malformed(m)) => assert!(m.len() <= 200, "{} bytes", m.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn typed_claims_report_a_missing_field_by_name() {
    #[derive(serde::Deserialize, Debug)]
    struct Mine {
        #[allow(dead_code)]
        room: String,
    }
    let token = hs256(&json!({"sub": "a", "exp": NOW + 600}));
    assert_eq!(
        key().verify::<Mine>(&token, NOW).unwrap_err(),
        JwtError::MissingClaim("room".into())
    );
}

/// RFC 7515 appendix A.1: an HS256 JWS made by another implementation, with its key. The
/// signature verifies; the claims lack `sub`, which this verifier requires.
#[test]
fn the_rfc_7515_example_verifies() {
    let k = URL_SAFE_NO_PAD
        .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
        .unwrap();
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\
                 eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.\
                 dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let before_exp = 1_300_819_370;
    assert_eq!(
        Hs256::new(&k, 0).verify::<Value>(token, before_exp),
        Err(JwtError::MissingClaim("sub".into()))
    );
    assert_eq!(
        Hs256::new(b"not the key", 0).verify::<Value>(token, before_exp),
        Err(JwtError::BadSignature)
    );
}
