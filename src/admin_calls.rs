//! The admin API's calls and webhooks (docs/protocol.md §10): the calls in progress, one call,
//! ending one, a user's call log, and how the webhook receiver is doing. Same admin token and
//! error bodies as the channels' admin routes in `http`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::calls::call::{CallId, EndReason};
use crate::calls::store::{Cursor, PageRequest, MAX_PAGE};
use crate::error::{ApiError, ErrorCode, HttpError};
use crate::http::admin;
use crate::ids::Identity;
use crate::messages::{
    CallHandle, InspectCall, LogAnswer, LogQuery, Terminate, WebhookStatsQuery, WebhookTest,
};
use crate::state::AppState;
use amphi_proto::calls::{Order, NEWEST};

/// Registered before `http`'s routes, whose default service answers everything else.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/calls", web::get().to(list_calls))
        .route("/api/calls/{id}", web::get().to(get_call))
        .route("/api/calls/{id}/end", web::post().to(end_call))
        .route("/api/users/{identity}/calls", web::get().to(call_log))
        .route("/api/webhooks", web::get().to(webhook_status))
        .route("/api/webhooks/test", web::post().to(webhook_test));
}

fn call_id(path: &str) -> Result<CallId, ApiError> {
    CallId::parse(path).map_err(|e| ApiError::bad_request(format!("not a call ID: {e}")))
}

fn no_call(id: &CallId) -> ApiError {
    ApiError::not_found(format!("no call '{id}' in progress"))
}

async fn list_calls(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    admin(&req, &state)?;
    Ok(HttpResponse::Ok().json(json!({ "calls": state.calls.summaries() })))
}

/// The admin's call: its ID from the path and its handle, while it is in progress.
fn admin_call(
    req: &HttpRequest,
    path: &str,
    state: &AppState,
) -> Result<(CallId, CallHandle), ApiError> {
    admin(req, state)?;
    let id = call_id(path)?;
    let handle = state.calls.handle(&id).ok_or_else(|| no_call(&id))?;
    Ok((id, handle))
}

async fn get_call(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let (id, handle) = admin_call(&req, &path, &state)?;
    let call = handle
        .inspect
        .send(InspectCall)
        .await
        .map_err(|_| no_call(&id))?;
    Ok(HttpResponse::Ok().json(json!({ "call": call })))
}

/// Ends the call for everyone with reason `terminated`; members are told as for any other end
/// and their log rows close with it.
async fn end_call(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let (id, handle) = admin_call(&req, &path, &state)?;
    let reason = EndReason::Terminated;
    handle
        .terminate
        .send(Terminate { reason })
        .await
        .map_err(|_| no_call(&id))?;
    Ok(HttpResponse::Ok().json(json!({ "ended": id, "reason": reason })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    start_time: Option<i64>,
    count: Option<usize>,
    order: Option<String>,
    after: Option<String>,
}

/// One page of a user's call log, as the user's own `call_logs` request gives it (§11.11).
async fn call_log(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    admin(&req, &state)?;
    let user = Identity::parse(&path)?;
    let params = web::Query::<LogParams>::from_query(req.query_string())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "bad query string ({e}); it takes start_time, count, order (asc|desc), after"
            ))
        })?
        .into_inner();
    let count = params.count.unwrap_or(20);
    if count == 0 || count > MAX_PAGE {
        return Err(
            ApiError::bad_request(format!("count must be between 1 and {MAX_PAGE}")).into(),
        );
    }
    let order = match params.order.as_deref() {
        None => Order::Desc,
        Some(o) => o
            .parse()
            .map_err(|_| ApiError::bad_request("order is asc or desc"))?,
    };
    let start_ms = params.start_time.unwrap_or(NEWEST);
    if start_ms < NEWEST {
        return Err(
            ApiError::bad_request("start_time is unix milliseconds, or -1 for the newest").into(),
        );
    }
    let after = params.after.as_deref().map(call_id).transpose()?;
    let page = PageRequest {
        from: Cursor { start_ms, after },
        count,
        order,
    };
    let unavailable = || ApiError::new(ErrorCode::Internal, "the call log is unavailable; retry");
    let answer = state
        .calls
        .logs
        .query
        .send(LogQuery::Page { user, page })
        .await
        .map_err(|_| unavailable())?
        .map_err(ApiError::from)?;
    let LogAnswer::Page(page) = answer else {
        return Err(unavailable().into());
    };
    Ok(HttpResponse::Ok().json(json!({
        "logs": page.logs,
        "has_more": page.has_more,
        "sync_time": page.sync_time_ms,
        "next": page.next,
    })))
}

/// The receiver's host and port (never the whole URL: it may carry a token in its query).
fn receiver(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    Some(match parsed.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    })
}

fn not_configured() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no webhooks are sent: calls.webhook_url is not set",
    )
}

async fn webhook_status(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    admin(&req, &state)?;
    let url = &state.config.calls.webhook_url;
    let Some(sink) = state.calls.webhooks() else {
        return Ok(HttpResponse::Ok().json(json!({ "configured": false })));
    };
    let stats = sink
        .stats
        .send(WebhookStatsQuery)
        .await
        .map_err(|_| ApiError::internal("the webhook sender is not running"))?;
    Ok(HttpResponse::Ok().json(json!({
        "configured": true,
        "receiver": receiver(url),
        "stats": stats,
    })))
}

/// POSTs one signed `webhook_test` event now and answers with what the receiver said.
async fn webhook_test(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    admin(&req, &state)?;
    let sink = state.calls.webhooks().ok_or_else(not_configured)?;
    let outcome = sink
        .test
        .send(WebhookTest)
        .await
        .map_err(|_| ApiError::internal("the webhook sender is not running"))?;
    Ok(HttpResponse::Ok().json(json!({
        "receiver": receiver(&state.config.calls.webhook_url),
        "outcome": outcome,
    })))
}

#[cfg(test)]
mod tests {
    use super::receiver;

    #[test]
    fn the_receiver_is_shown_without_path_or_query() {
        assert_eq!(
            receiver("https://hooks.example.com/amphi?key=secret").as_deref(),
            Some("https://hooks.example.com:443")
        );
        assert_eq!(
            receiver("http://127.0.0.1:9000/hook").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(receiver("not a url"), None);
    }
}
