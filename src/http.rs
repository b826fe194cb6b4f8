//! HTTP routes: the `/ws` upgrade (authenticated before the upgrade), `/healthz` and the admin
//! API. Every error body is `{"code", "message"}`.

use std::sync::Arc;

use actix::{Actor, AsyncContext};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::{ApiError, ErrorCode, HttpError};
use crate::ids::{ChannelId, Identity, ParticipantId};
use crate::messages::{AdminKick, AdminOp, AdminStop, Inspect, ToSession};
use crate::protocol::PROTOCOL_VERSION;
use crate::session::SessionActor;
use crate::state::AppState;
use crate::streams;
use crate::token::{Grant, TokenError, GRANT_ADMIN};

pub fn routes(cfg: &mut web::ServiceConfig) {
    public_routes(cfg);
    metrics_routes(cfg);
}

/// `/metrics`; alone on a listener of its own when `server.metrics_bind` is set.
pub fn metrics_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics))
        .default_service(web::to(not_found));
}

/// Everything but `/metrics`.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(websocket))
        .route("/healthz", web::get().to(healthz))
        .route("/", web::get().to(index))
        .route("/amphi.js", web::get().to(client_js))
        .route("/dev/token", web::post().to(dev_token))
        .route("/dev/token", web::method(Method::OPTIONS).to(preflight))
        .route("/api/channels", web::get().to(list_channels))
        .route("/api/channels/{id}", web::get().to(get_channel))
        .route("/api/channels/{id}/stop", web::post().to(stop_channel))
        .route("/api/channels/{id}/kick", web::post().to(kick))
        .route("/api/channels/{id}/mix", web::post().to(mix))
        .route("/api/channels/{id}/unban", web::post().to(unban))
        .route("/api/channels/{id}/mute", web::post().to(mute))
        .route("/api/channels/{id}/mute_all", web::post().to(mute_all))
        .route("/api/channels/{id}/set_role", web::post().to(set_role))
        .route("/api/channels/{id}/send", web::post().to(send_data))
        .route("/api/tokens/revoke", web::post().to(revoke))
        .route("/api/channels/{id}/record", web::post().to(record))
        .route(
            "/api/channels/{id}/record/stop",
            web::post().to(stop_recording),
        )
        .route("/api/channels/{id}/play", web::post().to(play))
        .route("/api/channels/{id}/play/stop", web::post().to(stop_playing))
        .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, HttpError> {
    Err(ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).into())
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
    protocol: Option<u32>,
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

fn authenticate(state: &AppState, token: Option<String>) -> Result<Grant, ApiError> {
    let token = token.ok_or(TokenError::Missing)?;
    let grant = state.keys.verify(&token)?;
    if let Some(jti) = &grant.jti {
        if state.bans.is_revoked(jti, crate::clock::now_unix_ms()) {
            return Err(TokenError::Revoked.into());
        }
    }
    Ok(grant)
}

async fn websocket(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let query = web::Query::<WsQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?
        .into_inner();
    if let Some(v) = query.protocol {
        if v != PROTOCOL_VERSION {
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                format!("protocol {v} is not supported; this server speaks {PROTOCOL_VERSION}"),
            )
            .into());
        }
    }
    let grant = authenticate(&state, query.token.or_else(|| bearer(&req)))?;
    if state.is_shutting_down() {
        // 503 rather than the code's 500: the client should retry elsewhere or later.
        return Ok(HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "code": ErrorCode::Internal,
            "message": "the server is shutting down; reconnect shortly",
        })));
    }
    let state: Arc<AppState> = state.into_inner();
    let max = state.config.limits.max_frame_bytes;
    let outbound = state.config.limits.outbound_queue;
    let (resp, sink, frames) = crate::ws::accept(&req, stream, max, outbound)
        .map_err(|e| ApiError::bad_request(format!("websocket upgrade failed: {e}")))?;
    SessionActor::create(|ctx| {
        ctx.add_stream(frames);
        SessionActor::new(grant, state, sink)
    });
    Ok(resp)
}

/// Paths another origin's page may use (the client module, the development token).
const CORS_PATHS: &[&str] = &["/amphi.js", "/dev/token"];

/// The request's `Origin` when `origins` (`server.cors_origins`) allows it on this path.
pub fn cors_allowed(
    req: &actix_web::dev::ServiceRequest,
    origins: &[String],
) -> Option<HeaderValue> {
    if origins.is_empty() || !CORS_PATHS.contains(&req.path()) {
        return None;
    }
    let origin = req.headers().get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    origins
        .iter()
        .any(|o| o == "*" || o == text)
        .then(|| origin.clone())
}

pub fn add_cors_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
}

/// A browser's preflight before a cross-origin `POST /dev/token`; the CORS headers are
/// added on the way out when the origin is allowed.
async fn preflight() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../static/index.html"))
}

async fn client_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("../static/amphi.js"))
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, HttpError> {
    let wanted = &state.config.server.metrics_token;
    if !wanted.is_empty() {
        let given = bearer(&req).unwrap_or_default();
        // Compared in full whatever the first difference, so timing tells nothing.
        let same = given.len() == wanted.len()
            && given
                .bytes()
                .zip(wanted.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "/metrics needs Authorization: Bearer <server.metrics_token>",
            )
            .into());
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevTokenBody {
    identity: String,
    channel: Option<String>,
    role: Option<String>,
    /// Only `call`: the demo page places and answers calls. Never `admin` or `proxy`.
    #[serde(default)]
    grants: Vec<String>,
}

/// Development only (`--dev`): lets the demo page mint its own token. A production app's
/// backend mints tokens; this route does not exist there.
async fn dev_token(
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    if !state.config.dev {
        return Err(ApiError::not_found("no route for POST /dev/token (only with --dev)").into());
    }
    let body: DevTokenBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"identity\", \"channel\", \"role\"}}: {e}"
        ))
    })?;
    Identity::parse(&body.identity)?;
    let mut claims = crate::token::claims_for(&body.identity, std::time::Duration::from_secs(3600));
    claims.channel = body.channel;
    claims.roles = body.role.into_iter().collect();
    if let Some(g) = body.grants.iter().find(|g| *g != crate::token::GRANT_CALL) {
        return Err(ApiError::forbidden(format!(
            "development tokens carry at most the 'call' grant, not '{g}'"
        ))
        .into());
    }
    claims.grants = body.grants;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "token": state.keys.mint(&claims) })))
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_shutting_down() {
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "shutting_down"}));
    }
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "channels": state.channels.len(),
        "sessions": state.sessions.len(),
    }))
}

pub fn admin(req: &HttpRequest, state: &AppState) -> Result<Grant, ApiError> {
    let grant = authenticate(state, bearer(req))?;
    if !grant.has(GRANT_ADMIN) {
        return Err(ApiError::forbidden(
            "the admin API needs a token with the 'admin' grant (amphi token --grant admin)",
        ));
    }
    Ok(grant)
}

fn channel_id(path: &str) -> Result<ChannelId, ApiError> {
    Ok(ChannelId::parse(path)?)
}

fn gone(id: &ChannelId) -> ApiError {
    ApiError::not_found(format!("no channel '{id}'"))
}

async fn list_channels(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    admin(&req, &state)?;
    let all = state.channels.all();
    let details =
        futures_util::future::join_all(all.iter().map(|(_, addr)| addr.send(Inspect))).await;
    let mut channels: Vec<_> = details
        .into_iter()
        .filter_map(Result::ok)
        .map(|d| d.summary)
        .collect();
    channels.sort_by(|a, b| a.channel.cmp(&b.channel));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "channels": channels })))
}

async fn get_channel(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    admin(&req, &state)?;
    let id = channel_id(&path)?;
    let addr = state.channels.get(&id).ok_or_else(|| gone(&id))?;
    let d = addr.send(Inspect).await.map_err(|_| gone(&id))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "channel": d.summary,
        "participants": d.participant_list,
    })))
}

async fn stop_channel(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    admin(&req, &state)?;
    let id = channel_id(&path)?;
    let addr = state.channels.get(&id).ok_or_else(|| gone(&id))?;
    addr.send(AdminStop).await.map_err(|_| gone(&id))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "stopped": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    participant: Option<String>,
    identity: Option<String>,
}

async fn kick(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let kicked = async {
        admin(&req, &state)?;
        let id = channel_id(&path)?;
        let body: KickBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body must be JSON {{\"participant\": ID}} or {{\"identity\": ID}}: {e}"
            ))
        })?;
        let msg = match (body.participant, body.identity) {
            (Some(p), None) => AdminKick::Participant(ParticipantId::parse(&p)?),
            (None, Some(i)) => AdminKick::Identity(Identity::parse(&i)?),
            _ => {
                return Err(ApiError::bad_request(
                    "name exactly one of \"participant\" or \"identity\"",
                ))
            }
        };
        let addr = state.channels.get(&id).ok_or_else(|| gone(&id))?;
        addr.send(msg).await.map_err(|_| gone(&id))?
    }
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "kicked": kicked })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnbanBody {
    identity: String,
}

/// Lets a kicked identity back into a channel (whether or not the channel exists now).
async fn unban(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    admin(&req, &state)?;
    let id = channel_id(&path)?;
    let body: UnbanBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the body must be JSON {{\"identity\": ID}}: {e}"))
    })?;
    let identity = Identity::parse(&body.identity).map_err(ApiError::from)?;
    let was = state.bans.lift(&id, &identity);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "channel": id,
        "identity": identity,
        "was_banned": was,
    })))
}

/// A member named in an admin request body: exactly one of `participant` and `identity`.
fn named(participant: Option<String>, identity: Option<String>) -> Result<AdminKick, ApiError> {
    match (participant, identity) {
        (Some(p), None) => Ok(AdminKick::Participant(ParticipantId::parse(&p)?)),
        (None, Some(i)) => Ok(AdminKick::Identity(Identity::parse(&i)?)),
        _ => Err(ApiError::bad_request(
            "name exactly one of \"participant\" or \"identity\"",
        )),
    }
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteBody {
    participant: Option<String>,
    identity: Option<String>,
    #[serde(default = "default_true")]
    muted: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteAllBody {
    #[serde(default = "default_true")]
    muted: bool,
    #[serde(default = "default_true")]
    spare_moderators: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRoleBody {
    participant: Option<String>,
    identity: Option<String>,
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    kind: String,
    #[serde(default)]
    content: serde_json::Value,
    #[serde(default)]
    to: Vec<String>,
}

/// Runs one admin operation on a channel: the body read as `B`, `op` making the message.
async fn admin_op<B: serde::de::DeserializeOwned>(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
    shape: &str,
    op: impl FnOnce(B) -> Result<AdminOp, ApiError>,
) -> Result<HttpResponse, HttpError> {
    let done = async {
        admin(&req, &state)?;
        let id = channel_id(&path)?;
        let body: B = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body must be JSON {shape}: {e}")))?;
        let msg = op(body)?;
        let addr = state.channels.get(&id).ok_or_else(|| gone(&id))?;
        addr.send(msg).await.map_err(|_| gone(&id))?
    }
    .await?;
    Ok(HttpResponse::Ok().json(done))
}

async fn mute(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let shape = r#"{"participant": ID} or {"identity": ID}, with "muted" (default true)"#;
    admin_op(req, path, body, state, shape, |b: MuteBody| {
        Ok(AdminOp::Mute {
            who: named(b.participant, b.identity)?,
            muted: b.muted,
        })
    })
    .await
}

async fn mute_all(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let body = if body.is_empty() {
        web::Bytes::from_static(b"{}")
    } else {
        body
    };
    let shape = r#"{"muted": bool, "spare_moderators": bool} (both default true)"#;
    admin_op(req, path, body, state, shape, |b: MuteAllBody| {
        Ok(AdminOp::MuteAll {
            muted: b.muted,
            spare_moderators: b.spare_moderators,
        })
    })
    .await
}

async fn set_role(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let shape = r#"{"participant": ID} or {"identity": ID}, with "role""#;
    admin_op(req, path, body, state, shape, |b: SetRoleBody| {
        Ok(AdminOp::SetRole {
            who: named(b.participant, b.identity)?,
            role: b.role,
        })
    })
    .await
}

async fn send_data(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let shape = r#"{"kind": "…", "content": any, "to": [participant IDs] (optional)}"#;
    admin_op(req, path, body, state, shape, |b: SendBody| {
        if b.kind.is_empty() || b.kind.len() > 64 {
            return Err(ApiError::bad_request("\"kind\" must be 1 to 64 bytes"));
        }
        let to =
            b.to.iter()
                .map(|p| ParticipantId::parse(p))
                .collect::<Result<Vec<_>, _>>()?;
        Ok(AdminOp::Send {
            kind: b.kind,
            content: b.content,
            to,
        })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    jti: String,
    /// The token's `exp` (unix seconds), when known: the revocation is kept until then.
    exp: Option<u64>,
}

/// How long a revocation is kept when the token's expiry is not given: longer than any token
/// the `amphi token` command mints.
const REVOCATION_DEFAULT: u64 = 366 * 24 * 3600;

/// Refuses every token carrying `jti` from now on (new connections and admin requests) and
/// closes the connections opened with it.
async fn revoke(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    admin(&req, &state)?;
    let body: RevokeBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"jti\": ID, \"exp\": unix seconds (optional)}}: {e}"
        ))
    })?;
    if body.jti.is_empty() || body.jti.len() > 256 {
        return Err(ApiError::bad_request("jti must be 1 to 256 characters").into());
    }
    let now_s = crate::clock::now_unix_ms() / 1000;
    let until_s = body.exp.unwrap_or(now_s + REVOCATION_DEFAULT);
    state.bans.revoke(&body.jti, until_s.saturating_mul(1000));
    // Connections already open with it end too (each session checks its own token's ID).
    for session in state.sessions.iter() {
        session.value().do_send(ToSession::Revoked {
            jti: body.jti.clone(),
        });
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": body.jti, "until": until_s })))
}

/// Admin routes handled in `streams`: the token checked here, the work there.
macro_rules! admin_streams {
    ($($route:ident => $handler:path;)*) => {$(
        async fn $route(
            req: HttpRequest,
            path: web::Path<String>,
            body: web::Bytes,
            state: web::Data<AppState>,
        ) -> Result<HttpResponse, HttpError> {
            admin(&req, &state)?;
            $handler(&path, &body, &state).await
        }
    )*};
}

admin_streams! {
    mix => streams::mix;
    record => streams::record;
    stop_recording => streams::stop_recording;
    play => streams::play;
    stop_playing => streams::stop_playing;
}
