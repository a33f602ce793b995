//! Authentication against the snapshot: a key by format, environment and digest; a
//! verified token by its expiry and what it was issued for (key, user, app, grant).

use super::caller::OAuthCaller;
use super::{Gate, Refusal};
use crate::auth::api_key::{self, KeyFormatError};
use crate::auth::jwt::{Issuer, VerifiedToken, LEEWAY_MS};
use crate::denial::Denial;
use crate::policy::permissions::Catalog;
use crate::store::snapshot::{Grace, KeyEntry, KeyRef, Snapshot};
use std::sync::Arc;

impl Gate<'_> {
    /// Format and checksum first (no lookup for garbage), then the digest in the snapshot.
    /// The grace window comes back when the key's previous secret was presented.
    pub(super) fn authenticate_key(
        &self,
        key: &[u8],
        now: i64,
    ) -> Result<(KeyRef, Option<Grace>), Refusal> {
        match api_key::check_format(key, self.key_prefix, self.environments) {
            Ok(()) => {}
            Err(KeyFormatError::Malformed) => return Err((Denial::InvalidApiKey, None)),
            Err(KeyFormatError::WrongEnvironment) => return Err((Denial::WrongEnvironment, None)),
        }
        let digest = api_key::digest(key);
        match self.snapshot.by_digest(&digest) {
            None if self.stale => Err((Denial::StoreUnavailable, None)),
            None => Err((Denial::InvalidApiKey, None)),
            Some(KeyEntry::Retired { key_id }) => {
                Err((Denial::KeyRevoked, self.snapshot.by_short_id(key_id)))
            }
            Some(KeyEntry::Secret { credential, grace }) => {
                if credential.revoked || grace.is_some_and(|grace| now >= grace.until) {
                    return Err((Denial::KeyRevoked, Some(credential)));
                }
                if credential
                    .expires_at()
                    .is_some_and(|expires| now >= expires)
                {
                    return Err((Denial::KeyExpired, Some(credential)));
                }
                Ok((credential, grace))
            }
        }
    }

    /// See [`resolve_token`].
    pub(super) fn resolve_token(
        &self,
        token: &Arc<VerifiedToken>,
        now: i64,
    ) -> Result<OAuthCaller, Refusal> {
        resolve_token(self.snapshot, self.catalog, token, now)
    }
}

/// Ties a verified token to what it was issued for, as the snapshot has it now: a
/// revoked or rotated key, a disabled user, a deleted app or a revoked grant ends it.
/// Token introspection asks the same question.
pub fn resolve_token(
    snapshot: &Snapshot,
    catalog: &Catalog,
    token: &Arc<VerifiedToken>,
    now: i64,
) -> Result<OAuthCaller, Refusal> {
    {
        if now >= token.expires_at.saturating_add(LEEWAY_MS) {
            return Err((Denial::TokenExpired, None));
        }
        let invalid = |credential: Option<KeyRef>| (Denial::InvalidToken, credential);
        let (credential, allowed) = match &token.issuer {
            Issuer::External => (None, None),
            Issuer::Own { grant_id, .. } if snapshot.grant_revoked(grant_id) => {
                return Err(invalid(None))
            }
            Issuer::Own {
                key_version: Some(version),
                ..
            } => {
                let credential = snapshot
                    .by_id(&token.subject)
                    .ok_or_else(|| invalid(None))?;
                // The key's own refusal, as the key itself would get it: a token of a
                // revoked key, or one issued under a secret rotation replaced, is revoked.
                if credential.revoked || credential.secret_version() != *version {
                    return Err((Denial::KeyRevoked, Some(credential)));
                }
                if credential.expires_at().is_some_and(|at| now >= at) {
                    return Err((Denial::KeyExpired, Some(credential)));
                }
                let permissions = credential.permissions().clone();
                (Some(credential), Some(permissions))
            }
            Issuer::Own {
                key_version: None, ..
            } => {
                if snapshot.user_disabled(&token.subject) != Some(false) {
                    return Err(invalid(None));
                }
                let app = snapshot
                    .app(&token.client_id)
                    .filter(|app| !app.deleted)
                    .ok_or_else(|| invalid(None))?;
                (None, Some(Arc::new(app.scopes.clone())))
            }
        };
        let narrowed = allowed
            .filter(|allowed| allowed.first_missing(&token.scope).is_some())
            .map(|allowed| {
                let set = token.scope.intersect(&allowed);
                let header = catalog.header(&set);
                (set, header)
            });
        Ok(OAuthCaller {
            token: token.clone(),
            credential,
            narrowed,
        })
    }
}
