//! The 1:1 media change handshake.

use std::time::Duration;

use serde_json::json;

use super::*;

#[test]
fn a_media_change_accepted_switches_both_sides() {
    let mut h = Harness::one_to_one(Media::Audio);
    let tx = h
        .call
        .request_media_change(&id("alice"), Media::Video, h.at(5))
        .unwrap();
    assert_eq!(tx.call_id(), *h.call.id());
    let out = h.pump();
    assert_eq!(
        out,
        vec![(
            names(&["bob"]),
            json!({"event": "media_change_requested", "transaction": tx.as_str(),
                   "media": "video", "by": "alice"})
        )]
    );
    assert_eq!(h.call.next_deadline(), Some(h.at(5) + MEDIA_CHANGE_TIMEOUT));
    h.call.reply_media_change(&id("bob"), &tx, true).unwrap();
    let out = h.pump();
    assert_eq!(
        out,
        vec![(
            names(&["alice", "bob"]),
            json!({"event": "media_change_result", "transaction": tx.as_str(),
                   "result": "accepted", "media": "video"})
        )]
    );
    assert_eq!(h.call.media(), Media::Video);
    assert!(h.call.legs().iter().all(|l| l.media() == Media::Video));
    assert_eq!(h.call.next_deadline(), None);
}

#[test]
fn a_media_change_can_be_rejected_canceled_or_time_out() {
    let mut h = Harness::one_to_one(Media::Video);
    let result = |h: &mut Harness| h.pump().last().unwrap().1.clone();

    let tx = h
        .call
        .request_media_change(&id("bob"), Media::Audio, h.at(2))
        .unwrap();
    h.call.reply_media_change(&id("alice"), &tx, false).unwrap();
    assert_eq!(result(&mut h)["result"], "rejected");
    assert_eq!(h.call.media(), Media::Video);

    let tx = h
        .call
        .request_media_change(&id("bob"), Media::Audio, h.at(3))
        .unwrap();
    let err = h.call.cancel_media_change(&id("alice"), &tx).unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::Forbidden,
        "only the requester cancels"
    );
    let err = h
        .call
        .reply_media_change(&id("bob"), &tx, true)
        .unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::Forbidden,
        "the requester cannot answer itself"
    );
    h.call.cancel_media_change(&id("bob"), &tx).unwrap();
    assert_eq!(result(&mut h)["result"], "canceled");
    let err = h
        .call
        .reply_media_change(&id("alice"), &tx, true)
        .unwrap_err();
    assert_eq!(err, CallError::UnknownTransaction(tx));
    assert_eq!(err.code(), ErrorCode::NotFound);

    let tx = h
        .call
        .request_media_change(&id("alice"), Media::Audio, h.at(4))
        .unwrap();
    h.pump();
    h.call
        .timeout(h.at(4) + MEDIA_CHANGE_TIMEOUT - Duration::from_millis(1));
    assert!(h.pump().is_empty());
    h.call.timeout(h.at(4) + MEDIA_CHANGE_TIMEOUT);
    let r = result(&mut h);
    assert_eq!(
        (r["result"].clone(), r["transaction"].clone()),
        (json!("timeout"), json!(tx.as_str()))
    );
    assert_eq!(h.call.media(), Media::Video);
}

#[test]
fn media_changes_are_refused_outside_a_settled_one_to_one_call() {
    let mut h = Harness::new(&["bob"], Media::Audio);
    let err = h
        .call
        .request_media_change(&id("alice"), Media::Video, h.at(1));
    assert_eq!(
        err.unwrap_err().code(),
        ErrorCode::Conflict,
        "not connected yet"
    );
    h.accept("bob", 1);
    let err = h
        .call
        .request_media_change(&id("alice"), Media::Audio, h.at(2));
    assert_eq!(
        err.unwrap_err().code(),
        ErrorCode::BadRequest,
        "already audio"
    );
    h.call
        .request_media_change(&id("alice"), Media::Video, h.at(2))
        .unwrap();
    let err = h
        .call
        .request_media_change(&id("bob"), Media::Video, h.at(2));
    assert_eq!(
        err.unwrap_err().code(),
        ErrorCode::Conflict,
        "one at a time"
    );

    // Turning into a group call cancels the pending change and ends the handshake's reign.
    h.pump();
    h.call
        .invite(&id("alice"), vec![id("carol")], h.at(3))
        .unwrap();
    let out = h.pump();
    assert_eq!(out[0].1["event"], "media_change_result");
    assert_eq!(out[0].1["result"], "canceled");
    assert_eq!(out[1].1["event"], "call_type_changed");
    let err = h
        .call
        .request_media_change(&id("alice"), Media::Video, h.at(4));
    assert_eq!(err.unwrap_err().code(), ErrorCode::Conflict);
}
