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
