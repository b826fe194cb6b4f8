use super::*;
use crate::ids::ChannelId;

/// What a client writes is what the server reads: every request type, encoded from the
/// parsed form, parses back to the same request.
#[test]
fn every_request_round_trips() {
    let samples = [
        r#"{"type":"join","channel":"c","role":"host","metadata":{"a":1}}"#,
        r#"{"type":"join","channel":"room one","uri":true}"#,
        r#"{"type":"leave","channel":"c"}"#,
        r#"{"type":"stop","channel":"c"}"#,
        r#"{"type":"set_role","channel":"c","role":"host","participant":"p-1"}"#,
        r#"{"type":"request_role","channel":"c","role":"host"}"#,
        r#"{"type":"mute","channel":"c","muted":true}"#,
        r#"{"type":"kick","channel":"c","participant":"p-1","reason":"spam"}"#,
        r#"{"type":"send","channel":"c","kind":"chat","content":"hi","to":["p-1"]}"#,
        r#"{"type":"send","call_id":"c-00000000000000aa","kind":"x","content":{}}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"media_offer","channel":"c","sdp":"v=0"}"#,
        r#"{"type":"call","callees":["bob"],"media":"video","extra":{"k":1},"as":"alice"}"#,
        r#"{"type":"accept","call_id":"c-00000000000000aa","media":"audio"}"#,
        r#"{"type":"reject","call_id":"c-00000000000000aa","reason":"busy"}"#,
        r#"{"type":"hangup","call_id":"c-00000000000000aa","reason":"hangup"}"#,
        r#"{"type":"call_logs","count":10,"order":"asc","after":"c-00000000000000aa"}"#,
        r#"{"type":"call_media_state","call_id":"c-00000000000000aa","microphone":false}"#,
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for text in samples {
        let (_, parsed) = parse_request(text);
        let parsed = parsed.unwrap_or_else(|e| panic!("{text}: {e}"));
        let encoded = encode_request(Some(9), &parsed);
        let (id, again) = parse_request(&encoded);
        assert_eq!(id, Some(9), "{encoded}");
        assert_eq!(again.unwrap(), parsed, "{text} -> {encoded}");
        let v: Value = serde_json::from_str(&encoded).unwrap();
        kinds.insert(v["type"].as_str().unwrap().to_string());
    }
    assert!(kinds.len() >= 15, "{kinds:?}");
}

/// Media events keep the wire shape clients read (docs/protocol.md, media events).
#[test]
fn media_events_on_the_wire() {
    let ch = ChannelId::parse("c").unwrap();
    let v = |e: &MediaEvent| -> Value { serde_json::from_str(&media_event(&ch, e)).unwrap() };
    let track = v(&MediaEvent::Track {
        mid: "1".into(),
        participant: None,
        identity: None,
    });
    assert_eq!(
        track,
        serde_json::json!({"type": "event", "channel": "c", "event": "track", "mid": "1",
            "participant": null, "identity": null})
    );
    let state = v(&MediaEvent::MediaState { state: "connected" });
    assert_eq!(state["event"], "media_state");
    assert_eq!(state["state"], "connected");
    let q = v(&MediaEvent::Quality {
        direction: "send",
        mid: "0".into(),
        rtt_ms: None,
        loss: Some(0.5),
        jitter_ms: Some(2.0),
    });
    assert_eq!(
        (
            q["event"].clone(),
            q["direction"].clone(),
            q["loss"].clone(),
            q["jitter_ms"].clone()
        ),
        (
            Value::from("quality"),
            Value::from("send"),
            Value::from(0.5),
            Value::from(2.0)
        )
    );
    let offer = v(&MediaEvent::MediaOffer { sdp: "v=0".into() });
    assert_eq!(
        (offer["event"].clone(), offer["sdp"].clone()),
        (Value::from("media_offer"), Value::from("v=0"))
    );
}

#[test]
fn parses_join() {
    let (id, req) = parse_request(r#"{"id":3,"type":"join","channel":"c1","role":"host"}"#);
    assert_eq!(id, Some(3));
    assert_eq!(
        req.unwrap(),
        Request::Join {
            channel: "c1".into(),
            uri: false,
            role: Some("host".into()),
            metadata: None,
            audio: AudioMode::Auto,
        }
    );
}

#[test]
fn bad_frames_get_typed_errors_with_id() {
    let (id, r) = parse_request("nope");
    assert_eq!((id, r.unwrap_err().code), (None, ErrorCode::BadRequest));
    let (id, r) = parse_request(r#"{"id":4,"type":"join"}"#);
    let e = r.unwrap_err();
    assert_eq!((id, e.code), (Some(4), ErrorCode::BadRequest));
    assert!(e.message.contains("channel"), "{}", e.message);
    let (_, r) = parse_request(r#"{"id":5,"type":"join","channel":7}"#);
    assert!(r.unwrap_err().message.contains("invalid type"));
    let (_, r) = parse_request(r#"{"id":6,"type":"join","channel":"c","colour":1}"#);
    assert!(r.unwrap_err().message.contains("colour"));
    let (_, r) = parse_request(r#"{"id":7,"type":"dance"}"#);
    assert_eq!(r.unwrap_err().code, ErrorCode::UnknownType);
    let (_, r) = parse_request(r#"{"id":8}"#);
    assert_eq!(r.unwrap_err().code, ErrorCode::BadRequest);
    let (id, r) = parse_request(r#"{"id":-1,"type":"ping"}"#);
    assert_eq!((id, r.unwrap_err().code), (None, ErrorCode::BadRequest));
}

#[test]
fn an_event_frame_says_its_channel_and_seq_without_a_parse() {
    let c = ChannelId::parse("room1").unwrap();
    let frame = channel_event(&c, 42, &ChannelEvent::AudienceCount { count: 3 });
    assert_eq!(event_position(&frame), Some(("room1", 42)));
    assert_eq!(event_position(&ok(Some(1), ())), None);
    assert_eq!(
        event_position(r#"{"type":"event","event":"call_ended","seq":3,"channel":"x"}"#),
        None,
        "call events are not channel events"
    );
}

#[test]
fn a_repeated_key_is_refused_at_any_depth() {
    let (_, r) = parse_request(r#"{"id":1,"type":"ping","type":"join","channel":"c"}"#);
    let e = r.unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.message.contains("\"type\" appears twice"),
        "{}",
        e.message
    );
    let (_, r) = parse_request(r#"{"id":2,"type":"join","channel":"c","metadata":{"a":1,"a":2}}"#);
    assert!(r.unwrap_err().message.contains("appears twice"));
    // The same keys in different objects are fine; values keep their types.
    let (_, r) = parse_request(
        r#"{"id":3,"type":"join","channel":"c","metadata":{"id":[1,2.5,null,true,{"id":"x"}]}}"#,
    );
    let Request::Join { metadata, .. } = r.unwrap() else {
        panic!("a join");
    };
    assert_eq!(
        metadata.unwrap(),
        serde_json::json!({"id": [1, 2.5, null, true, {"id": "x"}]})
    );
}

#[test]
fn event_frames_are_flat() {
    let c = ChannelId::parse("c1").unwrap();
    let frame = channel_event(&c, 9, &ChannelEvent::AudienceCount { count: 3 });
    let v: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type":"event","event":"audience_count","channel":"c1","seq":9,"count":3})
    );
}
