//! The role table: role name → permissions, loaded from config and shared read-only.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ids::is_id_char;

/// What a role may do in a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleSpec {
    /// Send audio. Participants with this permission are "on stage": everyone hears about them.
    pub publish: bool,
    /// Receive the channel's audio.
    pub subscribe: bool,
    /// End the channel for everyone.
    pub stop: bool,
    /// Kick, mute others, change others' roles, receive role requests.
    pub moderate: bool,
    /// Receive every participant event and the full participant list.
    pub list_participants: bool,
    /// Send `message`s to the channel.
    pub send_messages: bool,
    /// A participant may take this role without a moderator (the token must still allow it).
    pub self_assign: bool,
    /// At most this many participants of this role per channel (0 = no limit).
    pub max_per_channel: usize,
}

impl RoleSpec {
    /// True when every permission of `self` is also held by `other`: taking such a role
    /// never gains anything, so it needs nobody's consent.
    pub fn is_subset_of(&self, other: &RoleSpec) -> bool {
        (!self.publish || other.publish)
            && (!self.subscribe || other.subscribe)
            && (!self.stop || other.stop)
            && (!self.moderate || other.moderate)
            && (!self.list_participants || other.list_participants)
            && (!self.send_messages || other.send_messages)
    }
}

/// Interned role name: cheap to clone into every participant.
pub type RoleName = Arc<str>;

#[derive(Debug, Clone)]
pub struct RoleTable {
    roles: BTreeMap<RoleName, RoleSpec>,
}

impl RoleTable {
    pub fn default_specs() -> BTreeMap<String, RoleSpec> {
        let mut roles = BTreeMap::new();
        roles.insert(
            "host".to_string(),
            RoleSpec {
                publish: true,
                subscribe: true,
                stop: true,
                moderate: true,
                list_participants: true,
                send_messages: true,
                self_assign: false,
                max_per_channel: 16,
            },
        );
        // What both sides of a call are in its private channel: they talk and hear, and
        // none of them can stop the channel or remove another; the call decides membership.
        roles.insert(
            "call".to_string(),
            RoleSpec {
                publish: true,
                subscribe: true,
                list_participants: true,
                send_messages: true,
                ..RoleSpec::default()
            },
        );
        roles.insert(
            "audience".to_string(),
            RoleSpec {
                subscribe: true,
                send_messages: true,
                self_assign: true,
                ..RoleSpec::default()
            },
        );
        roles
    }

    pub fn new(specs: BTreeMap<String, RoleSpec>) -> Self {
        Self {
            roles: specs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.roles.is_empty() {
            return Err("the role table is empty; define at least one [roles.NAME]".into());
        }
        for name in self.roles.keys() {
            if name.is_empty() || name.len() > 32 || !name.chars().all(is_id_char) {
                return Err(format!(
                    "role name '{name}' must be 1 to 32 characters of A-Z a-z 0-9 _ - . :"
                ));
            }
        }
        Ok(())
    }

    /// Looks a role up, returning the interned name so members share one allocation.
    pub fn get(&self, name: &str) -> Option<(&RoleName, &RoleSpec)> {
        self.roles.get_key_value(name)
    }

    pub fn names(&self) -> String {
        self.roles
            .keys()
            .map(|k| k.as_ref())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Default for RoleTable {
    fn default() -> Self {
        Self::new(Self::default_specs())
    }
}

/// The one rule for a token's `roles` claim: empty means the server's default role only,
/// `*` means any role.
pub fn role_allowed(roles: &[String], role: &str, default_role: &str) -> bool {
    if roles.is_empty() {
        role == default_role
    } else {
        roles.iter().any(|r| r == role || r == "*")
    }
}
