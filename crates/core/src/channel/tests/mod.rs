//! Channel logic under a manual clock: no sockets, no actors.

mod admin;
mod mixing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::error::ErrorCode;
use crate::roles::RoleSpec;

/// The sample configuration's role table (what a deployment starts from).
fn sample_roles() -> RoleTable {
    #[derive(serde::Deserialize)]
    struct Sample {
        roles: std::collections::BTreeMap<String, RoleSpec>,
    }
    let sample: Sample = toml::from_str(include_str!("../../../../../config/amphi.toml")).unwrap();
    RoleTable::new(sample.roles)
}

const GRACE: Duration = Duration::from_secs(30);
const COUNT_INTERVAL: Duration = Duration::from_secs(1);

fn settings() -> ChannelSettings {
    ChannelSettings {
        roles: Arc::new(sample_roles()),
        default_role: "audience".into(),
        max_participants: 100,
        max_metadata_bytes: 256,
        empty_grace: GRACE,
        count_interval: COUNT_INTERVAL,
        mix_policy: MixPolicy::Forward,
        mix_auto_above: 1,
    }
}

/// A channel plus each participant's inbox, filled by resolving outputs like the actor does.
struct Harness {
    ch: Channel,
    t0: Instant,
    inbox: HashMap<String, Vec<Value>>,
    detached: Vec<String>,
    permissions: Vec<(String, bool)>,
    audio: Vec<(String, AudioMode)>,
    webhooks: Vec<(&'static str, Value)>,
    bans: Vec<String>,
    closed: bool,
}

impl Harness {
    fn new() -> Self {
        let t0 = Instant::now();
        Self {
            ch: Channel::new(ChannelId::parse("c1").unwrap(), settings(), t0),
            t0,
            inbox: HashMap::new(),
            detached: Vec::new(),
            permissions: Vec::new(),
            audio: Vec::new(),
            webhooks: Vec::new(),
            bans: Vec::new(),
            closed: false,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn pump(&mut self) {
        let outputs: Vec<Output> = self.ch.drain().collect();
        for o in outputs {
            match o {
                Output::Send { to, frame } => {
                    let v: Value = serde_json::from_str(&frame).unwrap();
                    let mut who = Vec::new();
                    self.ch.for_each_recipient(&to, |p| who.push(p.to_string()));
                    for p in who {
                        self.inbox.entry(p).or_default().push(v.clone());
                    }
                }
                Output::Reply { to, frame } => {
                    let v: Value = serde_json::from_str(&frame).unwrap();
                    self.inbox.entry(to.to_string()).or_default().push(v);
                }
                Output::Detach(p) => self.detached.push(p.to_string()),
                Output::Close => self.closed = true,
                Output::Members { .. } => {}
                Output::Webhook { kind, data } => self.webhooks.push((kind, data)),
                Output::Ban { identity, .. } => self.bans.push(identity.to_string()),
                Output::Unban { identity } => self.bans.retain(|b| b != identity.as_str()),
                Output::Audio { participant, audio } => {
                    self.audio.push((participant.to_string(), audio))
                }
                Output::Permissions {
                    participant,
                    publish,
                    ..
                } => self.permissions.push((participant.to_string(), publish)),
            }
        }
    }

    fn join(
        &mut self,
        ms: u64,
        who: &str,
        role: &str,
        allowed: &[&str],
    ) -> Result<(), ChannelError> {
        let spec = JoinSpec {
            request: Some(1),
            participant: ParticipantId::parse(&format!("p-{who}")).unwrap(),
            identity: Identity::parse(who).unwrap(),
            name: None,
            role: Some(role.into()),
            allowed_roles: allowed
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into(),
            metadata: None,
            audio: AudioMode::Auto,
            token_expires_s: Some(4_000_000_000),
        };
        let r = self.ch.join(self.at(ms), spec);
        self.pump();
        r
    }

    fn take(&mut self, who: &str) -> Vec<Value> {
        self.inbox.remove(&format!("p-{who}")).unwrap_or_default()
    }

    fn events(&mut self, who: &str) -> Vec<String> {
        self.take(who)
            .iter()
            .map(|v| {
                v.get("event")
                    .or_else(|| v.get("type"))
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

fn pid(who: &str) -> ParticipantId {
    ParticipantId::parse(&format!("p-{who}")).unwrap()
}

#[test]
fn join_reply_then_events_with_increasing_seq() {
    let mut h = Harness::new();
    h.join(0, "alice", "host", &["host"]).unwrap();
    let reply = h.take("alice");
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["type"], "ok");
    assert_eq!(reply[0]["seq"], 1);
    assert_eq!(reply[0]["hosts"][0]["identity"], "alice");
    assert_eq!(
        (reply[0]["mix"].as_str(), reply[0]["mixing"].as_bool()),
        (Some("forward"), Some(false))
    );
    assert!(
        reply[0]["participants"].is_array(),
        "hosts see the full list"
    );

    h.join(10, "bob", "audience", &[]).unwrap();
    let bob = h.take("bob");
    assert!(
        bob[0].get("participants").is_none(),
        "audience gets no full list"
    );
    assert_eq!(bob[0]["hosts"].as_array().unwrap().len(), 1);
    let alice = h.take("alice");
    assert_eq!(alice[0]["event"], "participant_joined");
    assert_eq!(alice[0]["identity"], "bob");
    assert_eq!(alice[0]["seq"], 2);

    h.join(20, "carol", "host", &["host"]).unwrap();
    let bob = h.take("bob");
    assert_eq!(bob[0]["event"], "participant_joined");
    assert_eq!(bob[0]["identity"], "carol");
    assert_eq!(bob[0]["seq"], 3);
}

#[test]
fn audience_joins_reach_only_privileged_and_counts_are_throttled() {
    let mut h = Harness::new();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "a0", "audience", &[]).unwrap();
    h.take("host");
    h.take("a0");
    // The first count goes out at once.
    h.ch.tick(h.at(0));
    h.pump();
    assert_eq!(h.events("a0"), vec!["audience_count"]);
    h.take("host");
    for i in 1..50 {
        h.join(10 + i, &format!("a{i}"), "audience", &[]).unwrap();
    }
    // a0 heard nothing about other audience members.
    assert!(h.take("a0").is_empty());
    assert_eq!(h.take("host").len(), 49);
    // Within the interval: nothing; at its end: one count with the latest number.
    h.ch.tick(h.at(500));
    h.pump();
    assert!(h.take("a0").is_empty());
    assert_eq!(h.ch.next_deadline(), Some(h.at(1000)));
    h.ch.tick(h.at(1000));
    h.pump();
    let a0 = h.take("a0");
    assert_eq!(a0.len(), 1);
    assert_eq!(a0[0]["count"], 50);
    // Unchanged counts are not repeated.
    h.ch.tick(h.at(5000));
    h.pump();
    assert!(h.take("a0").is_empty());
    assert_eq!(h.ch.next_deadline(), None);
}

#[test]
fn empty_channel_closes_after_grace_only() {
    let mut h = Harness::new();
    h.join(0, "alice", "host", &["host"]).unwrap();
    h.ch.leave(h.at(100), &pid("alice"), Some(2)).unwrap();
    h.pump();
    assert_eq!(h.detached, vec!["p-alice"]);
    assert_eq!(h.ch.next_deadline(), Some(h.at(100) + GRACE));
    h.ch.tick(h.at(100) + GRACE - Duration::from_millis(1));
    h.pump();
    assert!(!h.closed);
    // A join within the grace keeps the channel.
    h.join(200, "bob", "host", &["host"]).unwrap();
    h.ch.tick(h.at(100) + GRACE);
    h.pump();
    assert!(!h.closed);
    h.ch.drop_member(h.at(300), &pid("bob"));
    h.ch.tick(h.at(300) + GRACE);
    h.pump();
    assert!(h.closed);
    assert!(h.join(400, "carol", "host", &["host"]).is_err());
}

#[test]
fn role_rules() {
    let mut h = Harness::new();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "aud", "audience", &["audience", "host"]).unwrap();
    // Token does not allow the role.
    let e = h.join(0, "eve", "host", &["audience"]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    let e = h.join(0, "eve", "wizard", &["*"]).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadRequest);
    assert!(e.to_string().contains("audience"), "{e}");
    // Audience cannot promote itself to host even though its token allows host.
    let e =
        h.ch.set_role(&pid("aud"), Some(3), None, "host")
            .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    assert!(e.to_string().contains("request_role"));
    // Audience cannot change others, mute others, kick or stop.
    assert_eq!(
        h.ch.set_role(&pid("aud"), None, Some(&pid("host")), "audience")
            .unwrap_err()
            .code(),
        ErrorCode::Forbidden
    );
    assert_eq!(
        h.ch.mute(&pid("aud"), None, Some(&pid("host")), true)
            .unwrap_err()
            .code(),
        ErrorCode::Forbidden
    );
    assert_eq!(
        h.ch.kick(h.at(1), Some(&pid("aud")), None, &pid("host"), None)
            .unwrap_err()
            .code(),
        ErrorCode::Forbidden
    );
    assert_eq!(
        h.ch.stop(h.at(1), &pid("aud"), None).unwrap_err().code(),
        ErrorCode::Forbidden
    );
    h.take("host");
    h.take("aud");
    // Raise hand: the host hears, grants.
    h.ch.request_role(&pid("aud"), Some(4), "host").unwrap();
    h.pump();
    assert_eq!(h.events("host"), vec!["role_requested"]);
    h.ch.set_role(&pid("host"), Some(5), Some(&pid("aud")), "host")
        .unwrap();
    h.pump();
    assert_eq!(
        h.permissions,
        vec![("p-aud".to_string(), true)],
        "media learns of the grant"
    );
    // aud: the reply to its request, then the grant.
    assert_eq!(h.events("aud"), vec!["ok", "role_changed"]);
    assert_eq!(h.events("host"), vec!["ok", "role_changed"]);
    // A host may step down by itself.
    h.ch.set_role(&pid("aud"), Some(6), None, "audience")
        .unwrap();
}

#[test]
fn role_and_channel_capacity() {
    let mut s = settings();
    s.max_participants = 3;
    let t0 = Instant::now();
    let mut ch = Channel::new(ChannelId::parse("c").unwrap(), s, t0);
    let join = |ch: &mut Channel, who: &str, role: &str| {
        ch.join(
            t0,
            JoinSpec {
                request: None,
                participant: pid(who),
                identity: Identity::parse(who).unwrap(),
                name: None,
                role: Some(role.into()),
                allowed_roles: vec!["*".to_string()].into(),
                metadata: None,
                audio: AudioMode::Auto,
                token_expires_s: None,
            },
        )
    };
    join(&mut ch, "a", "audience").unwrap();
    join(&mut ch, "b", "audience").unwrap();
    join(&mut ch, "c", "audience").unwrap();
    assert_eq!(
        join(&mut ch, "d", "audience").unwrap_err().code(),
        ErrorCode::ChannelFull
    );
    // Replacing an identity frees its seat.
    ch.drain();
    let mut spec_c = JoinSpec {
        request: None,
        participant: pid("c2"),
        identity: Identity::parse("c").unwrap(),
        name: None,
        role: Some("audience".into()),
        allowed_roles: vec!["*".to_string()].into(),
        metadata: None,
        audio: AudioMode::Auto,
        token_expires_s: None,
    };
    ch.join(t0, spec_c.clone()).unwrap();
    assert_eq!(ch.len(), 3);
    let out: Vec<Output> = ch.drain().collect();
    assert!(out.contains(&Output::Detach(pid("c"))));
    spec_c.participant = pid("c3");
    spec_c.metadata = Some(Value::String("x".repeat(300)));
    assert_eq!(ch.join(t0, spec_c).unwrap_err().code(), ErrorCode::TooLarge);

    let mut s = settings();
    s.max_participants = 100;
    let mut ch = Channel::new(ChannelId::parse("c").unwrap(), s, t0);
    for i in 0..16 {
        join(&mut ch, &format!("h{i}"), "host").unwrap();
    }
    assert_eq!(
        join(&mut ch, "h16", "host").unwrap_err().code(),
        ErrorCode::RoleFull
    );
}

#[test]
fn replaced_identity_gets_left_and_others_see_it() {
    let mut h = Harness::new();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "bob", "host", &["host"]).unwrap();
    h.take("host");
    let spec = JoinSpec {
        request: Some(9),
        participant: pid("bob2"),
        identity: Identity::parse("bob").unwrap(),
        name: None,
        role: Some("host".into()),
        allowed_roles: vec!["host".to_string()].into(),
        metadata: None,
        audio: AudioMode::Auto,
        token_expires_s: None,
    };
    h.ch.join(h.at(5), spec).unwrap();
    h.pump();
    let old = h.take("bob");
    let left = old.last().unwrap();
    assert_eq!(left["event"], "left");
    assert_eq!(left["reason"], "replaced");
    let host = h.take("host");
    assert_eq!(host[0]["event"], "participant_left");
    assert_eq!(host[0]["reason"], "replaced");
    assert_eq!(host[0]["seq"], left["seq"]);
    assert_eq!(host[1]["event"], "participant_joined");
    assert!(host[1]["seq"].as_u64() > host[0]["seq"].as_u64());
}

#[test]
fn moderator_mute_locks_until_moderator_unmutes() {
    let mut h = Harness::new();
    h.join(0, "host", "host", &["host"]).unwrap();
    h.join(0, "spk", "speaker", &["speaker"]).unwrap();
    h.join(0, "aud", "audience", &[]).unwrap();
    h.take("host");
    h.take("spk");
    h.take("aud");
    h.ch.mute(&pid("host"), None, Some(&pid("spk")), true)
        .unwrap();
    let e = h.ch.mute(&pid("spk"), None, None, false).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    h.ch.mute(&pid("host"), None, Some(&pid("spk")), false)
        .unwrap();
    // A speaker's own mute is its own to lift.
    h.ch.mute(&pid("spk"), None, None, true).unwrap();
    h.ch.mute(&pid("spk"), None, None, false).unwrap();
    h.pump();
    // Speakers are on stage: the audience hears every mute change.
    let aud: Vec<bool> = h
        .take("aud")
        .iter()
        .filter(|v| v["event"] == "mute_changed")
        .map(|v| v["muted"].as_bool().unwrap())
        .collect();
    assert_eq!(aud, vec![true, false, true, false]);
}
