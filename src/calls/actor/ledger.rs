//! The call's log rows, kept in step with the call: opened, rung, answered, first audio,
//! closed. Each change is written through the call-log actor.

use super::*;

impl CallActor {
    /// The log row the `i`th leg opens at `at`: the first leg is the caller's.
    pub(super) fn log_row(&self, i: usize, at: Instant) -> NewCallLog {
        let legs = self.call.legs();
        let user = legs[i].user();
        NewCallLog {
            call_id: self.call.id().clone(),
            user: user.clone(),
            call_type: self.call.call_type(),
            media: self.call.media(),
            direction: if i == 0 {
                Direction::Outgoing
            } else {
                Direction::Incoming
            },
            peers: legs
                .iter()
                .map(|l| l.user())
                .filter(|u| *u != user)
                .cloned()
                .collect(),
            start_ms: self.call.unix_ms(at),
            ring_ms: None,
        }
    }

    pub(super) fn first_audio(&mut self, user: &Identity, now: Instant) {
        if !self.heard.insert(user.clone()) {
            return;
        }
        let Some(connected) = self.call.leg(user).and_then(|l| l.joined_at()) else {
            return;
        };
        let since = self
            .call
            .connected_at()
            .map_or(connected, |c| c.max(connected));
        metrics::histogram!(m::CALL_SETUP_FIRST_AUDIO)
            .record(now.saturating_duration_since(since).as_secs_f64());
        self.engine.logs.write.do_send(LogWrite::FirstAudio {
            call_id: self.call.id().clone(),
            user: user.clone(),
            at_ms: self.call.unix_ms(now),
        });
    }

    pub(super) fn rang(&mut self, callee: &Identity, now: Instant) {
        if self.rang_at.insert(callee.clone(), now).is_some() {
            return;
        }
        metrics::histogram!(m::CALL_SETUP_RING).record(
            now.saturating_duration_since(self.requested_at)
                .as_secs_f64(),
        );
        let at_ms = self.call.unix_ms(now);
        let mut users = vec![callee.clone()];
        if let Some(by) = self.call.leg(callee).and_then(|l| l.invited_by()) {
            users.push(by.clone());
        }
        for user in users {
            self.pending_writes.push(LogWrite::Ringing {
                call_id: self.call.id().clone(),
                user,
                at_ms,
            });
        }
    }

    /// Issues the log writes the legs' changes call for; true when one of them connects a
    /// member (the events wait for it).
    pub(super) fn log_transitions(&mut self, now: Instant) -> bool {
        let mut connects = false;
        let id = self.call.id().clone();
        let mut opened = Vec::new();
        let mut writes = Vec::new();
        for (i, leg) in self.call.legs().iter().enumerate() {
            let user = leg.user().clone();
            let state = leg.state();
            let prev = self.seen.insert(user.clone(), state);
            if prev.is_none() {
                opened.push(self.log_row(i, now));
            }
            if state == LegState::Connected
                && self.call.connected_at().is_some()
                && self.connect_logged.insert(user.clone())
            {
                let joined = leg.joined_at().unwrap_or(now);
                let at = self.call.connected_at().map_or(joined, |c| c.max(joined));
                if i > 0 {
                    if let Some(rang) = self.rang_at.get(&user) {
                        metrics::histogram!(m::CALL_SETUP_ANSWER)
                            .record(joined.saturating_duration_since(*rang).as_secs_f64());
                    }
                }
                connects = true;
                writes.push(LogWrite::Connect {
                    call_id: id.clone(),
                    user: user.clone(),
                    at_ms: self.call.unix_ms(at),
                });
            }
            if state == LegState::Left && prev != Some(LegState::Left) {
                self.connect_logged.remove(&user);
                let (reason, at) = leg.left().unwrap_or((EndReason::Hangup, now));
                let engine = self.engine.clone();
                let to = user.clone();
                let call_id = id.clone();
                // After the events: `call_log` follows `call_ended`.
                self.pending_writes.push(LogWrite::Close {
                    call_id: id.clone(),
                    user: user.clone(),
                    at_ms: self.call.unix_ms(at),
                    reason,
                    then: Some(Box::new(move |row| {
                        let frame = protocol::call_event(
                            &call_id,
                            None,
                            &json!({"event": "call_log", "log": row}),
                            &[],
                        );
                        engine.deliver(&[to], &frame);
                    })),
                });
                if !self.call.is_ended() {
                    // A member who left a group call leaves its media too.
                    if let Some(ch) = self.engine.channels.get(&self.channel) {
                        ch.do_send(AdminKick::Identity(user.clone()));
                    }
                }
            }
        }
        if !opened.is_empty() {
            // Opened before anything else about these rows is written (the mailbox is FIFO).
            self.engine.logs.write.do_send(LogWrite::Open(opened));
        }
        let shape = (self.call.call_type(), self.call.media());
        if shape != self.logged_shape {
            self.logged_shape = shape;
            self.engine.logs.write.do_send(LogWrite::Shape {
                call_id: id.clone(),
                call_type: shape.0,
                media: shape.1,
            });
        }
        for w in writes {
            self.engine.logs.write.do_send(w);
        }
        connects
    }
}
