//! The call requests of a session: checked for form and grants here, then handed to the call
//! engine (placement) or the call's actor, whose replies come back through this session's
//! mailbox.

use actix::prelude::*;
use serde_json::json;

use super::SessionActor;
use crate::calls::call::{CallId, EndReason, RejectReason, TransactionId};
use crate::calls::engine::PlaceCall;
use crate::calls::store::{Cursor, Order, PageRequest, MAX_PAGE};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChannelId, Identity};
use crate::messages::ReplyTo;
use crate::messages::{CallOp, Op};
use crate::messages::{LogAnswer, LogQuery};
use crate::protocol::{self, Request};
use crate::token::{GRANT_CALL, GRANT_PROXY};

/// Longest note a `reject` or `hangup` may carry (a line on a phone's screen).
const MAX_NOTE_BYTES: usize = 200;

/// A `reject` or `hangup` note: short text for a person to read, nothing else.
fn checked_note(note: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(note) = note else {
        return Ok(None);
    };
    let note = note.trim();
    if note.len() > MAX_NOTE_BYTES || note.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "\"note\" is at most {MAX_NOTE_BYTES} bytes of text on one line"
        )));
    }
    Ok((!note.is_empty()).then(|| note.to_string()))
}

/// Call logs a page shows when the request names no count.
const DEFAULT_PAGE: usize = 20;
/// Identities one `presence` request may ask about.
const MAX_PRESENCE: usize = 100;

impl SessionActor {
    /// The identity a call request acts for: the session's own, or with the proxy grant the
    /// one named in `as`.
    pub(super) fn caller(&self, on_behalf: Option<String>) -> Result<Identity, ApiError> {
        match on_behalf {
            Some(other) => {
                if !self.grant.has(GRANT_PROXY) {
                    return Err(ApiError::forbidden(
                        "acting for another identity (\"as\") needs the 'proxy' grant",
                    ));
                }
                Ok(Identity::parse(&other)?)
            }
            None => {
                if !self.grant.has(GRANT_CALL) && !self.grant.has(GRANT_PROXY) {
                    return Err(ApiError::forbidden(
                        "calls need the 'call' grant in your token",
                    ));
                }
                Ok(self.grant.identity.clone())
            }
        }
    }

    /// A call request's reply path; a call that ended with the request in its mailbox
    /// answers through the fallback.
    fn reply(&mut self, id: Option<u64>, ctx: &mut Context<Self>) -> ReplyTo {
        let gone = ApiError::not_found("that call has ended");
        self.reply_to(id, Some(gone), ctx)
    }

    pub(super) fn route_call(
        &mut self,
        id: Option<u64>,
        call_id: &str,
        user: Identity,
        op: Op,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        let call = CallId::parse(call_id)?;
        let msg = CallOp {
            user,
            op,
            reply: Some(self.reply(id, ctx)),
            ok_result: None,
        };
        self.state.calls.route(&call, msg)
    }

    pub(super) fn call_request(
        &mut self,
        id: Option<u64>,
        req: Request,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        match req {
            req @ Request::Call { .. } => self.place(id, req, ctx),
            req @ (Request::CallLogs { .. }
            | Request::OngoingCalls {}
            | Request::DeleteCallLogs { .. }
            | Request::DeleteAllCallLogs {}) => self.log_request(id, req, ctx),
            Request::Presence { users } => {
                let result = self.presence(&users)?;
                self.text(protocol::ok(id, result), ctx);
                Ok(())
            }
            req @ (Request::Block { .. }
            | Request::Unblock { .. }
            | Request::BlockedUsers { .. }) => {
                let result = self.block_request(req)?;
                self.text(protocol::ok(id, result), ctx);
                Ok(())
            }
            req => {
                let (user, call_id, op) = self.call_op(req)?;
                self.route_call(id, &call_id, user, op, ctx)
            }
        }
    }

    /// A request on an existing call as the user it acts for, the call it names and the
    /// operation for that call's actor.
    fn call_op(&self, req: Request) -> Result<(Identity, String, Op), ApiError> {
        Ok(match req {
            Request::Accept {
                call_id,
                media,
                on_behalf,
            } => (self.caller(on_behalf)?, call_id, Op::Accept { media }),
            Request::Reject {
                call_id,
                reason,
                note,
                on_behalf,
            } => {
                let reason = reason.unwrap_or(RejectReason::Rejected);
                let note = checked_note(note)?;
                (
                    self.caller(on_behalf)?,
                    call_id,
                    Op::Reject { reason, note },
                )
            }
            Request::Hangup {
                call_id,
                reason,
                note,
                on_behalf,
            } => {
                let note = checked_note(note)?;
                let user = self.caller(on_behalf)?;
                let reason = reason.unwrap_or(EndReason::Hangup);
                if !matches!(reason, EndReason::Hangup | EndReason::Disconnected) {
                    return Err(ApiError::bad_request(format!(
                        "a hangup's reason is 'hangup' or 'disconnected', not '{reason}'"
                    )));
                }
                let call_id = self.hangup_target(&user, call_id)?;
                (user, call_id, Op::Hangup { reason, note })
            }
            Request::Invite {
                call_id,
                callees,
                on_behalf,
            } => {
                let user = self.caller(on_behalf)?;
                let callees = callees
                    .iter()
                    .map(|c| Identity::parse(c))
                    .collect::<Result<Vec<_>, _>>()?;
                if callees.is_empty() {
                    return Err(ApiError::bad_request(
                        "\"callees\" must name at least one user",
                    ));
                }
                (user, call_id, Op::Invite { callees })
            }
            Request::JoinCall { call_id, on_behalf } => {
                (self.caller(on_behalf)?, call_id, Op::Join)
            }
            Request::MediaChange {
                call_id,
                media,
                on_behalf,
            } => (self.caller(on_behalf)?, call_id, Op::MediaChange { media }),
            Request::MediaChangeCancel {
                transaction,
                on_behalf,
            } => {
                let user = self.caller(on_behalf)?;
                let transaction = TransactionId::parse(&transaction)?;
                let call = transaction.call_id().as_str().to_string();
                (user, call, Op::MediaChangeCancel { transaction })
            }
            Request::MediaChangeReply {
                transaction,
                agree,
                on_behalf,
            } => {
                let user = self.caller(on_behalf)?;
                let transaction = TransactionId::parse(&transaction)?;
                let call = transaction.call_id().as_str().to_string();
                (user, call, Op::MediaChangeReply { transaction, agree })
            }
            Request::CallMediaState {
                call_id,
                microphone,
                camera,
                on_behalf,
            } => {
                let op = Op::MediaState { microphone, camera };
                (self.caller(on_behalf)?, call_id, op)
            }
            _ => return Err(misrouted()),
        })
    }

    /// The call a `hangup` without `call_id` means: the one the user is connected in, or the
    /// only one ringing it.
    fn hangup_target(&self, user: &Identity, call_id: Option<String>) -> Result<String, ApiError> {
        Ok(match call_id {
            Some(c) => c,
            None => {
                let calls = self.state.calls.calls_of(user);
                let active = self.state.calls.active_call(user);
                match (active, calls.as_slice()) {
                    (Some(c), _) => c.to_string(),
                    (None, [only]) => only.to_string(),
                    (None, []) => {
                        return Err(ApiError::not_found("you are in no call"));
                    }
                    (None, _) => {
                        return Err(ApiError::bad_request(
                            "several calls are ringing you; name one with \"call_id\"",
                        ));
                    }
                }
            }
        })
    }

    /// A `call` request: checked here, placed by the call engine.
    fn place(
        &mut self,
        id: Option<u64>,
        req: Request,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        let Request::Call {
            callees,
            media,
            extra,
            push,
            live_channel,
            on_behalf,
        } = req
        else {
            return Err(misrouted());
        };
        let acting_for_other = on_behalf.is_some();
        let caller = self.caller(on_behalf)?;
        if self.state.is_shutting_down() {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the server is shutting down; call again shortly",
            ));
        }
        let callees = callees
            .iter()
            .map(|c| Identity::parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        let max = (crate::calls::call::MAX_MEMBERS - 1).min(self.state.config.calls.max_callees);
        if callees.len() > max {
            return Err(ApiError::bad_request(format!(
                "a call rings at most {max} callees (calls.max_callees); invite more once it \
                 is connected"
            )));
        }
        let extra_bytes = extra.to_string().len() + push.to_string().len();
        if extra_bytes > self.state.config.limits.max_metadata_bytes {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "\"extra\" and \"push\" together must stay under {} bytes",
                    self.state.config.limits.max_metadata_bytes
                ),
            ));
        }
        let live_channel = match live_channel {
            Some(c) => {
                let c = ChannelId::parse(&c)?;
                // The audience member is here in person; a proxy vouches for itself.
                if !acting_for_other && !self.channels.contains_key(&c) {
                    return Err(ApiError::forbidden(format!(
                        "join channel '{c}' before calling its host from it"
                    )));
                }
                Some(c)
            }
            None => None,
        };
        let reply = self.reply(id, ctx);
        self.state.calls.place_call(PlaceCall {
            caller,
            callees,
            media,
            extra,
            push,
            live_channel,
            reply,
        })
    }

    /// The call-log requests, answered by the call-log actor.
    fn log_request(
        &mut self,
        id: Option<u64>,
        req: Request,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        match req {
            Request::CallLogs {
                start_time,
                count,
                order,
                after,
            } => {
                let user = self.caller(None)?;
                let count = count.unwrap_or(DEFAULT_PAGE);
                if count == 0 || count > MAX_PAGE {
                    return Err(ApiError::bad_request(format!(
                        "\"count\" must be between 1 and {MAX_PAGE}"
                    )));
                }
                if start_time < -1 {
                    return Err(ApiError::bad_request(
                        "\"start_time\" is unix milliseconds, or -1 for the newest",
                    ));
                }
                let after = after.as_deref().map(CallId::parse).transpose()?;
                let page = PageRequest {
                    from: Cursor {
                        start_ms: start_time,
                        after,
                    },
                    count,
                    order: order.unwrap_or(Order::Desc),
                };
                self.log_query(id, LogQuery::Page { user, page }, ctx);
                Ok(())
            }
            Request::OngoingCalls {} => {
                let user = self.caller(None)?;
                self.log_query(id, LogQuery::Ongoing { user }, ctx);
                Ok(())
            }
            Request::DeleteCallLogs { call_ids } => {
                let user = self.caller(None)?;
                let call_ids = call_ids
                    .iter()
                    .map(|c| CallId::parse(c))
                    .collect::<Result<Vec<_>, _>>()?;
                if call_ids.is_empty() {
                    return Err(ApiError::bad_request("\"call_ids\" is empty"));
                }
                self.log_query(id, LogQuery::Delete { user, call_ids }, ctx);
                Ok(())
            }
            Request::DeleteAllCallLogs {} => {
                let user = self.caller(None)?;
                self.log_query(id, LogQuery::DeleteAll { user }, ctx);
                Ok(())
            }
            _ => Err(misrouted()),
        }
    }

    /// A user's call block list: answered at once from the server's store, which keeps it in
    /// the database.
    fn block_request(&self, req: Request) -> Result<serde_json::Value, ApiError> {
        let bans = &self.state.bans;
        let user = match req {
            Request::Block { user, on_behalf } => {
                let me = self.caller(on_behalf)?;
                let other = Identity::parse(&user)?;
                if other == me {
                    return Err(ApiError::bad_request("you cannot block yourself"));
                }
                if !bans.block(&me, &other) {
                    return Err(ApiError::new(
                        ErrorCode::TooLarge,
                        format!(
                            "you block {} users already, the most one may; unblock one first",
                            crate::bans::MAX_BLOCKS_PER_USER
                        ),
                    ));
                }
                me
            }
            Request::Unblock { user, on_behalf } => {
                let me = self.caller(on_behalf)?;
                bans.unblock(&me, &Identity::parse(&user)?);
                me
            }
            Request::BlockedUsers { on_behalf } => self.caller(on_behalf)?,
            _ => return Err(misrouted()),
        };
        Ok(serde_json::json!({ "blocked": bans.blocked_by(&user) }))
    }

    /// Which of `users` a call from this identity would ring now. One who blocks the asker is
    /// never online to it, as a call to them would not ring.
    fn presence(&self, users: &[String]) -> Result<serde_json::Value, ApiError> {
        let me = self.caller(None)?;
        if users.is_empty() || users.len() > MAX_PRESENCE {
            return Err(ApiError::bad_request(format!(
                "\"users\" names 1 to {MAX_PRESENCE} identities"
            )));
        }
        let users = users
            .iter()
            .map(|u| Identity::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        let calls = &self.state.calls;
        let blocking = calls.blocking(&users, &me);
        let online: Vec<&Identity> = users
            .iter()
            .filter(|u| calls.online(u) && !blocking.contains(u))
            .collect();
        Ok(serde_json::json!({ "online": online }))
    }

    fn log_query(&mut self, id: Option<u64>, q: LogQuery, ctx: &mut Context<Self>) {
        let logs = self.state.calls.logs.query.clone();
        let unavailable = ApiError::new(ErrorCode::Internal, "the call log is unavailable; retry");
        let reply = self.reply_to(id, Some(unavailable), ctx);
        let fut = async move { logs.send(q).await };
        ctx.spawn(fut.into_actor(self).map(move |result, _, _| {
            let frame = match result {
                Ok(Ok(LogAnswer::Page(page))) => protocol::ok(
                    id,
                    json!({
                        "logs": page.logs,
                        "has_more": page.has_more,
                        "sync_time": page.sync_time_ms,
                        "next": page.next,
                    }),
                ),
                Ok(Ok(LogAnswer::Ongoing(rows))) => protocol::ok(id, json!({ "logs": rows })),
                Ok(Ok(LogAnswer::Deleted(n))) => protocol::ok(id, json!({ "deleted": n })),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "call log query failed");
                    protocol::error(id, &ApiError::from(e))
                }
                Err(_) => protocol::error(
                    id,
                    &ApiError::new(ErrorCode::Internal, "the call log is unavailable; retry"),
                ),
            };
            reply.send(frame);
        }));
    }
}

fn misrouted() -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        "request routed to the call engine by mistake",
    )
}
