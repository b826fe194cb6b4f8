//! Call statistics, event matching, and the call flow against a stand-in signalling server
//! that speaks the call protocol but has no media plane (its `media_offer` is refused), so
//! everything up to the media and the hang-up can be checked without the real server.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use super::stats::MAX_ERRORS;
use crate::report::{CallsReport, FailureCounts};
use crate::tokens::token_with_grants;
use amphi_client::Signal;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::report::Report;
use crate::scenario::{Kind, DEV_SIGNING_KEY};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn failure(kind: FailureKind, code: Option<&str>) -> Failure {
    Failure {
        kind,
        code: code.map(str::to_string),
        message: format!("{kind:?}"),
    }
}

#[test]
fn stats_count_outcomes_kinds_and_codes() {
    let mut s = CallStats::default();
    for i in 1..=100u64 {
        let t = Timings {
            ring: Some(ms(i)),
            answer: Some(ms(2 * i)),
            setup: Some(ms(10 * i)),
            hangup: Some(ms(3)),
        };
        s.record(&t, Ok(()));
    }
    // Failures still count the steps they passed.
    let rang = Timings {
        ring: Some(ms(5)),
        ..Timings::default()
    };
    s.record(&rang, Err(&failure(FailureKind::Timeout, None)));
    s.record(
        &rang,
        Err(&failure(FailureKind::ErrorReply, Some("unsupported"))),
    );
    s.record(
        &Timings::default(),
        Err(&failure(FailureKind::ErrorReply, Some("unsupported"))),
    );
    s.record(
        &Timings::default(),
        Err(&failure(FailureKind::ErrorReply, Some("forbidden"))),
    );
    s.record(&rang, Err(&failure(FailureKind::NoAudio, None)));
    s.record(&rang, Err(&failure(FailureKind::Busy, Some("busy"))));
    s.interrupted(&rang);

    let r = s.report(8, 10.0, Vec::new());
    assert_eq!(r.pairs, 8);
    assert_eq!(r.calls_ok, 100);
    assert_eq!(r.calls_failed, 6);
    assert_eq!(r.calls_interrupted, 1);
    assert_eq!(r.calls_started, 107);
    assert!((r.calls_per_s - 10.0).abs() < 1e-9);
    assert_eq!(
        r.failures,
        FailureCounts {
            timeout: 1,
            error_reply: 3,
            busy: 1,
            no_audio: 1,
            ..FailureCounts::default()
        }
    );
    assert_eq!(r.failures.total(), r.calls_failed);
    assert_eq!(
        r.error_codes.into_iter().collect::<Vec<_>>(),
        [
            ("busy".to_string(), 1),
            ("forbidden".to_string(), 1),
            ("unsupported".to_string(), 2)
        ]
    );
    assert_eq!(r.ring.count, 100 + 5);
    assert_eq!(
        (r.answer.count, r.setup.count, r.hangup.count),
        (100, 100, 100)
    );
    // 1..=100 ms: the percentiles land on those values (3 significant digits).
    let near = |v: f64, want: f64| (v - want).abs() <= want * 0.01;
    assert!(near(r.answer.p50_ms, 100.0), "{:?}", r.answer);
    assert!(near(r.answer.p90_ms, 180.0), "{:?}", r.answer);
    assert!(near(r.answer.p99_ms, 198.0), "{:?}", r.answer);
    assert!(near(r.setup.max_ms, 1000.0), "{:?}", r.setup);
    assert_eq!(s.errors().len(), 6);
}

#[test]
fn seconds_take_what_happened_since_the_last_one() {
    let mut s = CallStats::default();
    let t = Timings {
        setup: Some(ms(40)),
        ..Timings::default()
    };
    s.record(&t, Ok(()));
    s.record(&t, Ok(()));
    s.record(
        &Timings::default(),
        Err(&failure(FailureKind::Timeout, None)),
    );
    let first = s.take_second(1.0);
    assert_eq!((first.ok, first.failed, first.setup.count), (2, 1, 2));
    let second = s.take_second(2.0);
    assert_eq!((second.ok, second.failed, second.setup.count), (0, 0, 0));
    s.record(&t, Ok(()));
    assert_eq!(s.take_second(3.0).ok, 1);
    // Totals are not reset by the timeline.
    assert_eq!(s.report(1, 3.0, Vec::new()).calls_ok, 3);
}

#[test]
fn errors_are_kept_up_to_a_limit_and_counted_beyond() {
    let mut s = CallStats::default();
    for i in 0..MAX_ERRORS + 7 {
        s.error(format!("e{i}"));
    }
    let e = s.errors();
    assert_eq!(e.len(), MAX_ERRORS + 1);
    assert_eq!(e.last().unwrap(), "… and 7 more");
}

#[test]
fn out_of_range_durations_are_clamped_not_lost() {
    let mut s = CallStats::default();
    let t = Timings {
        ring: Some(Duration::ZERO),
        setup: Some(Duration::from_secs(3600)),
        ..Timings::default()
    };
    s.record(&t, Ok(()));
    let r = s.report(1, 1.0, Vec::new());
    assert_eq!((r.ring.count, r.setup.count), (1, 1));
    assert!(r.setup.max_ms >= 59_000.0);
}

#[test]
fn waits_match_their_call_and_fail_when_it_ends() {
    let incoming = json!({"type": "event", "event": "call_incoming", "call_id": "c-1",
                          "caller": "alice", "seq": 1});
    let want = Want::Incoming { caller: "alice" };
    assert!(want.matches(&incoming));
    assert!(!Want::Incoming { caller: "bob" }.matches(&incoming));
    let connected = Want::Event {
        event: "call_connected",
        call_id: "c-1",
    };
    let ev = |event: &str, id: &str| json!({"type": "event", "event": event, "call_id": id});
    assert!(connected.matches(&ev("call_connected", "c-1")));
    assert!(!connected.matches(&ev("call_connected", "c-2")));
    // A reply is never an event, whatever it carries.
    assert!(!connected.matches(&json!({"type": "ok", "event": "call_connected", "call_id": "c-1"})));
    assert!(connected.forecloses(&ev("call_ended", "c-1")));
    assert!(!connected.forecloses(&ev("call_ended", "c-2")));
    let ended = Want::Event {
        event: "call_ended",
        call_id: "c-1",
    };
    assert!(ended.matches(&ev("call_ended", "c-1")));
    assert!(!ended.forecloses(&ev("call_ended", "c-1")));
}

#[test]
fn call_tokens_carry_the_call_grant_and_the_host_role() {
    let token = token_with_grants(DEV_SIGNING_KEY, "swarm-1-0-caller", "host", &["call"]);
    let c = claims(&token).expect("valid token");
    assert_eq!(c["sub"], "swarm-1-0-caller");
    assert_eq!(c["roles"], json!(["host"]));
    assert_eq!(c["grants"], json!(["call"]));
    let plain = token_with_grants(DEV_SIGNING_KEY, "listener-0", "audience", &[]);
    assert!(claims(&plain).unwrap().get("grants").is_none());
}

#[test]
fn run_ids_make_identities_unique_and_valid() {
    let id = run_id();
    assert!(id.len() <= 32 && id.starts_with("swarm-"), "{id}");
    let identity = format!("{id}-7-caller");
    assert!(identity
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.:@+".contains(c)));
}

#[test]
fn the_calls_table_and_json_have_every_row_and_field() {
    let mut s = CallStats::default();
    let t = Timings {
        ring: Some(ms(3)),
        answer: Some(ms(4)),
        setup: Some(ms(60)),
        hangup: Some(ms(2)),
    };
    s.record(&t, Ok(()));
    s.record(
        &Timings::default(),
        Err(&failure(FailureKind::ErrorReply, Some("unsupported"))),
    );
    let timeline = vec![s.take_second(1.0)];
    let report = Report {
        elapsed_s: 1.0,
        calls: Some(s.report(2, 1.0, timeline)),
        ..Report::default()
    };
    let table = report.table();
    for row in [
        "calls: 2 started, 1 ok, 1 failed",
        "ring",
        "answer",
        "setup",
        "hangup",
        "p90 ms",
        "error reply 1 (unsupported 1)",
    ] {
        assert!(table.contains(row), "{row:?} missing from\n{table}");
    }
    let v = serde_json::to_value(&report).unwrap();
    let c = &v["calls"];
    for key in [
        "pairs",
        "calls_started",
        "calls_ok",
        "calls_failed",
        "calls_interrupted",
        "calls_per_s",
        "ring",
        "answer",
        "setup",
        "hangup",
        "failures",
        "error_codes",
        "server_cpu_ms_per_call",
        "timeline",
    ] {
        assert!(c.get(key).is_some(), "calls.{key} missing: {c}");
    }
    for key in ["count", "p50_ms", "p90_ms", "p99_ms", "max_ms"] {
        assert!(c["setup"].get(key).is_some(), "setup.{key} missing");
    }
    assert_eq!(c["failures"]["error_reply"], 1);
    assert_eq!(c["failures"]["no_audio"], 0);
    assert_eq!(c["error_codes"]["unsupported"], 1);
    // Reports of the other kinds keep their shape.
    let plain = serde_json::to_value(Report::default()).unwrap();
    assert!(plain.get("calls").is_none());

    let dir = std::env::temp_dir().join(format!("amphi-swarm-calls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("calls.svg");
    report.plot(&svg).unwrap();
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn claims(token: &str) -> Option<Value> {
    let key = jsonwebtoken::DecodingKey::from_secret(DEV_SIGNING_KEY.as_bytes());
    let v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .ok()
        .map(|d| d.claims)
}

// ---------------------------------------------------------------------------------------
// A stand-in server: the call requests and events of the protocol, channels that can be
// joined and left, and no media.

#[derive(Clone, Copy, Default)]
struct Behaviour {
    /// Refuse `call` with this error code (today's server says `unsupported`).
    refuse_call: Option<&'static str>,
    /// Report the callee busy in the call reply.
    busy: bool,
    /// Never send `call_incoming`.
    silent: bool,
    /// End the call with `timeout` instead of connecting it on `accept`.
    end_on_accept: bool,
}

#[derive(Default)]
struct MockState {
    behaviour: Behaviour,
    users: Mutex<HashMap<String, mpsc::UnboundedSender<String>>>,
    calls: Mutex<HashMap<String, (String, String)>>,
    log: Mutex<Vec<String>>,
    next: AtomicU64,
}

impl MockState {
    fn send(&self, to: &str, v: Value) {
        if let Some(tx) = self.users.lock().unwrap().get(to) {
            let _ = tx.send(v.to_string());
        }
    }

    fn log(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn count(&self, prefix: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.starts_with(prefix)).count()
    }
}

async fn mock(behaviour: Behaviour) -> (String, Arc<MockState>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(MockState {
        behaviour,
        ..MockState::default()
    });
    let st = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(st.clone(), stream));
        }
    });
    (url, state)
}

// The handshake callback's error type is tungstenite's, large or not.
#[allow(clippy::result_large_err)]
async fn connection(state: Arc<MockState>, stream: tokio::net::TcpStream) {
    let mut query = String::new();
    let callback = |req: &Request, resp: Response| {
        query = req.uri().query().unwrap_or_default().to_string();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let token = query.strip_prefix("token=").unwrap_or_default();
    let Some(claims) = claims(token) else {
        return;
    };
    let me = claims["sub"].as_str().unwrap_or_default().to_string();
    let may_call = claims["grants"]
        .as_array()
        .is_some_and(|g| g.iter().any(|x| x == "call"));
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    let _ = tx.send(
        json!({"type": "welcome", "protocol": 1, "session": "s-0", "identity": me}).to_string(),
    );
    state.users.lock().unwrap().insert(me.clone(), tx.clone());
    state.log(format!("connect {me}"));
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(req) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let id = req["id"].clone();
        let ok = |extra: Value| {
            let mut v = json!({"id": id, "type": "ok"});
            if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                v.extend(extra.clone());
            }
            v
        };
        let error =
            |code: &str| json!({"id": id, "type": "error", "code": code, "message": "mock"});
        let kind = req["type"].as_str().unwrap_or_default().to_string();
        state.log(format!("{kind} {me}"));
        let b = state.behaviour;
        let reply = match kind.as_str() {
            "call" | "accept" | "hangup" if !may_call => error("forbidden"),
            "call" => match b.refuse_call {
                Some(code) => error(code),
                None => {
                    let callee = req["callees"][0].as_str().unwrap_or_default().to_string();
                    let n = state.next.fetch_add(1, Ordering::Relaxed) + 1;
                    let call_id = format!("c-{n:016x}");
                    state
                        .calls
                        .lock()
                        .unwrap()
                        .insert(call_id.clone(), (me.clone(), callee.clone()));
                    let busy = if b.busy { vec![callee.clone()] } else { vec![] };
                    let _ = tx.send(
                        ok(json!({"call_id": call_id, "busy": busy,
                                  "channel": format!("call:{call_id}")}))
                        .to_string(),
                    );
                    if !b.busy {
                        state.send(
                            &me,
                            json!({"type": "event", "event": "call_ringing",
                                   "call_id": call_id, "callees": [callee]}),
                        );
                        if !b.silent {
                            state.send(
                                &callee,
                                json!({"type": "event", "event": "call_incoming",
                                       "call_id": call_id, "seq": 1, "caller": me,
                                       "invited_by": me, "members": [me, callee],
                                       "call_type": "one_to_one", "media": "audio",
                                       "extra": null}),
                            );
                        }
                    }
                    continue;
                }
            },
            "accept" => {
                let call_id = req["call_id"].as_str().unwrap_or_default().to_string();
                let Some((caller, callee)) = state.calls.lock().unwrap().get(&call_id).cloned()
                else {
                    let _ = tx.send(error("not_found").to_string());
                    continue;
                };
                let _ = tx.send(ok(json!({})).to_string());
                // Another call's end first: a wait must not mistake it for this one's.
                state.send(
                    &caller,
                    json!({"type": "event", "event": "call_ended",
                           "call_id": "c-0000000000000000", "reason": "timeout"}),
                );
                for user in [&caller, &callee] {
                    let event = if b.end_on_accept {
                        json!({"type": "event", "event": "call_ended", "call_id": call_id,
                               "reason": "timeout"})
                    } else {
                        json!({"type": "event", "event": "call_connected", "call_id": call_id,
                               "seq": 2, "start_time": 0, "media": "audio",
                               "channel": format!("call:{call_id}")})
                    };
                    state.send(user, event);
                }
                continue;
            }
            "hangup" => {
                let call_id = req["call_id"].as_str().unwrap_or_default().to_string();
                match state.calls.lock().unwrap().remove(&call_id) {
                    None => error("not_found"),
                    Some((caller, callee)) => {
                        let _ = tx.send(ok(json!({})).to_string());
                        for user in [&caller, &callee] {
                            state.send(
                                user,
                                json!({"type": "event", "event": "call_ended",
                                       "call_id": call_id, "seq": 3, "reason": "hangup"}),
                            );
                        }
                        continue;
                    }
                }
            }
            "join" => ok(json!({"channel": req["channel"], "participant": "p-1",
                                "role": req["role"], "seq": 1})),
            // The call's channel may already be gone when a member leaves it.
            "leave" => error("not_found"),
            // No media plane here.
            "media_offer" => error("unsupported"),
            _ => error("unknown_type"),
        };
        let _ = tx.send(reply.to_string());
    }
    state.log(format!("close {me}"));
}

fn scenario(url: &str, calls: usize, pairs: usize) -> Scenario {
    Scenario {
        kind: Kind::Calls,
        url: url.to_string(),
        calls,
        concurrency: pairs,
        duration: Duration::from_secs(30),
        ..Scenario::default()
    }
}

fn quick() -> Timeouts {
    Timeouts {
        step: ms(400),
        first_audio: ms(400),
        cleanup: ms(400),
        retry_pause: ms(10),
    }
}

async fn run_against(s: Scenario, to: Timeouts) -> (Report, CallsReport) {
    let report = run_with(s, false, std::future::pending(), to)
        .await
        .unwrap();
    let calls = report.calls.clone().expect("a calls report");
    (report, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_ring_and_answer_then_fail_at_the_media_and_start_afresh() {
    let (url, mock) = mock(Behaviour::default()).await;
    let (report, c) = run_against(scenario(&url, 3, 1), quick()).await;
    assert!(!report.interrupted);
    assert_eq!((c.calls_started, c.calls_ok, c.calls_failed), (3, 0, 3));
    assert_eq!(c.failures.error_reply, 3, "{:?}", report.errors);
    assert_eq!(c.error_codes["unsupported"], 3);
    assert_eq!((c.ring.count, c.answer.count, c.setup.count), (3, 3, 0));
    assert!(c.ring.max_ms < 400.0 && c.answer.max_ms < 400.0);
    assert!(report.errors[0].contains("media"), "{:?}", report.errors);
    // Both sides joined the call's channel before offering media.
    assert_eq!(mock.count("join "), 6);
    // Each failed call is hung up, and the pair reconnects for the next one.
    assert_eq!(mock.count("hangup "), 3);
    assert_eq!(mock.count("connect "), 6);
    assert_eq!(c.timeline.iter().map(|s| s.failed).sum::<u64>(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_is_an_error_reply_with_its_code() {
    let (url, mock) = mock(Behaviour {
        refuse_call: Some("unsupported"),
        ..Behaviour::default()
    })
    .await;
    let (_, c) = run_against(scenario(&url, 4, 2), quick()).await;
    assert_eq!((c.calls_failed, c.failures.error_reply), (4, 4));
    assert_eq!(c.error_codes["unsupported"], 4);
    assert_eq!(c.ring.count, 0);
    // No call ID, nothing to hang up.
    assert_eq!(mock.count("hangup "), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_callee_is_counted_busy_and_the_call_hung_up() {
    let (url, mock) = mock(Behaviour {
        busy: true,
        ..Behaviour::default()
    })
    .await;
    let (_, c) = run_against(scenario(&url, 2, 1), quick()).await;
    assert_eq!((c.calls_failed, c.failures.busy), (2, 2));
    assert_eq!(mock.count("hangup "), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_that_never_rings_is_a_timeout() {
    let (url, _mock) = mock(Behaviour {
        silent: true,
        ..Behaviour::default()
    })
    .await;
    let started = Instant::now();
    let (report, c) = run_against(scenario(&url, 2, 2), quick()).await;
    assert_eq!((c.calls_failed, c.failures.timeout), (2, 2));
    assert!(report.errors.iter().all(|e| e.contains("no call_incoming")));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_ending_before_it_connects_fails_at_once() {
    let (url, _mock) = mock(Behaviour {
        end_on_accept: true,
        ..Behaviour::default()
    })
    .await;
    let to = Timeouts {
        step: Duration::from_secs(20),
        ..quick()
    };
    let started = Instant::now();
    let (report, c) = run_against(scenario(&url, 1, 1), to).await;
    assert_eq!((c.calls_failed, c.failures.protocol), (1, 1));
    assert!(
        report.errors[0].contains("ended (timeout)"),
        "{:?}",
        report.errors
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not at the timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_is_a_connection_failure_per_call() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let (_, c) = run_against(scenario(&url, 3, 1), quick()).await;
    assert_eq!((c.calls_failed, c.failures.connection), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duration_cuts_a_call_short_without_failing_it() {
    let (url, mock) = mock(Behaviour {
        silent: true,
        ..Behaviour::default()
    })
    .await;
    let s = Scenario {
        duration: ms(300),
        ..scenario(&url, 10, 2)
    };
    let to = Timeouts {
        step: Duration::from_secs(30),
        ..quick()
    };
    let started = Instant::now();
    let (report, c) = run_against(s, to).await;
    assert!(!report.interrupted);
    assert_eq!((c.calls_interrupted, c.calls_failed), (2, 0));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The abandoned calls are hung up and the connections closed.
    assert_eq!(mock.count("hangup "), 2);
    tokio::time::sleep(ms(200)).await;
    assert_eq!(mock.count("close "), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_gives_a_partial_report() {
    let (url, _mock) = mock(Behaviour {
        silent: true,
        ..Behaviour::default()
    })
    .await;
    let to = Timeouts {
        step: Duration::from_secs(30),
        ..quick()
    };
    let stop = tokio::time::sleep(ms(300));
    let report = run_with(scenario(&url, 10, 1), false, stop, to)
        .await
        .unwrap();
    assert!(report.interrupted);
    assert!(report.table().starts_with("INTERRUPTED"));
    assert_eq!(report.calls.unwrap().calls_interrupted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_up_and_leave_after_a_connected_call() {
    let (url, mock) = mock(Behaviour::default()).await;
    let to = quick();
    let mut a = Party::connect(&url, DEV_SIGNING_KEY, "alice", to.step)
        .await
        .unwrap();
    let mut b = Party::connect(&url, DEV_SIGNING_KEY, "bob", to.step)
        .await
        .unwrap();
    let mut st = CallState::default();
    let (id, _) = ring(&mut a, &mut b, &mut st, &to).await.unwrap();
    assert_eq!(st.call_id.as_deref(), Some(id.as_str()));
    let (ca, cb) = answer(&mut a, &mut b, &id, &mut st, &to).await.unwrap();
    assert_eq!((ca.as_str(), cb.as_str()), (&*format!("call:{id}"), &*ca));
    hang_up(&mut a, &mut b, &id, &mut st, &to).await.unwrap();
    assert!(st.call_id.is_none(), "nothing left to hang up");
    close_and_leave(&a, &b, (&ca, &cb), &mut st, &to)
        .await
        .unwrap();
    let t = st.timings;
    assert!(t.ring.is_some() && t.answer.is_some() && t.hangup.is_some());
    assert!(t.setup.is_none());
    assert_eq!(mock.count("leave "), 2);
    // A second call on the same connections sees only its own events.
    let mut st = CallState::default();
    let (second, _) = ring(&mut a, &mut b, &mut st, &to).await.unwrap();
    assert_ne!(second, id);
    answer(&mut a, &mut b, &second, &mut st, &to).await.unwrap();
    hang_up(&mut a, &mut b, &second, &mut st, &to)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_the_call_grant_is_refused_as_an_error_reply() {
    let (url, _mock) = mock(Behaviour::default()).await;
    let signal = Signal::connect(
        &url,
        &crate::tokens::token_with_grants(DEV_SIGNING_KEY, "carol", "host", &[]),
    )
    .await
    .unwrap();
    let link = Link {
        identity: "carol".into(),
        signal,
    };
    let f = link
        .request(super::call_request("dave"), ms(400))
        .await
        .unwrap_err();
    assert_eq!(
        (f.kind, f.code.as_deref()),
        (FailureKind::ErrorReply, Some("forbidden"))
    );
}
