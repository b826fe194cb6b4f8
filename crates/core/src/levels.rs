//! Who is speaking: speaker levels reported by the workers become `active_speaker` and
//! `audio_levels` events at a bounded rate. Plain logic with injected time.

use std::time::{Duration, Instant};

use crate::ids::ParticipantId;

/// At most four level events per second (the bound, and what UIs animate at).
pub const LEVEL_INTERVAL: Duration = Duration::from_millis(250);
/// A report older than this no longer counts as speaking.
const STALE: Duration = Duration::from_millis(600);

pub use amphi_proto::protocol::SpeakerVolume;

#[derive(Debug, Default)]
pub struct Levels {
    reports: Vec<(ParticipantId, u8, bool, Instant)>,
    active: Option<ParticipantId>,
    last_emit: Option<Instant>,
    dirty: bool,
}

/// What to announce after a tick.
#[derive(Debug, Default, PartialEq)]
pub struct Announce {
    pub active_speaker: Option<Option<ParticipantId>>,
    pub levels: Option<(Vec<SpeakerVolume>, u8)>,
}

/// RFC 6464 -dBov (0 loudest, 127 silent) to 0–255 over the useful 0..-60 dB range.
pub fn volume(dbov: u8) -> u8 {
    let db = f32::from(dbov.min(60));
    ((60.0 - db) / 60.0 * 255.0).round() as u8
}

impl Levels {
    pub fn report(&mut self, now: Instant, participant: ParticipantId, dbov: u8, voice: bool) {
        let v = volume(dbov);
        match self.reports.iter_mut().find(|r| r.0 == participant) {
            Some(r) => *r = (participant, v, voice, now),
            None => self.reports.push((participant, v, voice, now)),
        }
        self.dirty = true;
    }

    pub fn active(&self) -> Option<&ParticipantId> {
        self.active.as_ref()
    }

    pub fn forget(&mut self, participant: &ParticipantId) {
        self.reports.retain(|r| &r.0 != participant);
        self.dirty = true;
    }

    /// When `tick` should run next, if anything is pending: `now` when nothing was announced
    /// yet.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if !self.dirty && self.active.is_none() {
            return None;
        }
        Some(self.last_emit.map_or(now, |t| t + LEVEL_INTERVAL))
    }

    pub fn tick(&mut self, now: Instant) -> Announce {
        if let Some(last) = self.last_emit {
            if now < last + LEVEL_INTERVAL {
                return Announce::default();
            }
        }
        self.reports
            .retain(|r| now.saturating_duration_since(r.3) < STALE);
        let speaking: Vec<SpeakerVolume> = self
            .reports
            .iter()
            .filter(|r| r.2 || r.1 > 0)
            .map(|r| SpeakerVolume {
                participant: r.0.clone(),
                volume: r.1,
                vad: r.2,
            })
            .collect();
        let loudest = speaking
            .iter()
            .filter(|s| s.vad)
            .max_by_key(|s| s.volume)
            .map(|s| s.participant.clone());
        let mut out = Announce::default();
        if loudest != self.active && (loudest.is_some() || self.reports.is_empty()) {
            self.active = loudest.clone();
            out.active_speaker = Some(loudest);
        }
        if !speaking.is_empty() {
            let total = speaking
                .iter()
                .map(|s| u32::from(s.volume))
                .max()
                .unwrap_or(0) as u8;
            out.levels = Some((speaking, total));
        }
        self.dirty = !self.reports.is_empty();
        if out != Announce::default() {
            self.last_emit = Some(now);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ParticipantId {
        ParticipantId::parse(s).unwrap()
    }

    #[test]
    fn loudest_voice_is_active_and_rate_is_bounded() {
        let t0 = Instant::now();
        let mut l = Levels::default();
        l.report(t0, p("a"), 20, true);
        l.report(t0, p("b"), 10, true);
        let out = l.tick(t0);
        assert_eq!(out.active_speaker, Some(Some(p("b"))));
        assert_eq!(out.levels.as_ref().unwrap().0.len(), 2);
        // Within the interval nothing goes out, however many reports arrive.
        l.report(t0 + Duration::from_millis(10), p("a"), 0, true);
        assert_eq!(l.tick(t0 + Duration::from_millis(100)), Announce::default());
        let out = l.tick(t0 + LEVEL_INTERVAL);
        assert_eq!(out.active_speaker, Some(Some(p("a"))));
        // Silence: reports go stale, the active speaker is cleared once.
        let later = t0 + Duration::from_secs(2);
        let out = l.tick(later);
        assert_eq!(out.active_speaker, Some(None));
        assert_eq!(out.levels, None);
        assert_eq!(l.tick(later + LEVEL_INTERVAL), Announce::default());
    }

    #[test]
    fn volume_scale() {
        assert_eq!(volume(0), 255);
        assert_eq!(volume(127), 0);
        assert!(volume(30) > 100 && volume(30) < 150);
    }
}
