//! The media change handshake of a 1:1 call: request, then cancel, reply or timeout, with
//! the result going to both sides.

use std::time::Instant;

use super::types::PendingChange;
use super::{
    Call, CallError, CallEvent, CallType, LegState, Media, MediaChangeResult, TransactionId,
};
use crate::ids::Identity;

impl Call {
    /// Asks the other side of a connected 1:1 call to switch media.
    pub fn request_media_change(
        &mut self,
        by: &Identity,
        media: Media,
        now: Instant,
    ) -> Result<TransactionId, CallError> {
        self.ensure_live()?;
        let i = self.index(by)?;
        if self.call_type != CallType::OneToOne {
            return Err(CallError::WrongState("media changes are for 1:1 calls"));
        }
        if self.connected_at.is_none() || self.legs[i].state != LegState::Connected {
            return Err(CallError::WrongState("media changes need a connected call"));
        }
        if self.media_change.is_some() {
            return Err(CallError::WrongState("a media change is already pending"));
        }
        if media == self.media {
            return Err(CallError::Invalid(format!("the call already uses {media}")));
        }
        self.transactions += 1;
        let tx = TransactionId::new(&self.id, self.transactions);
        self.media_change = Some(PendingChange {
            tx: tx.clone(),
            by: by.clone(),
            media,
            deadline: now + self.media_change_timeout,
        });
        let mut to = self.present();
        to.retain(|u| u != by);
        self.emit(
            to,
            CallEvent::MediaChangeRequested {
                transaction: tx.clone(),
                media,
                by: by.clone(),
            },
        );
        Ok(tx)
    }

    /// The requester withdraws its media change.
    pub fn cancel_media_change(
        &mut self,
        by: &Identity,
        tx: &TransactionId,
    ) -> Result<(), CallError> {
        let change = self.pending_change(by, tx)?;
        if &change.by != by {
            return Err(CallError::NotPermitted(
                "only the requester can cancel a media change",
            ));
        }
        self.resolve_media_change(MediaChangeResult::Canceled);
        Ok(())
    }

    /// The other side answers a media change.
    pub fn reply_media_change(
        &mut self,
        by: &Identity,
        tx: &TransactionId,
        agree: bool,
    ) -> Result<(), CallError> {
        let change = self.pending_change(by, tx)?;
        if &change.by == by {
            return Err(CallError::NotPermitted(
                "the requester cannot answer its own media change",
            ));
        }
        self.resolve_media_change(if agree {
            MediaChangeResult::Accepted
        } else {
            MediaChangeResult::Rejected
        });
        Ok(())
    }

    fn pending_change(
        &self,
        by: &Identity,
        tx: &TransactionId,
    ) -> Result<&PendingChange, CallError> {
        self.ensure_live()?;
        let i = self.index(by)?;
        if self.legs[i].state != LegState::Connected {
            return Err(CallError::WrongState("not connected to the call"));
        }
        self.media_change
            .as_ref()
            .filter(|c| &c.tx == tx)
            .ok_or_else(|| CallError::UnknownTransaction(tx.clone()))
    }

    pub(super) fn resolve_media_change(&mut self, result: MediaChangeResult) {
        let Some(change) = self.media_change.take() else {
            return;
        };
        if result == MediaChangeResult::Accepted {
            self.media = change.media;
            for leg in self.legs.iter_mut().filter(|l| l.present()) {
                leg.media = change.media;
            }
        }
        let to = self.present();
        self.emit(
            to,
            CallEvent::MediaChangeResult {
                transaction: change.tx,
                result,
                media: self.media,
            },
        );
    }
}
