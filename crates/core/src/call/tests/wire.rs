//! Glare, identifiers and wire text.

use serde_json::json;

use super::*;

#[test]
fn glare_picks_the_same_survivor_from_either_side() {
    let a = CallId::parse("c-000000000000000b").unwrap();
    let b = CallId::parse("c-000000000000000a").unwrap();
    let (alice, bob) = (id("alice"), id("bob"));
    assert_eq!(glare_winner(&a, &alice, &b, &bob), Survivor::First);
    assert_eq!(glare_winner(&b, &bob, &a, &alice), Survivor::Second);
    // The same caller twice: the lower call ID survives, whichever is named first.
    assert_eq!(glare_winner(&a, &alice, &b, &alice), Survivor::Second);
    assert_eq!(glare_winner(&b, &alice, &a, &alice), Survivor::First);
    for _ in 0..50 {
        let (x, y) = (CallId::random(), CallId::random());
        let one = glare_winner(&x, &bob, &y, &alice);
        let other = glare_winner(&y, &alice, &x, &bob);
        assert_ne!(one, other, "both sides name the same call");
    }
}

#[test]
fn call_and_transaction_ids_round_trip() {
    let c = CallId::random();
    assert!(c.as_str().starts_with("c-") && c.as_str().len() == 18);
    assert_eq!(CallId::parse(c.as_str()).unwrap(), c);
    for bad in [
        "",
        "c-",
        "c-00000000000000AA",
        "x-00000000000000aa",
        "c-00000000000000aaa",
    ] {
        assert_eq!(
            crate::error::ApiError::from(CallId::parse(bad).unwrap_err()).code,
            ErrorCode::BadRequest,
            "{bad}"
        );
    }
    let tx = TransactionId::new(&c, 7);
    assert_eq!(TransactionId::parse(tx.as_str()).unwrap(), tx);
    assert_eq!(tx.call_id(), c);
    for bad in [
        "",
        "c-00000000000000aa",
        "c-00000000000000aa.",
        "c-00000000000000aa.x",
        "c-1.1",
    ] {
        assert!(TransactionId::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn wire_enums_round_trip_through_their_text() {
    for r in EndReason::ALL {
        assert_eq!(r.as_str().parse::<EndReason>().unwrap(), *r);
        assert_eq!(serde_json::to_value(r).unwrap(), json!(r.as_str()));
    }
    assert_eq!(EndReason::ServerRestart.as_str(), "server_restart");
    assert_eq!(
        serde_json::from_value::<Media>(json!("video")).unwrap(),
        Media::Video
    );
    assert_eq!(
        serde_json::from_value::<RejectReason>(json!("busy")).unwrap(),
        RejectReason::Busy
    );
    assert!("hung_up".parse::<EndReason>().is_err());
    let api: crate::error::ApiError = CallError::MediaNotAllowed.into();
    assert_eq!(api.code, ErrorCode::Forbidden);
}
