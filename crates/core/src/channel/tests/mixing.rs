//! The channel's mix policy, volumes, who hears the mix, recordings and playbacks, and kicks
//! that hold.

use super::*;

#[test]
fn moderators_set_the_mix_and_auto_follows_unmuted_speakers() {
    let mut h = Harness::new();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "spk", "speaker", &["speaker"]).unwrap();
    h.join(0, "aud", "audience", &[]).unwrap();
    for who in ["host", "spk", "aud"] {
        h.take(who);
    }
    let e =
        h.ch.set_mix(&pid("aud"), Some(7), MixPolicy::Mix)
            .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    assert!(!h.ch.mixing());
    h.ch.set_mix(&pid("host"), Some(8), MixPolicy::Mix).unwrap();
    h.pump();
    assert!(h.ch.mixing());
    let seen: Vec<Value> = h.take("aud");
    let ev = seen.iter().find(|v| v["event"] == "mix_changed").unwrap();
    assert_eq!(
        (ev["policy"].as_str(), ev["mixing"].as_bool()),
        (Some("mix"), Some(true))
    );
    // Setting it again changes nothing and says nothing.
    h.ch.set_mix(&pid("host"), None, MixPolicy::Mix).unwrap();
    h.pump();
    assert!(!h.events("aud").contains(&"mix_changed".to_string()));
    // Auto, above one unmuted speaker: two are unmuted, so it mixes; muting one stops it.
    h.ch.set_mix(&pid("host"), None, MixPolicy::Auto).unwrap();
    h.pump();
    assert!(h.ch.mixing());
    h.take("aud");
    h.ch.mute(&pid("spk"), None, None, true).unwrap();
    h.ch.sync_mixing();
    h.pump();
    assert!(!h.ch.mixing());
    let seen = h.take("aud");
    let ev = seen.iter().find(|v| v["event"] == "mix_changed").unwrap();
    assert_eq!(
        (ev["policy"].as_str(), ev["mixing"].as_bool()),
        (Some("auto"), Some(false))
    );
    // Nothing changed since: nothing to announce.
    h.ch.sync_mixing();
    h.pump();
    assert!(h.take("aud").is_empty());
}

#[test]
fn moderators_set_a_speakers_volume_in_the_mix() {
    let mut h = Harness::new();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "spk", "speaker", &["speaker"]).unwrap();
    let e =
        h.ch.set_volume(&pid("spk"), None, &pid("host"), 0.5)
            .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    for bad in [-0.1, 2.5, f64::NAN] {
        let e =
            h.ch.set_volume(&pid("host"), None, &pid("spk"), bad)
                .unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadRequest, "{bad}");
    }
    let e =
        h.ch.set_volume(&pid("host"), None, &pid("nobody"), 1.0)
            .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    h.ch.set_volume(&pid("host"), None, &pid("spk"), 0.25)
        .unwrap();
    let spk =
        h.ch.publishers()
            .into_iter()
            .find(|p| p.participant == pid("spk"))
            .unwrap();
    assert_eq!(spk.gain_permille, 250);
}

#[test]
fn stop_tells_everyone_but_stopper_and_closes() {
    let mut h = Harness::new();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "aud", "audience", &[]).unwrap();
    h.take("host");
    h.take("aud");
    h.ch.stop(h.at(1), &pid("host"), Some(7)).unwrap();
    h.pump();
    let host = h.take("host");
    assert_eq!(host.len(), 1);
    assert_eq!(host[0]["type"], "ok");
    assert_eq!(host[0]["id"], 7);
    let aud = h.take("aud");
    assert_eq!(aud.len(), 1);
    assert_eq!(aud[0]["reason"], "channel_stopped");
    assert!(h.closed);
    assert_eq!(h.detached.len(), 2);
}

#[test]
fn the_mixer_runs_for_whoever_asks_for_the_mix_and_speakers_are_forwarded_to_whoever_asks() {
    let mut h = Harness::new();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "weak", "audience", &[]).unwrap();
    let forwarding = Mixdown {
        mixing: false,
        mixer: false,
        forward: true,
    };
    assert_eq!(h.ch.mixdown(), forwarding);
    // A listener asks for the mix in a forwarding channel: the mixer runs for it.
    h.ch.set_audio(&pid("weak"), Some(2), AudioMode::Mixed)
        .unwrap();
    h.pump();
    assert_eq!(h.take("weak")[0]["type"], "ok");
    assert_eq!(h.audio, vec![("p-weak".to_string(), AudioMode::Mixed)]);
    assert_eq!(
        h.ch.mixdown(),
        Mixdown {
            mixer: true,
            ..forwarding
        }
    );
    // Asking again changes nothing the media plane must hear of.
    h.ch.set_audio(&pid("weak"), Some(3), AudioMode::Mixed)
        .unwrap();
    h.pump();
    assert_eq!(h.audio.len(), 1);
    // The channel mixes; a listener asking for streams keeps forwarding on.
    h.ch.set_mix(&pid("host"), Some(4), MixPolicy::Mix).unwrap();
    h.ch.set_audio(&pid("weak"), Some(5), AudioMode::Forwarded)
        .unwrap();
    h.pump();
    assert_eq!(
        h.ch.mixdown(),
        Mixdown {
            mixing: true,
            mixer: true,
            forward: true
        }
    );
    h.ch.set_audio(&pid("weak"), Some(6), AudioMode::Auto)
        .unwrap();
    h.pump();
    assert_eq!(
        h.ch.mixdown(),
        Mixdown {
            mixing: true,
            mixer: true,
            forward: false
        }
    );
    // Only members can ask.
    assert!(h
        .ch
        .set_audio(&pid("stranger"), Some(7), AudioMode::Mixed)
        .is_err());
}

#[test]
fn a_recording_runs_the_mixer_and_a_playback_speaks_until_it_ends() {
    use crate::protocol::StreamEnd;
    let mut h = Harness::new();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "fan", "audience", &[]).unwrap();
    h.take("fan");
    h.ch.start_recording(h.at(10), "r.ogg".into()).unwrap();
    h.pump();
    assert!(h.ch.mixdown().mixer, "the mixer runs for the recording");
    assert!(!h.ch.mixdown().mixing, "the channel still forwards");
    assert!(h
        .ch
        .start_recording(h.at(11), "other.ogg".into())
        .is_err_and(|e| e.code() == ErrorCode::Conflict));
    assert_eq!(h.ch.stop_recording().unwrap(), "r.ogg");
    // The media plane reports the end: the reason is whoever asked.
    let end = RecordingEnd {
        reason: None,
        bytes: 4096,
        duration_ms: 2000,
    };
    h.ch.recording_ended("r.ogg", end);
    h.pump();
    let fan = h.take("fan");
    assert_eq!(fan[0]["event"], "recording_started");
    assert_eq!(
        (fan[1]["event"].as_str(), fan[1]["reason"].as_str()),
        (Some("recording_stopped"), Some("stopped"))
    );
    assert!(!h.ch.mixdown().mixer);
    // A file plays as a speaker after the members on stage, and leaves the stage when done.
    let player = pid("player");
    h.ch.start_playback(
        h.at(20),
        "a.ogg".into(),
        player.clone(),
        Identity::parse("amphi-player").unwrap(),
    )
    .unwrap();
    let stage: Vec<String> =
        h.ch.publishers()
            .iter()
            .map(|p| p.participant.to_string())
            .collect();
    assert_eq!(stage, vec!["p-host".to_string(), "p-player".to_string()]);
    h.ch.playback_ended(&player, StreamEnd::Finished);
    h.pump();
    assert_eq!(h.ch.publishers().len(), 1);
    let kinds: Vec<&str> = h.webhooks.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        vec![
            "channel_started",
            "participant_joined",
            "participant_joined",
            "recording_started",
            "recording_stopped",
            "playback_started",
            "playback_stopped"
        ]
    );
    assert_eq!(h.webhooks[4].1["bytes"], 4096);
    // A channel that ends takes its playback with it.
    h.ch.start_playback(
        h.at(30),
        "b.ogg".into(),
        player.clone(),
        Identity::parse("amphi-player").unwrap(),
    )
    .unwrap();
    h.ch.end(h.at(40), LeaveReason::ChannelStopped, None);
    h.pump();
    let last: Vec<(&str, Option<&str>)> = h.webhooks[h.webhooks.len() - 2..]
        .iter()
        .map(|(k, d)| (*k, d["reason"].as_str()))
        .collect();
    assert_eq!(
        last,
        [
            ("playback_stopped", Some("channel_ended")),
            ("channel_stopped", Some("channel_stopped"))
        ]
    );
}

#[test]
fn a_kick_keeps_the_identity_out_and_a_moderator_lets_it_back() {
    let mut h = Harness::new();
    h.join(0, "mod", "moderator", &["moderator"]).unwrap();
    h.join(0, "bob", "audience", &[]).unwrap();
    h.ch.kick(h.at(5), Some(&pid("mod")), Some(3), &pid("bob"), None)
        .unwrap();
    h.pump();
    assert_eq!(h.bans, vec!["bob".to_string()]);
    h.join(6, "eve", "audience", &[]).unwrap();
    assert!(h
        .ch
        .unban(&pid("eve"), Some(4), Identity::parse("bob").unwrap())
        .is_err_and(|e| e.code() == ErrorCode::Forbidden));
    h.ch.unban(&pid("mod"), Some(5), Identity::parse("bob").unwrap())
        .unwrap();
    h.pump();
    assert!(h.bans.is_empty());
}
