//! Entry points for fuzzing the logic with arbitrary bytes: the `fuzz/` targets call them, and
//! `cargo test` replays every input kept in `fuzz/corpus` and `fuzz/regressions` through them
//! (tests/fuzz_corpus.rs), so an input that once broke something stays a test. Each must
//! never panic, whatever the bytes; each checks what must hold as well.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::{Channel, ChannelSettings, JoinSpec, Output};
use crate::ids::{ChannelId, Identity, ParticipantId};
use crate::mix::jitter::{JitterBuffer, Play};
use crate::protocol::{AudioMode, MixPolicy};
use crate::roles::RoleTable;

/// A request frame as the server reads it.
pub fn request(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let (_, parsed) = crate::protocol::parse_request(text);
        if let Ok(req) = parsed {
            // What parses encodes and parses back to the same request.
            let again = crate::protocol::encode_request(Some(1), &req);
            let (_, back) = crate::protocol::parse_request(&again);
            assert_eq!(back.ok().as_ref(), Some(&req), "{again}");
        }
    }
}

/// An Ogg Opus file offered for playback.
pub fn ogg(data: &[u8]) {
    if let Ok(file) = crate::mix::ogg::read_ogg_opus(data) {
        let held: usize = file.packets.iter().map(|(p, _)| p.len()).sum();
        assert!(held <= data.len(), "packets come from the file's own bytes");
        assert!(!file.packets.is_empty());
    }
}

/// Bytes read one at a time; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) << 8 | u16::from(self.u8())
    }

    fn more(&self) -> bool {
        !self.0.is_empty()
    }
}

/// A speaker's packets arriving in any order, late, duplicated, with any timing, and the
/// mixer's ticks in between.
pub fn jitter(data: &[u8]) {
    let mut b = Bytes(data);
    let mut buffer = JitterBuffer::new();
    let mut now = Duration::ZERO;
    let mut played = 0u64;
    while b.more() {
        match b.u8() % 4 {
            0 | 1 => {
                let seq = u64::from(b.u16());
                let time = seq * 960 + u64::from(b.u8());
                now += Duration::from_millis(u64::from(b.u8()));
                let len = usize::from(b.u8()) * 8;
                let payload = vec![0x7cu8; len];
                buffer.push(seq, time, now, &payload, None);
            }
            2 => {
                now += Duration::from_millis(20);
                if matches!(buffer.pop(), Play::Packet { .. }) {
                    played += 1;
                }
            }
            _ => {
                let _ = buffer.target();
            }
        }
        assert!((1..=10).contains(&buffer.target()));
        assert!(buffer.delay_frames() <= 16);
    }
    assert!(played <= buffer.stats().played);
}

fn settings() -> ChannelSettings {
    ChannelSettings {
        roles: Arc::new(RoleTable::new(RoleTable::default_specs())),
        default_role: "audience".into(),
        max_participants: 6,
        max_metadata_bytes: 64,
        empty_grace: Duration::from_secs(30),
        count_interval: Duration::from_secs(1),
        mix_policy: MixPolicy::Forward,
        mix_auto_above: 2,
    }
}

/// A channel driven by any sequence of members' requests and the passing of time: whatever
/// happens, every event goes out with the next `seq`, and nothing panics.
pub fn channel(data: &[u8]) {
    let mut b = Bytes(data);
    let t0 = Instant::now();
    let mut now = t0;
    let mut ch = Channel::new(ChannelId::parse("fuzz").expect("valid"), settings(), t0);
    let who = |n: u8| ParticipantId::parse(&format!("p-{}", n % 8)).expect("valid");
    let roles = ["host", "audience", "nobody"];
    // One event may go out in several outputs (one per recipient, and a removed member's
    // `left` shares its seq with the others' `participant_left`); a later event never has
    // a smaller seq.
    let mut last_seq = 0u64;
    while b.more() && !ch.is_closed() {
        let op = b.u8();
        let actor = who(b.u8());
        let target = who(b.u8());
        let role = roles[usize::from(b.u8()) % roles.len()];
        let flag = b.u8() % 2 == 0;
        let _ = match op % 14 {
            0 => {
                let n = b.u8() % 8;
                ch.join(
                    now,
                    JoinSpec {
                        request: Some(1),
                        participant: who(n),
                        identity: Identity::parse(&format!("user-{}", n % 5)).expect("valid"),
                        name: None,
                        role: Some(role.to_string()),
                        allowed_roles: vec!["host".to_string()].into(),
                        metadata: None,
                        audio: if flag {
                            AudioMode::Mixed
                        } else {
                            AudioMode::Auto
                        },
                        token_expires_s: Some(4_000_000_000),
                    },
                )
            }
            1 => ch.leave(now, &actor, Some(2)),
            2 => ch.set_role(&actor, Some(3), flag.then_some(&target), role),
            3 => ch.request_role(&actor, Some(4), role),
            4 => ch.mute(&actor, Some(5), flag.then_some(&target), b.u8() % 2 == 0),
            5 => ch.kick(now, Some(&actor), Some(6), &target, None),
            6 => {
                let policy =
                    [MixPolicy::Forward, MixPolicy::Mix, MixPolicy::Auto][usize::from(b.u8()) % 3];
                ch.set_mix(&actor, Some(7), policy)
            }
            7 => ch.set_audio(&actor, Some(8), AudioMode::Forwarded),
            8 => ch.set_volume(&actor, Some(9), &target, f64::from(b.u8()) / 100.0),
            9 => {
                ch.drop_member(now, &actor);
                Ok(())
            }
            10 => ch.stop(now, &actor, Some(10)),
            11 => ch.unban(&actor, Some(11), Identity::parse("user-1").expect("valid")),
            12 => ch.start_recording(now, format!("r{}.ogg", b.u8())),
            _ => {
                now += Duration::from_millis(u64::from(b.u16()));
                ch.tick(now);
                Ok(())
            }
        };
        ch.sync_mixing();
        let _ = ch.mixdown();
        let _ = ch.publishers();
        for out in ch.drain() {
            let frame = match &out {
                Output::Send { frame, .. } | Output::Reply { frame, .. } => frame,
                _ => continue,
            };
            if let Some((_, seq)) = crate::protocol::event_position(frame) {
                assert!(seq >= last_seq, "seq {seq} after {last_seq}: {frame}");
                last_seq = seq;
            }
        }
    }
}

/// A call driven by any sequence of its members' requests, drops and returns, and the passing
/// of time, with its log ledger following: nothing panics, its events go out in `seq` order,
/// an ended call stays ended with nobody left in it, and its members stay within the bound.
pub fn call(data: &[u8]) {
    use crate::call::ledger::Ledger;
    use crate::call::{
        Call, CallSetup, EndReason, LegState, Media, Phase, RejectReason, TransactionId,
        MAX_MEMBERS,
    };
    use std::collections::HashSet;

    let mut b = Bytes(data);
    let user = |n: u8| Identity::parse(&format!("u{}", n % 40)).expect("valid");
    let media = |n: u8| {
        if n.is_multiple_of(2) {
            Media::Audio
        } else {
            Media::Video
        }
    };
    let t0 = Instant::now();
    let mut now = t0;
    let id = crate::call::CallId::parse("c-00000000000000f0").expect("valid");
    let callees = (0..1 + b.u8() % 3).map(|_| user(1 + b.u8() % 39)).collect();
    let setup = CallSetup {
        id: id.clone(),
        caller: user(0),
        callees,
        media: media(b.u8()),
        extra: serde_json::Value::Null,
        ring_timeout: Duration::from_secs(30),
        reconnect_grace: Duration::from_secs(5),
        media_change_timeout: Duration::from_secs(10),
        created_unix_ms: 1_700_000_000_000,
    };
    let Ok(mut call) = Call::new(setup, now) else {
        return;
    };
    let (mut ledger, _) = Ledger::open(&call, now, &HashSet::new());
    let mut last_seq = 0u64;
    let mut ended_with: Option<Phase> = None;
    while b.more() {
        let op = b.u8();
        let who = user(b.u8() % 8);
        let flag = b.u8() % 2 == 0;
        let tx = TransactionId::new(&id, u64::from(b.u8() % 4));
        let _ = match op % 13 {
            0 => call.accept(&who, flag.then(|| media(b.u8())), now),
            1 => call.reject(&who, RejectReason::Rejected, now),
            2 => call.hangup(&who, EndReason::Hangup, now),
            3 => call.disconnect(&who, now),
            4 => call.reconnect(&who),
            5 => call.join(&who, now),
            6 => {
                let invited = (0..1 + b.u8() % 4).map(|_| user(b.u8())).collect();
                call.invite(&who, invited, now).map(|_| ())
            }
            7 => call
                .request_media_change(&who, media(b.u8()), now)
                .map(|_| ()),
            8 => call.cancel_media_change(&who, &tx),
            9 => call.reply_media_change(&who, &tx, flag),
            10 => {
                call.terminate(EndReason::ServerRestart, now);
                Ok(())
            }
            11 => {
                let _ = ledger.rang(&call, &who, t0, now);
                Ok(())
            }
            _ => {
                now += Duration::from_millis(u64::from(b.u16()) * 8);
                call.timeout(now);
                Ok(())
            }
        };
        for out in call.drain() {
            assert!(out.seq >= last_seq, "seq {} after {last_seq}", out.seq);
            last_seq = out.seq;
        }
        let _ = ledger.step(&call, now);
        let _ = ledger.after_events().count();
        assert!(call.legs().len() <= MAX_MEMBERS);
        if let Some(phase) = ended_with {
            assert_eq!(call.phase(), phase, "an ended call changed");
        }
        if call.is_ended() {
            ended_with = Some(call.phase());
            assert!(call.next_deadline().is_none());
            assert!(
                call.legs().iter().all(|l| l.state() == LegState::Left),
                "someone is still in an ended call"
            );
        } else if let Some(deadline) = call.next_deadline() {
            // Deadlines lie ahead, or are due now.
            let _ = deadline.saturating_duration_since(now);
        }
    }
}

/// An offer's text as a client sends it, and a parser's error text shown to the client.
pub fn sdp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(shape) = crate::sdp::shape(&text) {
        // Each audio m-line counts at most once each way.
        let audio = text
            .split("\nm=")
            .skip(1)
            .filter(|s| s.starts_with("audio"))
            .count();
        assert!(shape.sending <= audio && shape.receiving <= audio);
    }
    // Reordering RED changes no byte count and keeps the text an SDP's.
    let reordered = crate::sdp::red_first(&text);
    assert_eq!(reordered.len(), text.len());
    let shown = crate::sdp::client_error_text(&text);
    assert!(!shown.contains("PointerOffset("), "{shown}");
    assert!(shown.chars().count() <= 300);
}

/// A datagram on the shared media port, read for steering.
pub fn stun(data: &[u8]) {
    if let Some(req) = crate::stun::binding_request(data) {
        assert!(data.len() >= 20 && data[..2] == [0, 1]);
        assert!(req.ufrag.len() <= 513 && !req.ufrag.contains(':'));
        // The ufrag is read in place, from the message's own bytes.
        let start = req.ufrag.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start >= 24 && start + req.ufrag.len() <= data.len());
    }
}

/// A RED payload from a publisher: the primary block found lies inside it.
pub fn red(data: &[u8]) {
    if let Some(p) = crate::red::primary(data) {
        assert!(p.start >= 1 && p.start <= data.len());
        assert!(p.pt < 128);
    }
}

/// The fuzzing key of [`jwt`]; the kept seeds are tokens signed with it.
pub const JWT_KEY: &[u8] = b"amphi fuzzing key";
/// The fuzzing clock of [`jwt`], unix seconds.
pub const JWT_NOW: u64 = 1_800_000_000;

/// A token as the server checks it. Whatever passes carries `sub` and `exp`, is not expired,
/// and signs again to a token that passes with the same claims.
///
/// Bytes holding a NUL are a header and a payload (before and after it) that this target
/// encodes and signs with the right key itself, so the checks behind the signature see
/// arbitrary headers and claims too; other bytes are a token as a client sends it.
pub fn jwt(data: &[u8]) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::Mac;
    let signed;
    let text = match data.iter().position(|b| *b == 0) {
        Some(at) => {
            let part = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
            let body = format!("{}.{}", part(&data[..at]), part(&data[at + 1..]));
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(JWT_KEY).expect("any key");
            mac.update(body.as_bytes());
            signed = format!("{body}.{}", part(&mac.finalize().into_bytes()));
            signed.as_str()
        }
        None => match std::str::from_utf8(data) {
            Ok(text) => text,
            Err(_) => return,
        },
    };
    let key = crate::jwt::Hs256::new(JWT_KEY, 60);
    if let Ok(claims) = key.verify::<serde_json::Value>(text, JWT_NOW) {
        assert!(claims.get("sub").is_some(), "{claims}");
        let exp = claims["exp"].as_u64().expect("exp is a number of seconds");
        assert!(exp + 60 >= JWT_NOW);
        let again = key.sign(&claims);
        assert_eq!(
            key.verify::<serde_json::Value>(&again, JWT_NOW).ok(),
            Some(claims)
        );
    }
}
