//! The admin permissions of SPEC section 10 and the roles that bundle them. A leaf module:
//! the config checks custom roles against it, and the admin API enforces it.

use std::fmt;

/// One admin operation's permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    KeysRead,
    KeysWrite,
    KeysRotate,
    KeysRevoke,
    ClientsRead,
    ClientsWrite,
    UsersRead,
    UsersWrite,
    PolicyRead,
    PolicyWrite,
    AuditRead,
    AnalyticsRead,
    WebhooksRead,
    WebhooksWrite,
    OwnersRead,
    OwnersWrite,
    OperatorsRead,
    OperatorsWrite,
    TokensRead,
    TokensWrite,
}

impl Permission {
    pub const ALL: [Permission; 20] = [
        Permission::KeysRead,
        Permission::KeysWrite,
        Permission::KeysRotate,
        Permission::KeysRevoke,
        Permission::ClientsRead,
        Permission::ClientsWrite,
        Permission::UsersRead,
        Permission::UsersWrite,
        Permission::PolicyRead,
        Permission::PolicyWrite,
        Permission::AuditRead,
        Permission::AnalyticsRead,
        Permission::WebhooksRead,
        Permission::WebhooksWrite,
        Permission::OwnersRead,
        Permission::OwnersWrite,
        Permission::OperatorsRead,
        Permission::OperatorsWrite,
        Permission::TokensRead,
        Permission::TokensWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::KeysRead => "keys:read",
            Permission::KeysWrite => "keys:write",
            Permission::KeysRotate => "keys:rotate",
            Permission::KeysRevoke => "keys:revoke",
            Permission::ClientsRead => "clients:read",
            Permission::ClientsWrite => "clients:write",
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::PolicyRead => "policy:read",
            Permission::PolicyWrite => "policy:write",
            Permission::AuditRead => "audit:read",
            Permission::AnalyticsRead => "analytics:read",
            Permission::WebhooksRead => "webhooks:read",
            Permission::WebhooksWrite => "webhooks:write",
            Permission::OwnersRead => "owners:read",
            Permission::OwnersWrite => "owners:write",
            Permission::OperatorsRead => "operators:read",
            Permission::OperatorsWrite => "operators:write",
            Permission::TokensRead => "tokens:read",
            Permission::TokensWrite => "tokens:write",
        }
    }

    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == name)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    fn is_read(self) -> bool {
        self.as_str().ends_with(":read")
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of admin permissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u32);

impl Permissions {
    pub fn all() -> Permissions {
        Permissions::from_iter(Permission::ALL)
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// Every permission of `other` is in `self`.
    pub fn covers(self, other: Permissions) -> bool {
        other.0 & !self.0 == 0
    }

    /// The permissions of `other` that `self` lacks.
    pub fn missing(self, other: Permissions) -> Permissions {
        Permissions(other.0 & !self.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Permission::as_str).collect()
    }

    /// Parses names; the first unknown one is the error.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Permissions, String> {
        names
            .iter()
            .map(|name| Permission::parse(name.as_ref()).ok_or_else(|| name.as_ref().to_string()))
            .collect()
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(items: I) -> Self {
        Permissions(items.into_iter().fold(0, |set, p| set | p.bit()))
    }
}

/// The built-in roles: `owner`, `key_manager`, `viewer` and `auditor`.
pub const BUILT_IN_ROLES: [&str; 4] = ["owner", "key_manager", "viewer", "auditor"];

/// The permissions of a built-in role.
pub fn built_in_role(name: &str) -> Option<Permissions> {
    // The read permissions a viewer has: every one but the audit log, operators and tokens.
    let viewer = || {
        Permission::ALL.into_iter().filter(|p| {
            p.is_read()
                && !matches!(
                    p,
                    Permission::AuditRead | Permission::OperatorsRead | Permission::TokensRead
                )
        })
    };
    match name {
        "owner" => Some(Permissions::all()),
        "key_manager" => Some(
            viewer()
                .chain([
                    Permission::KeysWrite,
                    Permission::KeysRotate,
                    Permission::KeysRevoke,
                ])
                .collect(),
        ),
        "viewer" => Some(viewer().collect()),
        "auditor" => Some(viewer().chain([Permission::AuditRead]).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_there_are_twenty() {
        for permission in Permission::ALL {
            assert_eq!(Permission::parse(permission.as_str()), Some(permission));
        }
        assert_eq!(Permissions::all().iter().count(), 20);
        assert_eq!(Permission::parse("keys:delete"), None);
    }

    #[test]
    fn built_in_roles_are_as_the_spec_lists_them() {
        let role = |name| built_in_role(name).unwrap();
        assert_eq!(role("owner"), Permissions::all());
        let viewer = role("viewer");
        assert!(viewer.iter().all(Permission::is_read));
        for hidden in ["audit:read", "operators:read", "tokens:read"] {
            assert!(
                !viewer.contains(Permission::parse(hidden).unwrap()),
                "{hidden}"
            );
        }
        assert!(
            viewer.contains(Permission::KeysRead) && viewer.contains(Permission::AnalyticsRead)
        );
        let manager = role("key_manager");
        assert!(manager.covers(viewer));
        assert_eq!(
            manager.missing(Permissions::all()).iter().count(),
            20 - viewer.iter().count() - 3
        );
        assert!(
            manager.contains(Permission::KeysRevoke) && !manager.contains(Permission::PolicyWrite)
        );
        let auditor = role("auditor");
        assert_eq!(auditor.missing(viewer), Permissions::default());
        assert!(auditor.contains(Permission::AuditRead));
        assert!(!auditor.contains(Permission::KeysWrite));
    }
}
