//! Counting calls by outcome, failure kind and code; the per-second timeline; and the calls
//! section of the table, the JSON and the plot.

use std::time::Duration;

use super::ms;
use crate::calls::stats::MAX_ERRORS;
use crate::calls::{CallStats, Failure, FailureKind, Timings};
use crate::report::{FailureCounts, Report};

fn failure(kind: FailureKind, code: Option<&str>) -> Failure {
    Failure {
        kind,
        code: code.map(str::to_string),
        message: format!("{kind:?}"),
        retry_after: None,
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
