//! Admission at configured capacity. Past what the operator says the machine carries, a new
//! participant, media connection or call is refused with `busy` and a retry hint, so the
//! members already in keep their audio instead of everyone degrading together.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::ApiError;
pub use crate::error::RETRY_AFTER_MS;
use crate::metrics as m;

/// Seats of one kind (participants), counted across the server.
#[derive(Debug)]
pub struct Seats {
    taken: Arc<AtomicUsize>,
    max: usize,
}

/// One taken seat, given back when dropped: however a membership ends, the count follows.
#[derive(Debug)]
pub struct Seat(Arc<AtomicUsize>);

impl Seats {
    pub fn new(max: usize) -> Self {
        Self {
            taken: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A seat, or `busy` when all `max` are taken.
    pub fn take(&self, what: &'static str, setting: &str) -> Result<Seat, ApiError> {
        let admitted = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        match admitted {
            Ok(_) => Ok(Seat(self.taken.clone())),
            Err(_) => {
                m::admission_refused(what);
                Err(ApiError::at_capacity(
                    format!(
                        "the server carries its limit of {} {what} ({setting}); try again later",
                        self.max
                    ),
                    RETRY_AFTER_MS,
                ))
            }
        }
    }

    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_come_back_when_dropped_and_never_pass_the_limit() {
        let seats = Seats::new(2);
        let a = seats
            .take("participants", "limits.max_participants")
            .unwrap();
        let b = seats
            .take("participants", "limits.max_participants")
            .unwrap();
        let refused = seats
            .take("participants", "limits.max_participants")
            .unwrap_err();
        assert_eq!(refused.code, crate::error::ErrorCode::Busy);
        assert_eq!(refused.retry_after_ms, Some(RETRY_AFTER_MS));
        assert!(refused.message.contains("limits.max_participants"));
        drop(a);
        assert_eq!(seats.taken(), 1);
        let _c = seats
            .take("participants", "limits.max_participants")
            .unwrap();
        drop(b);
        assert_eq!(seats.taken(), 1);
    }
}
