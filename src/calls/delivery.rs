//! The HTTP side of signed webhooks: `WebhookActor` owns a [`WebhookQueue`] and POSTs what it
//! hands out, signing every attempt afresh, and reports each outcome back so the queue keeps
//! per-call order and backs off on failure. One timer follows the queue's next deadline.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use reqwest::header::CONTENT_TYPE;

use super::webhook::{self, Delivery, DeliveryId, Failure, WebhookQueue};
pub use crate::messages::{
    WebhookFinish, WebhookPush, WebhookStats, WebhookStatsQuery, WebhookTest, WebhookTestOutcome,
};

#[cfg(test)]
mod tests;

/// Header carrying the attempt number, 1 for the first: a receiver can tell a retry from a
/// duplicate it already handled.
pub const ATTEMPT_HEADER: &str = "Amphi-Delivery-Attempt";

/// Attempts by outcome, label `result`: `delivered` or `failed`.
pub const DELIVERIES: &str = "amphi_webhook_deliveries_total";
/// Events refused because the queue was full.
pub const DROPPED: &str = "amphi_webhook_dropped_total";
/// Events abandoned after their last attempt failed.
pub const GIVEN_UP: &str = "amphi_webhook_given_up_total";
/// Events held, waiting or in flight.
pub const QUEUE: &str = "amphi_webhook_queue";

/// How much of a response is read and thrown away: enough for any acknowledgement, so the
/// connection goes back to the pool; a larger answer costs the connection instead.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Registers descriptions with the installed recorder; harmless to call more than once.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(DELIVERIES, "Webhook delivery attempts, by result");
    describe_counter!(DROPPED, "Webhook events refused because the queue was full");
    describe_counter!(
        GIVEN_UP,
        "Webhook events abandoned after their last attempt"
    );
    describe_gauge!(QUEUE, "Webhook events waiting or in flight");
}

/// Every webhook series at zero, so a server without webhooks (or before its first event)
/// shows flat lines rather than "No data".
pub fn register_series() {
    describe_metrics();
    for result in ["delivered", "failed"] {
        metrics::counter!(DELIVERIES, "result" => result).increment(0);
    }
    metrics::counter!(DROPPED).increment(0);
    metrics::counter!(GIVEN_UP).increment(0);
    metrics::gauge!(QUEUE).increment(0.0);
}

pub struct WebhookActor {
    url: Arc<str>,
    secret: Vec<u8>,
    client: reqwest::Client,
    queue: WebhookQueue,
    timer: Option<SpawnHandle>,
    delivered: u64,
    failed_attempts: u64,
    last_error: Option<(String, i64)>,
    last_delivered_ms: Option<i64>,
}

impl WebhookActor {
    /// The sender the configuration asks for, started; `None` when no URL is set.
    pub fn start_configured(config: &crate::config::CallsConfig) -> Option<Addr<Self>> {
        if config.webhook_url.is_empty() {
            return None;
        }
        let queue = webhook::WebhookConfig {
            capacity: config.webhook_queue,
            max_attempts: config.webhook_attempts,
            ..webhook::WebhookConfig::default()
        };
        Some(
            Self::new(
                config.webhook_url.clone(),
                config.webhook_secret.clone().into_bytes(),
                queue,
                config.webhook_timeout,
            )
            .start(),
        )
    }

    /// `url`: http:// or https:// endpoint receiving POSTs (TLS via the system's OpenSSL and
    /// trust store). `secret`: HMAC key. `timeout`: per attempt.
    pub fn new(
        url: String,
        secret: Vec<u8>,
        config: webhook::WebhookConfig,
        timeout: Duration,
    ) -> Self {
        // Straight to the backend: a proxy picked up from the environment would see every
        // event body.
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .expect("the system's TLS library initialises");
        let web = reqwest::Url::parse(&url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !web {
            // Not logged: a URL can carry a token in its query.
            tracing::warn!("the webhook URL is not an http(s) URL; every delivery will fail");
        }
        Self {
            url: url.into(),
            secret,
            client,
            queue: WebhookQueue::new(config, rand::random()),
            timer: None,
            delivered: 0,
            failed_attempts: 0,
            last_error: None,
            last_delivered_ms: None,
        }
    }

    fn stats(&self) -> WebhookStats {
        WebhookStats {
            queued: self.queue.len(),
            delivered: self.delivered,
            failed_attempts: self.failed_attempts,
            dropped: self.queue.dropped(),
            given_up: self.queue.given_up(),
            last_error: self.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_ms: self.last_error.as_ref().map(|(_, at)| *at),
            last_delivered_ms: self.last_delivered_ms,
        }
    }

    /// Sends everything due, then waits for whatever comes next.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let now = crate::clock::now();
        while let Some(delivery) = self.queue.next_due(now) {
            self.send(delivery, ctx);
        }
        metrics::gauge!(QUEUE).set(self.queue.len() as f64);
        self.reschedule(ctx);
    }

    fn send(&mut self, delivery: Delivery, ctx: &mut Context<Self>) {
        let Delivery {
            id,
            subject,
            seq,
            body,
            attempt,
        } = delivery;
        let attempt_fut = self.post(body.to_string(), attempt);
        ctx.spawn(attempt_fut.into_actor(self).map(move |outcome, act, ctx| {
            act.report(id, &subject, seq, attempt, failure_of(outcome).1, ctx);
        }));
    }

    /// One signed POST of `body`; resolves to the receiver's status once its answer is read.
    fn post(
        &self,
        body: String,
        attempt: u32,
    ) -> impl std::future::Future<Output = Result<reqwest::StatusCode, reqwest::Error>> + 'static
    {
        // Signed at send time, not queue time: a retry after a long backoff must still fall
        // inside the receiver's replay tolerance.
        let ts = unix_seconds();
        let signature = webhook::sign(&self.secret, ts, &body);
        let request = self
            .client
            .post(&*self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(webhook::SIGNATURE_HEADER, signature)
            .header(webhook::TIMESTAMP_HEADER, ts)
            .header(ATTEMPT_HEADER, attempt)
            .body(body);
        async move {
            let mut response = request.send().await?;
            let status = response.status();
            let mut read = 0;
            while read < DRAIN_LIMIT {
                match response.chunk().await {
                    Ok(Some(chunk)) => read += chunk.len(),
                    // The status is the receiver's answer; a body cut short does not undo it.
                    Ok(None) | Err(_) => break,
                }
            }
            Ok(status)
        }
    }

    fn report(
        &mut self,
        id: DeliveryId,
        subject: &webhook::Subject,
        seq: u64,
        attempt: u32,
        error: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        match error {
            None => {
                if self.queue.delivered(id) {
                    self.delivered += 1;
                    self.last_delivered_ms = Some(crate::clock::now_unix_ms() as i64);
                    metrics::counter!(DELIVERIES, "result" => "delivered").increment(1);
                }
            }
            Some(error) => {
                let failure = self.queue.failed(id, crate::clock::now());
                if failure != Failure::Unknown {
                    self.failed_attempts += 1;
                    self.last_error = Some((error.clone(), crate::clock::now_unix_ms() as i64));
                    metrics::counter!(DELIVERIES, "result" => "failed").increment(1);
                }
                match failure {
                    Failure::Retry { at } => tracing::debug!(
                        %subject, seq, attempt, %error,
                        retry_in = ?at.saturating_duration_since(crate::clock::now()),
                        "webhook attempt failed"
                    ),
                    Failure::GaveUp => {
                        metrics::counter!(GIVEN_UP).increment(1);
                        tracing::warn!(
                            %subject, seq, attempt, %error,
                            "webhook given up after its last attempt"
                        );
                    }
                    Failure::Unknown => {}
                }
            }
        }
        self.pump(ctx);
    }

    /// One timer at the queue's next deadline. The queue reports `None` while the in-flight
    /// limit is reached, so a report, not the timer, restarts sending then.
    fn reschedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let Some(at) = self.queue.next_deadline() else {
            return;
        };
        let delay = at.saturating_duration_since(crate::clock::now());
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.pump(ctx);
        }));
    }
}

/// The receiver's status, if it answered, and why the attempt failed (`None`: it took it).
fn failure_of(
    outcome: Result<reqwest::StatusCode, reqwest::Error>,
) -> (Option<u16>, Option<String>) {
    match outcome {
        Ok(status) if status.is_success() => (Some(status.as_u16()), None),
        Ok(status) => (Some(status.as_u16()), Some(format!("status {status}"))),
        Err(e) => (None, Some(error_chain(&e.without_url()))),
    }
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The cause (refused, reset, timed out) sits in the sources; the top level only says the
/// request failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Actor for WebhookActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        describe_metrics();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // What was still queued is gone with the actor.
        metrics::gauge!(QUEUE).set(0.0);
        if !self.queue.is_empty() {
            tracing::warn!(
                events = self.queue.len(),
                "webhook actor stopped with events undelivered"
            );
        }
    }
}

impl Handler<WebhookPush> for WebhookActor {
    type Result = ();

    fn handle(&mut self, msg: WebhookPush, ctx: &mut Context<Self>) {
        if let Err(dropped) = self
            .queue
            .push(&msg.subject, msg.event, crate::clock::now())
        {
            metrics::counter!(DROPPED).increment(1);
            tracing::warn!(subject = %msg.subject, seq = dropped.seq, "{dropped}");
        }
        self.pump(ctx);
    }
}

impl Handler<WebhookFinish> for WebhookActor {
    type Result = ();

    fn handle(&mut self, msg: WebhookFinish, _ctx: &mut Context<Self>) {
        self.queue.finish(&msg.subject);
    }
}

impl Handler<WebhookStatsQuery> for WebhookActor {
    type Result = MessageResult<WebhookStatsQuery>;

    fn handle(&mut self, _msg: WebhookStatsQuery, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats())
    }
}

impl Handler<WebhookTest> for WebhookActor {
    type Result = ResponseFuture<WebhookTestOutcome>;

    fn handle(&mut self, _msg: WebhookTest, _ctx: &mut Context<Self>) -> Self::Result {
        // Shaped as every event is, with no subject and `seq` 0: a receiver that checks
        // signatures and answers 2xx without acting on unknown types passes the check.
        let body = serde_json::json!({
            "type": "webhook_test",
            "seq": 0,
            "timestamp_ms": crate::clock::now_unix_ms(),
            "data": {},
        });
        let post = self.post(body.to_string(), 1);
        Box::pin(async move {
            let started = std::time::Instant::now();
            let (status, error) = failure_of(post.await);
            WebhookTestOutcome {
                ok: error.is_none(),
                status,
                error,
                elapsed_ms: started.elapsed().as_millis() as u64,
            }
        })
    }
}
