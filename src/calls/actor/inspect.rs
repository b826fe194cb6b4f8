//! A call's state as the admin API shows it.

use super::*;
use crate::messages::InspectCall;

impl CallActor {
    fn inspect(&self) -> Value {
        let call = &self.call;
        let (phase, reason) = match call.phase() {
            Phase::Ringing => ("ringing", None),
            Phase::Connected => ("connected", None),
            Phase::Ended(reason) => ("ended", Some(reason)),
        };
        let members: Vec<Value> = call
            .legs()
            .iter()
            .map(|leg| {
                json!({
                    "user": leg.user(),
                    "state": leg.state(),
                    "invited_by": leg.invited_by(),
                    "joined_at": leg.joined_at().map(|at| call.unix_ms(at)),
                    "left_reason": leg.left().map(|(reason, _)| reason),
                    "reconnecting": leg.reconnecting(),
                    // Blocked callees ring nobody; to an operator they are not ringing.
                    "silent": self.silent.contains(leg.user()),
                })
            })
            .collect();
        json!({
            "call_id": call.id(),
            "caller": call.caller(),
            "call_type": call.call_type(),
            "media": call.media(),
            "phase": phase,
            "end_reason": reason,
            "channel": self.channel,
            "video_forwarded": self.video,
            "placed_at": call.unix_ms(self.requested_at),
            "connected_at": call.connected_at().map(|at| call.unix_ms(at)),
            "members": members,
        })
    }
}

impl Handler<InspectCall> for CallActor {
    type Result = MessageResult<InspectCall>;

    fn handle(&mut self, _msg: InspectCall, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.inspect())
    }
}
