//! The user directory's placement decision: whether a new call may be placed, whom it finds
//! busy, and glare (two users calling each other at once), decided from what the directory
//! knows. The engine keeps the directory; this decides.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::call::{glare_winner, CallId, LegState, Survivor};
use crate::error::{ApiError, ErrorCode};
use crate::ids::Identity;

/// What the decision reads from the user directory.
pub trait Users {
    /// The call `user` is connected in (a caller is connected in its own call from the start).
    fn connected_call(&self, user: &Identity) -> Option<CallId>;
    /// Where `user` stands in `call`, if it is in it.
    fn leg(&self, user: &Identity, call: &CallId) -> Option<LegState>;
    /// The caller of `call` while nobody has answered it.
    fn unanswered_caller(&self, call: &CallId) -> Option<Identity>;
}

/// What placing a call comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The callee's own call to the caller stands (glare): the caller answers it.
    AnswerTheirs(CallId),
    /// The new call is placed. `busy` callees are connected elsewhere and do not ring;
    /// `glare`: the new call stands over the callee's call to the caller, and the callee
    /// answers it at once.
    Place { busy: Vec<Identity>, glare: bool },
}

/// The callees of a `call` request, each once; refused when the request cannot make a call.
pub fn callees(
    caller: &Identity,
    requested: Vec<Identity>,
    from_live_channel: bool,
) -> Result<Vec<Identity>, ApiError> {
    let mut callees: Vec<Identity> = Vec::with_capacity(requested.len());
    for c in requested {
        if !callees.contains(&c) {
            callees.push(c);
        }
    }
    if callees.contains(caller) {
        return Err(ApiError::bad_request("a caller cannot call itself"));
    }
    if callees.is_empty() {
        return Err(ApiError::bad_request(
            "\"callees\" must name at least one user",
        ));
    }
    if from_live_channel && callees.len() != 1 {
        return Err(ApiError::bad_request(
            "a call from a live channel goes to exactly one host",
        ));
    }
    Ok(callees)
}

/// Decides a new call `id` from `caller` to `callees` (as [`callees`] returned them).
pub fn place(
    users: &impl Users,
    caller: &Identity,
    callees: &[Identity],
    id: &CallId,
) -> Result<Decision, ApiError> {
    // Glare: the one callee has an unanswered call of its own ringing this caller.
    let glare_with = match callees {
        [callee] => users.connected_call(callee).filter(|theirs| {
            users.unanswered_caller(theirs).as_ref() == Some(callee)
                && users.leg(caller, theirs) == Some(LegState::Ringing)
        }),
        _ => None,
    };
    if let Some(current) = users.connected_call(caller) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("you are in call '{current}'; hang up before placing another"),
        ));
    }
    if let Some(theirs) = glare_with {
        return Ok(match glare_winner(id, caller, &theirs, &callees[0]) {
            // Their call stands: answering it is what both wanted.
            Survivor::Second => Decision::AnswerTheirs(theirs),
            Survivor::First => Decision::Place {
                busy: Vec::new(),
                glare: true,
            },
        });
    }
    let busy = callees
        .iter()
        .filter(|u| users.connected_call(u).is_some())
        .cloned()
        .collect();
    Ok(Decision::Place { busy, glare: false })
}

/// Ring spam: how many calls each identity placed in the last minute, whatever its
/// connections. Callers are forgotten a minute after their last call, so it holds only
/// recent ones.
#[derive(Debug, Default)]
pub struct CallRate {
    placed: HashMap<Identity, VecDeque<Instant>>,
}

impl CallRate {
    const WINDOW: Duration = Duration::from_secs(60);

    /// Counts a call `caller` places at `now`, or refuses it when `per_minute` calls were
    /// placed in the minute before.
    pub fn admit(
        &mut self,
        caller: &Identity,
        now: Instant,
        per_minute: u32,
    ) -> Result<(), ApiError> {
        self.placed.retain(|_, at| {
            while at
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= Self::WINDOW)
            {
                at.pop_front();
            }
            !at.is_empty()
        });
        let recent = self.placed.entry(caller.clone()).or_default();
        if recent.len() >= per_minute as usize {
            let mut refused = ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "{per_minute} calls placed in the last minute, the most \
                     calls.max_calls_per_minute allows; wait before calling again"
                ),
            );
            // When the oldest call of the window leaves it, one more may be placed.
            let oldest = recent.front().copied().unwrap_or(now);
            let wait = Self::WINDOW.saturating_sub(now.saturating_duration_since(oldest));
            refused.retry_after_ms =
                Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
            return Err(refused);
        }
        recent.push_back(now);
        Ok(())
    }

    /// Callers remembered (for tests: the map does not grow without bound).
    pub fn callers(&self) -> usize {
        self.placed.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A directory written out by hand: (user, call, leg) rows and unanswered calls' callers.
    #[derive(Default)]
    struct Table {
        legs: Vec<(Identity, CallId, LegState)>,
        unanswered: HashMap<CallId, Identity>,
    }

    impl Users for Table {
        fn connected_call(&self, user: &Identity) -> Option<CallId> {
            self.legs
                .iter()
                .find(|(u, _, s)| u == user && *s == LegState::Connected)
                .map(|(_, c, _)| c.clone())
        }

        fn leg(&self, user: &Identity, call: &CallId) -> Option<LegState> {
            self.legs
                .iter()
                .find(|(u, c, _)| u == user && c == call)
                .map(|(_, _, s)| *s)
        }

        fn unanswered_caller(&self, call: &CallId) -> Option<Identity> {
            self.unanswered.get(call).cloned()
        }
    }

    fn id(name: &str) -> Identity {
        Identity::parse(name).unwrap()
    }

    fn call(n: u64) -> CallId {
        CallId::parse(&format!("c-{n:016x}")).unwrap()
    }

    /// Bob is calling Alice (call `theirs`, ringing her); Alice now calls Bob as `mine`.
    fn crossing(theirs: &CallId) -> Table {
        let mut t = Table::default();
        t.legs
            .push((id("bob"), theirs.clone(), LegState::Connected));
        t.legs
            .push((id("alice"), theirs.clone(), LegState::Ringing));
        t.unanswered.insert(theirs.clone(), id("bob"));
        t
    }

    #[test]
    fn callees_are_checked_and_deduplicated() {
        let alice = id("alice");
        assert_eq!(
            callees(&alice, vec![id("bob"), id("bob"), id("carol")], false).unwrap(),
            vec![id("bob"), id("carol")]
        );
        assert!(callees(&alice, vec![id("alice")], false).is_err());
        assert!(callees(&alice, vec![], false).is_err());
        assert!(callees(&alice, vec![id("bob"), id("carol")], true).is_err());
    }

    #[test]
    fn a_callee_in_another_call_is_busy_and_a_caller_in_one_is_refused() {
        let mut t = Table::default();
        t.legs.push((id("carol"), call(9), LegState::Connected));
        let d = place(&t, &id("alice"), &[id("bob"), id("carol")], &call(1)).unwrap();
        assert_eq!(
            d,
            Decision::Place {
                busy: vec![id("carol")],
                glare: false
            }
        );
        let err = place(&t, &id("carol"), &[id("bob")], &call(1)).unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict);
    }

    #[test]
    fn glare_keeps_exactly_one_of_the_two_calls() {
        // Whichever call glare_winner keeps, the decision follows it, from either side.
        for (mine, theirs) in [(call(1), call(2)), (call(2), call(1))] {
            let t = crossing(&theirs);
            let d = place(&t, &id("alice"), &[id("bob")], &mine).unwrap();
            match glare_winner(&mine, &id("alice"), &theirs, &id("bob")) {
                Survivor::Second => assert_eq!(d, Decision::AnswerTheirs(theirs.clone())),
                Survivor::First => assert_eq!(
                    d,
                    Decision::Place {
                        busy: vec![],
                        glare: true
                    }
                ),
            }
        }
    }

    #[test]
    fn no_glare_once_their_call_was_answered_or_rings_someone_else() {
        let theirs = call(2);
        let mut answered = crossing(&theirs);
        answered.unanswered.clear();
        let d = place(&answered, &id("alice"), &[id("bob")], &call(1)).unwrap();
        assert_eq!(
            d,
            Decision::Place {
                busy: vec![id("bob")],
                glare: false
            }
        );
        // Bob's call rings Dave, not Alice: Alice finds Bob busy.
        let mut elsewhere = Table::default();
        elsewhere
            .legs
            .push((id("bob"), theirs.clone(), LegState::Connected));
        elsewhere
            .legs
            .push((id("dave"), theirs.clone(), LegState::Ringing));
        elsewhere.unanswered.insert(theirs, id("bob"));
        let d = place(&elsewhere, &id("alice"), &[id("bob")], &call(1)).unwrap();
        assert_eq!(
            d,
            Decision::Place {
                busy: vec![id("bob")],
                glare: false
            }
        );
    }

    #[test]
    fn a_caller_places_so_many_calls_a_minute_and_is_forgotten_after() {
        let mut rate = CallRate::default();
        let t0 = Instant::now();
        let a = Identity::parse("a").unwrap();
        let b = Identity::parse("b").unwrap();
        for i in 0..3 {
            assert!(rate.admit(&a, t0 + Duration::from_secs(i), 3).is_ok());
        }
        let refused = rate.admit(&a, t0 + Duration::from_secs(10), 3).unwrap_err();
        // The first of the three (at t0) leaves the minute 50 s later.
        assert_eq!(refused.retry_after_ms, Some(50_000));
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.message.contains("calls.max_calls_per_minute"));
        // Another caller has its own count.
        assert!(rate.admit(&b, t0 + Duration::from_secs(10), 3).is_ok());
        // A minute after the first call, one more fits.
        assert!(rate.admit(&a, t0 + Duration::from_secs(60), 3).is_ok());
        assert!(rate.admit(&a, t0 + Duration::from_secs(60), 3).is_err());
        // Long after, nobody is remembered but the one calling now.
        assert!(rate.admit(&b, t0 + Duration::from_secs(600), 3).is_ok());
        assert_eq!(rate.callers(), 1);
    }
}
