//! Who may join, and as what: the checks a join passes before anything changes, and the
//! role table's limits.

use super::*;

impl Channel {
    /// The checks a join passes before anything changes: the role it gets, and the member
    /// of the same identity it replaces, if any.
    pub(super) fn admit(
        &self,
        spec: &JoinSpec,
    ) -> Result<(RoleName, RoleSpec, Option<ParticipantId>), ChannelError> {
        if self.closed {
            return Err(ChannelError::not_found(format!(
                "channel '{}' has ended; join again to start a new one",
                self.id
            )));
        }
        if self.members.contains_key(&spec.participant) {
            return Err(ChannelError::Conflict(format!(
                "you are already in channel '{}'",
                self.id
            )));
        }
        let role = spec
            .role
            .clone()
            .unwrap_or_else(|| self.settings.default_role.clone());
        let (role_name, role_spec) = self.lookup_role(&role)?;
        if !crate::roles::role_allowed(&spec.allowed_roles, &role, &self.settings.default_role) {
            return Err(ChannelError::forbidden(format!(
                "your token does not allow the role '{role}'; ask the app for a token that does"
            )));
        }
        if let Some(meta) = &spec.metadata {
            let size = meta.to_string().len();
            if size > self.settings.max_metadata_bytes {
                return Err(ChannelError::TooLarge(format!(
                    "metadata is {size} bytes; the limit is {}",
                    self.settings.max_metadata_bytes
                )));
            }
        }
        let replacing = self.by_identity.get(&spec.identity).cloned();
        let seats_freed = usize::from(replacing.is_some());
        if self.members.len() - seats_freed >= self.settings.max_participants {
            return Err(ChannelError::ChannelFull(format!(
                "channel '{}' is full ({} participants)",
                self.id, self.settings.max_participants
            )));
        }
        let freed_same_role = replacing
            .as_ref()
            .and_then(|p| self.members.get(p))
            .is_some_and(|m| m.role == role_name);
        self.check_role_capacity(&role_name, &role_spec, usize::from(freed_same_role))?;
        Ok((role_name, role_spec, replacing))
    }

    pub(super) fn lookup_role(&self, role: &str) -> Result<(RoleName, RoleSpec), ChannelError> {
        self.settings
            .roles
            .get(role)
            .map(|(n, s)| (n.clone(), s.clone()))
            .ok_or_else(|| {
                ChannelError::invalid(format!(
                    "unknown role '{}'; this server's roles are: {}",
                    role.chars().take(40).collect::<String>(),
                    self.settings.roles.names()
                ))
            })
    }

    pub(super) fn check_role_capacity(
        &self,
        name: &RoleName,
        spec: &RoleSpec,
        freed: usize,
    ) -> Result<(), ChannelError> {
        let current = self.role_counts.get(name).copied().unwrap_or(0) - freed;
        if spec.max_per_channel > 0 && current >= spec.max_per_channel {
            return Err(ChannelError::RoleFull(format!(
                "channel '{}' already has {} participants with the role '{name}'",
                self.id, spec.max_per_channel
            )));
        }
        Ok(())
    }
}
