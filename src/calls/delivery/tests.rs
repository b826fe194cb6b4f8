//! The actor against a real HTTP receiver on loopback: signatures, order, retries, bounds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::calls::call::CallId;
use crate::calls::webhook::Subject;
use crate::calls::webhook::{
    verify, VerifyError, WebhookConfig, WebhookEvent, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};

const SECRET: &[u8] = b"whsec_delivery_test";
const TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Request {
    line: String,
    headers: HashMap<String, String>,
    body: String,
    at: Instant,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn call_id(&self) -> String {
        self.json()["call_id"].as_str().unwrap().to_owned()
    }

    fn seq(&self) -> u64 {
        self.json()["seq"].as_u64().unwrap()
    }

    fn attempt(&self) -> u32 {
        self.header(ATTEMPT_HEADER).parse().unwrap()
    }

    fn verify(&self, secret: &[u8]) -> Result<(), VerifyError> {
        let ts: i64 = self.header(TIMESTAMP_HEADER).parse().unwrap();
        verify(
            secret,
            ts,
            &self.body,
            self.header(SIGNATURE_HEADER),
            unix_seconds(),
            TOLERANCE,
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    /// 500 to the first `n` requests, 200 after.
    FailFirst(usize),
    /// Reads the request and never answers.
    Stall,
}

/// A minimal HTTP/1.1 server: records every request and answers as told, keeping
/// connections alive the way the client's pool expects.
struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        actix_rt::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                actix_rt::spawn(serve(stream, answer, Arc::clone(&recorded)));
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, answer: Answer, recorded: Arc<Mutex<Vec<Request>>>) {
    let mut buf = Vec::new();
    loop {
        let head_len = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8(buf[..head_len].to_vec()).unwrap();
        let mut lines = head.lines();
        let line = lines.next().unwrap().to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        while buf.len() < head_len + len {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let body = String::from_utf8(buf[head_len..head_len + len].to_vec()).unwrap();
        buf.drain(..head_len + len);
        let n = {
            let mut requests = recorded.lock().unwrap();
            requests.push(Request {
                line,
                headers,
                body,
                at: Instant::now(),
            });
            requests.len()
        };
        let status = match answer {
            Answer::Stall => std::future::pending::<&str>().await,
            Answer::FailFirst(failures) if n <= failures => "500 Internal Server Error",
            Answer::FailFirst(_) => "200 OK",
        };
        let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn config() -> WebhookConfig {
    WebhookConfig {
        capacity: 100,
        max_attempts: 8,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        max_in_flight: 8,
    }
}

fn call(n: u8) -> CallId {
    CallId::parse(&format!("c-{n:016x}")).unwrap()
}

fn event(n: u64) -> WebhookEvent {
    WebhookEvent::new("test", 1_700_000_000_000 + n as i64, json!({ "n": n }))
}

fn start(url: &str, config: WebhookConfig) -> Addr<WebhookActor> {
    WebhookActor::new(
        url.to_owned(),
        SECRET.to_vec(),
        config,
        Duration::from_secs(2),
    )
    .start()
}

async fn push(actor: &Addr<WebhookActor>, call_id: &CallId, n: u64) {
    actor
        .send(WebhookPush {
            subject: Subject::CallId(call_id.clone()),
            event: event(n),
        })
        .await
        .unwrap();
}

async fn wait_for(
    actor: &Addr<WebhookActor>,
    done: impl Fn(&WebhookStats) -> bool,
) -> WebhookStats {
    let deadline = Instant::now() + Duration::from_millis(2500);
    loop {
        let stats = actor.send(WebhookStatsQuery).await.unwrap();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "timed out at {stats:?}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A URL where nothing listens: the port was free a moment ago.
fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hooks")
}

#[actix_rt::test]
async fn each_calls_events_arrive_in_order_and_signed() {
    let receiver = Receiver::start(Answer::FailFirst(0)).await;
    let actor = start(&receiver.url, config());
    let (a, b) = (call(1), call(2));
    for n in 1..=4 {
        push(&actor, &a, n).await;
        push(&actor, &b, 100 + n).await;
    }
    let stats = wait_for(&actor, |s| s.delivered == 8).await;
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.failed_attempts, 0);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 8);
    for r in &requests {
        assert!(r.line.starts_with("POST /hooks "), "{}", r.line);
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.attempt(), 1);
        assert_eq!(r.verify(SECRET), Ok(()));
        assert_eq!(r.verify(b"whsec_wrong"), Err(VerifyError::Mismatch));
    }
    for (call_id, first) in [(&a, 1), (&b, 101)] {
        let mine: Vec<_> = requests
            .iter()
            .filter(|r| r.call_id() == call_id.to_string())
            .collect();
        let seqs: Vec<_> = mine.iter().map(|r| r.seq()).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        let ns: Vec<_> = mine.iter().map(|r| r.json()["data"]["n"].clone()).collect();
        assert_eq!(ns, (first..first + 4).map(|n| json!(n)).collect::<Vec<_>>());
        assert_eq!(mine[0].json()["type"], "test");
    }
}

#[actix_rt::test]
async fn failed_attempts_are_retried_after_a_backoff_without_reordering() {
    let receiver = Receiver::start(Answer::FailFirst(2)).await;
    let actor = start(&receiver.url, config());
    let a = call(1);
    for n in 1..=3 {
        push(&actor, &a, n).await;
    }
    let stats = wait_for(&actor, |s| s.delivered == 3).await;
    assert_eq!(
        (stats.queued, stats.failed_attempts, stats.given_up),
        (0, 2, 0)
    );

    let requests = receiver.requests();
    let attempts: Vec<_> = requests.iter().map(|r| (r.seq(), r.attempt())).collect();
    assert_eq!(attempts, [(1, 1), (1, 2), (1, 3), (2, 1), (3, 1)]);
    assert!(requests.iter().all(|r| r.verify(SECRET).is_ok()));
    // Backoff doubles from 50 ms, each wait jittered down to no less than half; it runs from
    // the failure report, after the request arrived.
    assert!(requests[1].at - requests[0].at >= Duration::from_millis(25));
    assert!(requests[2].at - requests[1].at >= Duration::from_millis(50));
}

#[actix_rt::test]
async fn a_receiver_that_is_down_is_given_up_on() {
    let actor = start(
        &refusing_url(),
        WebhookConfig {
            max_attempts: 2,
            ..config()
        },
    );
    push(&actor, &call(1), 1).await;
    push(&actor, &call(1), 2).await;
    push(&actor, &call(2), 3).await;
    let stats = wait_for(&actor, |s| s.given_up == 3).await;
    assert_eq!(
        (
            stats.queued,
            stats.delivered,
            stats.failed_attempts,
            stats.dropped
        ),
        (0, 0, 6, 0)
    );

    // Still serving: a later event goes through the same cycle.
    push(&actor, &call(3), 4).await;
    let stats = wait_for(&actor, |s| s.given_up == 4).await;
    assert_eq!((stats.queued, stats.failed_attempts), (0, 8));
}

#[actix_rt::test]
async fn a_full_queue_drops_the_newest_event() {
    let receiver = Receiver::start(Answer::Stall).await;
    let actor = start(
        &receiver.url,
        WebhookConfig {
            capacity: 2,
            ..config()
        },
    );
    for n in 1..=3 {
        push(&actor, &call(n as u8), n).await;
    }
    let stats = actor.send(WebhookStatsQuery).await.unwrap();
    assert_eq!((stats.queued, stats.dropped, stats.delivered), (2, 1, 0));

    // The two held are the first two, both out at the receiver, which never answers.
    let deadline = Instant::now() + Duration::from_secs(1);
    while receiver.requests().len() < 2 {
        assert!(Instant::now() < deadline, "both deliveries should be out");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let mut seen: Vec<_> = receiver.requests().iter().map(Request::call_id).collect();
    seen.sort();
    assert_eq!(seen, [call(1).to_string(), call(2).to_string()]);
}

#[actix_rt::test]
async fn a_finished_call_is_forgotten_once_drained() {
    let receiver = Receiver::start(Answer::FailFirst(0)).await;
    let actor = start(&receiver.url, config());
    let a = call(1);
    push(&actor, &a, 1).await;
    push(&actor, &a, 2).await;
    actor
        .send(WebhookFinish {
            subject: Subject::CallId(a.clone()),
        })
        .await
        .unwrap();
    wait_for(&actor, |s| s.delivered == 2).await;

    // Pushing again starts the call afresh: its state went with `Finish`.
    push(&actor, &a, 3).await;
    wait_for(&actor, |s| s.delivered == 3).await;
    let seqs: Vec<_> = receiver.requests().iter().map(Request::seq).collect();
    assert_eq!(seqs, [1, 2, 1]);
}
