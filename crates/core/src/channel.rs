//! Channel logic: membership, roles, moderation, events with a per-channel `seq`, throttled
//! audience counts and the empty-channel grace. A plain struct with injected time; the
//! server's channel actor feeds it messages and delivers what [`Channel::drain`] yields.

mod admin;
mod admission;
mod error;
mod lifecycle;
mod media;
mod moderation;
mod streams;
#[cfg(test)]
mod tests;

pub use streams::{recording_stopped, Playback, Recording, RecordingEnd};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use serde::Serialize;
use serde_json::Value;

use crate::ids::{ChannelId, Identity, ParticipantId};
use crate::protocol::{self, AudioMode, ChannelEvent, LeaveReason, MixPolicy, ParticipantInfo};
use crate::roles::{RoleName, RoleSpec, RoleTable};
pub use error::ChannelError;

/// A participant that is on stage in a channel, as the workers route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publisher {
    pub key: crate::peer::PeerKey,
    pub participant: ParticipantId,
    pub identity: Identity,
    pub muted: bool,
    /// Level in the mix, in thousandths (1000 unchanged, 0 silent, at most 2000).
    pub gain_permille: u16,
}

/// Per-channel settings, shared by every channel of a server.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub roles: Arc<RoleTable>,
    pub default_role: String,
    pub max_participants: usize,
    pub max_metadata_bytes: usize,
    pub empty_grace: Duration,
    pub count_interval: Duration,
    /// A new channel's mix policy.
    pub mix_policy: MixPolicy,
    /// Under `auto`, the channel mixes when more speakers than this are unmuted.
    pub mix_auto_above: usize,
}

/// Who receives a frame. Resolved against the membership by [`Channel::for_each_recipient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    One(ParticipantId),
    /// Everyone (`everyone`) or only members who see the full list, plus `also`, minus `except`.
    Group {
        everyone: bool,
        also: Option<ParticipantId>,
        except: Option<ParticipantId>,
    },
    Moderators,
    List(Vec<ParticipantId>),
}

impl Target {
    /// Every member.
    pub fn everyone() -> Self {
        Target::Group {
            everyone: true,
            also: None,
            except: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The reply to the request being handled, for its requester.
    Reply {
        to: ParticipantId,
        frame: ByteString,
    },
    Send {
        to: Target,
        frame: ByteString,
    },
    /// The participant is no longer a member; its session must forget this channel.
    Detach(ParticipantId),
    /// A member's media permissions changed (role change).
    Permissions {
        participant: ParticipantId,
        publish: bool,
        subscribe: bool,
    },
    /// A member was kicked: keep its identity out (until its token expires, or as the server
    /// configures; `token_expires_s` in unix seconds when known).
    Ban {
        identity: Identity,
        token_expires_s: Option<u64>,
    },
    /// A moderator let `identity` back in.
    Unban {
        identity: Identity,
    },
    /// A webhook for the channel (`kind`, `data`): its start and end, members joining,
    /// leaving and changing role, recordings and playbacks.
    Webhook {
        kind: &'static str,
        data: Value,
    },
    /// A member changed what it receives (`set_audio`): the media plane rebinds its slots.
    Audio {
        participant: ParticipantId,
        audio: AudioMode,
    },
    /// The number of members holding `role` changed by `delta` (the participants gauge).
    Members {
        role: RoleName,
        delta: i64,
    },
    /// The channel has ended; nothing follows.
    Close,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: ParticipantId,
    pub identity: Identity,
    pub name: Option<String>,
    pub role: RoleName,
    spec: RoleSpec,
    /// Roles the member's token allows it to take by itself.
    allowed_roles: Arc<[String]>,
    pub muted: bool,
    muted_by_moderator: bool,
    /// Publishing paused by the server: a host taken into a call from this channel.
    pub paused: Option<String>,
    /// A moderator's volume for this member in the mix, in thousandths.
    pub gain_permille: u16,
    /// What the member asked to receive: the mix, each speaker's stream, or the channel's way.
    pub audio: AudioMode,
    pub metadata: Option<Value>,
    pub joined_at: Instant,
    /// When the member's token expires (unix seconds): a kick keeps it out until then.
    pub token_expires_s: Option<u64>,
}

impl Member {
    fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            participant: self.id.clone(),
            identity: self.identity.clone(),
            name: self.name.clone(),
            role: self.role.clone(),
            muted: self.muted,
            metadata: self.metadata.clone(),
        }
    }

    fn may_take(&self, role: &str, default_role: &str) -> bool {
        crate::roles::role_allowed(&self.allowed_roles, role, default_role)
    }
}

/// A join as the channel sees it; the session has already checked the token's channel.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub request: Option<u64>,
    pub participant: ParticipantId,
    pub identity: Identity,
    pub name: Option<String>,
    pub role: Option<String>,
    pub allowed_roles: Arc<[String]>,
    pub metadata: Option<Value>,
    pub audio: AudioMode,
    /// When the joining token expires (unix seconds).
    pub token_expires_s: Option<u64>,
}

/// How a channel's speakers reach its members, for the media plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mixdown {
    /// The channel mixes: members in `auto` receive the mix.
    pub mixing: bool,
    /// The mixer runs (the channel mixes, or a member asked for the mix).
    pub mixer: bool,
    /// Speakers' own streams are forwarded (the channel forwards, or a member asked for them).
    pub forward: bool,
}

/// A summary for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelSummary {
    pub channel: ChannelId,
    pub participants: usize,
    pub hosts: usize,
    pub audience_count: usize,
    pub seq: u64,
    pub age_seconds: u64,
}

pub struct Channel {
    id: ChannelId,
    settings: ChannelSettings,
    created_at: Instant,
    seq: u64,
    members: HashMap<ParticipantId, Member>,
    by_identity: HashMap<Identity, ParticipantId>,
    /// Members that see every participant event.
    privileged: HashSet<ParticipantId>,
    role_counts: HashMap<RoleName, usize>,
    on_stage: usize,
    count: CountThrottle,
    empty_since: Option<Instant>,
    closed: bool,
    mix_policy: MixPolicy,
    /// Whether members were last told the channel mixes.
    announced_mixing: bool,
    recording: Option<Recording>,
    playback: Option<Playback>,
    outbox: Vec<Output>,
}

/// Audience counts go out at most once per interval, and only when they changed, so a
/// channel of N listeners costs O(N) per interval instead of O(N) per join.
#[derive(Debug)]
struct CountThrottle {
    interval: Duration,
    last_at: Option<Instant>,
    last_count: usize,
    epoch: Instant,
}

impl CountThrottle {
    /// When the next count may go out; `None` while the last one sent is still true.
    fn due(&self, count: usize) -> Option<Instant> {
        if count == self.last_count {
            return None;
        }
        Some(self.last_at.map_or(self.epoch, |at| at + self.interval))
    }
}

impl Channel {
    pub fn new(id: ChannelId, settings: ChannelSettings, now: Instant) -> Self {
        let count = CountThrottle {
            interval: settings.count_interval,
            last_at: None,
            last_count: 0,
            epoch: now,
        };
        Self {
            id,
            created_at: now,
            seq: 0,
            members: HashMap::new(),
            by_identity: HashMap::new(),
            privileged: HashSet::new(),
            role_counts: HashMap::new(),
            on_stage: 0,
            count,
            empty_since: Some(now),
            closed: false,
            mix_policy: settings.mix_policy,
            announced_mixing: settings.mix_policy == MixPolicy::Mix,
            recording: None,
            playback: None,
            settings,
            outbox: Vec::new(),
        }
    }

    pub fn id(&self) -> &ChannelId {
        &self.id
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn member(&self, id: &ParticipantId) -> Option<&Member> {
        self.members.get(id)
    }

    pub fn audience_count(&self) -> usize {
        self.members.len() - self.on_stage
    }

    /// Takes the outputs produced so far, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.outbox.drain(..)
    }

    /// Calls `f` for every member `target` names.
    pub fn for_each_recipient(&self, target: &Target, mut f: impl FnMut(&ParticipantId)) {
        match target {
            // Not checked against the membership: a member's last frames (its `left`, the
            // reply to its `leave`) are addressed after it was removed, before it is detached.
            Target::One(p) => f(p),
            Target::Group {
                everyone,
                also,
                except,
            } => {
                let skip = |p: &ParticipantId| except.as_ref() == Some(p);
                if *everyone {
                    self.members.keys().filter(|p| !skip(p)).for_each(&mut f);
                } else {
                    self.privileged.iter().filter(|p| !skip(p)).for_each(&mut f);
                    if let Some(a) = also {
                        if !skip(a) && !self.privileged.contains(a) && self.members.contains_key(a)
                        {
                            f(a)
                        }
                    }
                }
            }
            Target::Moderators => self
                .members
                .values()
                .filter(|m| m.spec.moderate)
                .for_each(|m| f(&m.id)),
            Target::List(list) => list
                .iter()
                .filter(|p| self.members.contains_key(*p))
                .for_each(f),
        }
    }

    /// When the actor must call [`Channel::tick`] next.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        if self.members.is_empty() {
            return self.empty_since.map(|t| t + self.settings.empty_grace);
        }
        self.count.due(self.audience_count())
    }

    /// Advances timers: throttled audience counts and the empty-channel grace.
    pub fn tick(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Some(since) = self.empty_since {
            if self.members.is_empty() && now >= since + self.settings.empty_grace {
                self.close(Value::from("empty"));
                return;
            }
        }
        if self.members.is_empty() {
            return;
        }
        let count = self.audience_count();
        if let Some(due) = self.count.due(count) {
            if now >= due {
                self.count.last_at = Some(now);
                self.count.last_count = count;
                self.emit(Target::everyone(), &ChannelEvent::AudienceCount { count });
            }
        }
    }

    pub fn join(&mut self, now: Instant, spec: JoinSpec) -> Result<(), ChannelError> {
        let (role_name, role_spec, replacing) = self.admit(&spec)?;

        if let Some(old) = replacing {
            self.remove(now, &old, LeaveReason::Replaced, None, true);
            // Targets resolve at delivery, when the new member is in: it must not hear of its
            // predecessor's departure before its own join reply.
            if let Some(Output::Send {
                to: Target::Group { except, .. },
                ..
            }) = self.outbox.last_mut()
            {
                *except = Some(spec.participant.clone());
            }
        }
        let member = Member {
            id: spec.participant.clone(),
            identity: spec.identity.clone(),
            name: spec.name,
            role: role_name,
            spec: role_spec,
            allowed_roles: spec.allowed_roles,
            muted: false,
            muted_by_moderator: false,
            paused: None,
            gain_permille: 1000,
            audio: spec.audio,
            metadata: spec.metadata,
            joined_at: now,
            token_expires_s: spec.token_expires_s,
        };
        let info = member.info();
        let on_stage = member.spec.publish;
        let sees_all = member.spec.list_participants;
        self.insert(member);
        if self.seq == 0 {
            self.webhook("channel_started", serde_json::json!({}));
        }
        self.emit(
            Target::Group {
                everyone: on_stage,
                also: None,
                except: Some(spec.participant.clone()),
            },
            &ChannelEvent::ParticipantJoined { info: info.clone() },
        );
        self.webhook(
            "participant_joined",
            serde_json::json!({"participant": info.participant, "identity": info.identity,
                "role": info.role, "channel_seq": self.seq}),
        );
        let reply = JoinReply {
            channel: &self.id,
            participant: &info.participant,
            role: &info.role,
            seq: self.seq,
            hosts: self
                .members
                .values()
                .filter(|m| m.spec.publish)
                .map(Member::info)
                .collect(),
            audience_count: self.audience_count(),
            participants: sees_all.then(|| self.members.values().map(Member::info).collect()),
            mix: self.mix_policy,
            mixing: self.mixing(),
            audio: spec.audio,
            recording: self.recording.as_ref().map(|r| r.file.as_str()),
        };
        let frame = protocol::ok(spec.request, &reply);
        self.outbox.push(Output::Reply {
            to: spec.participant,
            frame,
        });
        Ok(())
    }

    fn require_member(&self, id: &ParticipantId) -> Result<&Member, ChannelError> {
        self.members.get(id).ok_or_else(|| {
            ChannelError::not_found(format!(
                "participant '{id}' is not in channel '{}'",
                self.id
            ))
        })
    }

    fn insert(&mut self, member: Member) {
        if member.spec.list_participants {
            self.privileged.insert(member.id.clone());
        }
        if member.spec.publish {
            self.on_stage += 1;
        }
        *self.role_counts.entry(member.role.clone()).or_default() += 1;
        self.outbox.push(Output::Members {
            role: member.role.clone(),
            delta: 1,
        });
        self.by_identity
            .insert(member.identity.clone(), member.id.clone());
        self.empty_since = None;
        self.members.insert(member.id.clone(), member);
    }

    fn take(&mut self, id: &ParticipantId) -> Member {
        let member = self.members.remove(id).expect("caller checked membership");
        self.privileged.remove(id);
        if member.spec.publish {
            self.on_stage -= 1;
        }
        if let Some(n) = self.role_counts.get_mut(&member.role) {
            *n -= 1;
        }
        self.outbox.push(Output::Members {
            role: member.role.clone(),
            delta: -1,
        });
        if self.by_identity.get(&member.identity) == Some(id) {
            self.by_identity.remove(&member.identity);
        }
        member
    }

    /// Removes a member and tells the others. `tell_member` sends the removed member a `left`
    /// event carrying the same `seq`: one fact, seen from two sides.
    fn remove(
        &mut self,
        now: Instant,
        id: &ParticipantId,
        reason: LeaveReason,
        message: Option<String>,
        tell_member: bool,
    ) {
        let member = self.take(id);
        self.seq += 1;
        if tell_member {
            let frame = protocol::channel_event(
                &self.id,
                self.seq,
                &ChannelEvent::Left { reason, message },
            );
            self.outbox.push(Output::Send {
                to: Target::One(id.clone()),
                frame,
            });
        }
        self.outbox.push(Output::Detach(id.clone()));
        self.webhook(
            "participant_left",
            serde_json::json!({"participant": member.id, "identity": member.identity,
                "reason": reason, "channel_seq": self.seq}),
        );
        let frame = protocol::channel_event(
            &self.id,
            self.seq,
            &ChannelEvent::ParticipantLeft {
                participant: member.id,
                identity: member.identity,
                reason,
            },
        );
        self.outbox.push(Output::Send {
            to: Target::Group {
                everyone: member.spec.publish,
                also: None,
                except: None,
            },
            frame,
        });
        if self.members.is_empty() {
            self.empty_since = Some(now);
        }
    }

    fn emit(&mut self, to: Target, event: &ChannelEvent) {
        self.seq += 1;
        let frame = protocol::channel_event(&self.id, self.seq, event);
        self.outbox.push(Output::Send { to, frame });
    }

    fn reply_ok(&mut self, to: &ParticipantId, request: Option<u64>) {
        self.outbox.push(Output::Reply {
            to: to.clone(),
            frame: protocol::ok(request, ()),
        });
    }
}

#[derive(Serialize)]
struct JoinReply<'a> {
    channel: &'a ChannelId,
    participant: &'a ParticipantId,
    role: &'a RoleName,
    seq: u64,
    hosts: Vec<ParticipantInfo>,
    audience_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    participants: Option<Vec<ParticipantInfo>>,
    /// The channel's mix policy, and whether it mixes now (`mix_changed` follows changes).
    mix: MixPolicy,
    mixing: bool,
    /// What this member asked to receive (`set_audio` changes it).
    audio: AudioMode,
    /// The file the channel's mix is being recorded to, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    recording: Option<&'a str>,
}
