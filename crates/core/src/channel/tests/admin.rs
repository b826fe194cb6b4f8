//! The admin API's operations on a channel: mutes, roles, messages.

use super::*;

#[test]
fn mute_all_spares_the_moderators_and_holds_against_self_unmute() {
    let mut h = Harness::new();
    h.join(0, "mod", "moderator", &["moderator"]).unwrap();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "speaker", "speaker", &["speaker"]).unwrap();
    h.join(0, "fan", "audience", &[]).unwrap();
    h.pump();
    h.take("speaker");
    let muted = h.ch.admin_mute_all(true, true);
    h.pump();
    let got = h.take("speaker");
    let ev = got.iter().find(|v| v["event"] == "mute_changed").unwrap();
    assert_eq!(ev["admin"], true, "{ev}");
    assert!(ev.get("by").is_none(), "{ev}");
    assert_eq!(
        muted,
        vec![pid("speaker")],
        "hosts moderate; the audience is not on stage"
    );
    assert!(h.ch.member(&pid("speaker")).unwrap().muted);
    let err = h.ch.mute(&pid("speaker"), None, None, false).unwrap_err();
    assert!(err.to_string().contains("moderator"), "{err}");
    assert_eq!(h.ch.admin_mute_all(false, true), vec![pid("speaker")]);
    assert!(
        h.ch.admin_mute_all(false, true).is_empty(),
        "nothing left to change"
    );
}

#[test]
fn set_role_and_send_need_no_member_and_check_their_targets() {
    let mut h = Harness::new();
    h.join(0, "fan", "audience", &[]).unwrap();
    h.pump();
    h.ch.admin_set_role(&pid("fan"), "host").unwrap();
    assert_eq!(h.ch.member(&pid("fan")).unwrap().role.to_string(), "host");
    assert!(h.ch.admin_set_role(&pid("fan"), "emperor").is_err());
    assert!(h.ch.admin_set_role(&pid("ghost"), "host").is_err());
    h.ch.admin_send("notice".into(), serde_json::json!({"text": "hi"}), vec![])
        .unwrap();
    assert!(h
        .ch
        .admin_send("notice".into(), Value::Null, vec![pid("ghost")])
        .is_err());
}

#[test]
fn mute_all_without_sparing_moderators_mutes_every_speaker() {
    let mut h = Harness::new();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "speaker", "speaker", &["speaker"]).unwrap();
    h.pump();
    assert_eq!(
        h.ch.admin_mute_all(true, false),
        vec![pid("host"), pid("speaker")]
    );
}
