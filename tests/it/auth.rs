//! Every token failure is refused with HTTP 401 and a JSON body before the upgrade.

use crate::common::*;
use amphi::config::DEV_SIGNING_KEY;
use amphi::token::now_unix;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Attempts an upgrade and returns the HTTP refusal: status and JSON body.
async fn refused(url: String, header: Option<String>) -> (u16, Value) {
    let mut req = url.into_client_request().unwrap();
    if let Some(h) = header {
        req.headers_mut()
            .insert("authorization", h.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => panic!("upgrade should have been refused"),
        Err(WsError::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            (
                resp.status().as_u16(),
                serde_json::from_slice(&body).expect("JSON body"),
            )
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn hs256(claims: &Value, key: &[u8]) -> String {
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(key)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_before_upgrade() {
    let server = start();
    let base = format!("ws://{}/ws", server.addr);
    let exp = now_unix() + 600;
    let cases: Vec<(&str, String, &str)> = vec![
        ("missing", base.clone(), "no access token"),
        ("garbage", format!("{base}?token=abc.def"), "malformed"),
        (
            "alg none",
            {
                let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
                let body = URL_SAFE_NO_PAD.encode(json!({"sub": "eve", "exp": exp}).to_string());
                format!("{base}?token={header}.{body}.")
            },
            "",
        ),
        (
            "wrong key",
            format!(
                "{base}?token={}",
                hs256(&json!({"sub": "eve", "exp": exp}), &[9u8; 32])
            ),
            "signature",
        ),
        (
            "expired beyond leeway",
            format!(
                "{base}?token={}",
                hs256(
                    &json!({"sub": "eve", "exp": now_unix() - 120}),
                    DEV_SIGNING_KEY.as_bytes()
                )
            ),
            "expired",
        ),
        (
            "missing exp",
            format!(
                "{base}?token={}",
                hs256(&json!({"sub": "eve"}), DEV_SIGNING_KEY.as_bytes())
            ),
            "exp",
        ),
    ];
    for (name, url, hint) in cases {
        let (status, body) = refused(url, None).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["code"], "unauthorized", "{name}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(hint), "{name}: {message}");
    }
    // The Authorization header is checked the same way.
    let (status, _) = refused(base.clone(), Some("Bearer nope".into())).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_token_in_header_and_version_negotiation() {
    let server = start();
    let t = token("alice", &["host"]);
    let mut req = format!("ws://{}/ws?protocol=1", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {t}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    use futures_util::StreamExt;
    let welcome = ws.next().await.unwrap().unwrap().into_text().unwrap();
    let welcome: Value = serde_json::from_str(&welcome).unwrap();
    assert_eq!(welcome["protocol"], 1);
    assert_eq!(welcome["identity"], "alice");
    assert!(welcome["session"].as_str().unwrap().starts_with("s-"));
    let (status, body) = refused(
        format!("ws://{}/ws?protocol=9&token={t}", server.addr),
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("unsupported")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_configured_origins_may_load_the_module_and_mint_dev_tokens() {
    let server = start_with(|c| c.server.cors_origins = vec!["https://app.example".into()]);
    let http = reqwest::Client::new();
    let get = |origin: &'static str| {
        http.get(format!("{}/amphi.js", server.http_url()))
            .header("Origin", origin)
            .send()
    };
    let allowed = get("https://app.example").await.unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = get("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // The browser's preflight for the token endpoint, then the request itself.
    let pre = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/dev/token", server.http_url()),
        )
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status().as_u16(), 204);
    assert!(pre.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let minted = http
        .post(format!("{}/dev/token", server.http_url()))
        .header("Origin", "https://app.example")
        .json(&serde_json::json!({"identity": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status().as_u16(), 200);
    assert_eq!(
        minted.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    // The admin API is never opened to other origins.
    let admin = http
        .get(format!("{}/api/channels", server.http_url()))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(admin.headers().get("access-control-allow-origin").is_none());
    // Without configured origins, nothing is.
    let closed = start();
    let plain = http
        .get(format!("{}/amphi.js", closed.http_url()))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("access-control-allow-origin").is_none());
}
