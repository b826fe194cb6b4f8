//! Whole runs against the stand-in server, each failure counted by its kind; and the call
//! steps one by one on a pair's connections.

use std::time::{Duration, Instant};

use amphi_client::Signal;
use tokio::net::TcpListener;

use super::mock::{mock, Behaviour};
use super::ms;
use crate::calls::party::{call_request, Link, Party};
use crate::calls::{
    answer, close_and_leave, hang_up, ring, run_with, CallState, FailureKind, Timeouts,
};
use crate::report::{CallsReport, Report};
use crate::scenario::{Kind, Scenario, DEV_SIGNING_KEY};

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
    // The closes follow the report: wait for the mock to see them (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.count("close ") < 4 && Instant::now() < deadline {
        tokio::task::yield_now().await;
        tokio::time::sleep(ms(5)).await;
    }
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
        .request(call_request("dave"), ms(400))
        .await
        .unwrap_err();
    assert_eq!(
        (f.kind, f.code.as_deref()),
        (FailureKind::ErrorReply, Some("forbidden"))
    );
}
