//! Who is calling, once admitted: nobody, a key, or an access token tied to its key, or to
//! its user and app.

use crate::auth::jwt::VerifiedToken;
use crate::policy::permissions::PermissionSet;
use crate::short_id::IdText;
use crate::store::snapshot::KeyRef;
use http::HeaderValue;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    ApiKey(KeyRef),
    OAuth(OAuthCaller),
}

/// A caller with an access token, once the token is tied to its key, or user and app.
#[derive(Debug, Clone)]
pub struct OAuthCaller {
    pub token: Arc<VerifiedToken>,
    /// The key a client-credentials token was issued to.
    pub credential: Option<KeyRef>,
    /// Set when the key's or app's permissions are now narrower than the token's scope.
    pub(super) narrowed: Option<(PermissionSet, HeaderValue)>,
}

impl OAuthCaller {
    pub fn permissions(&self) -> &PermissionSet {
        self.narrowed
            .as_ref()
            .map_or(&self.token.scope, |(set, _)| set)
    }

    pub fn permissions_header(&self) -> &HeaderValue {
        self.narrowed
            .as_ref()
            .map_or(&self.token.scope_header, |(_, header)| header)
    }
}

impl Caller {
    pub fn method(&self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::ApiKey(_) => "api_key",
            Caller::OAuth(_) => "oauth",
        }
    }

    /// The key whose usage this request counts against, if any.
    pub fn key(&self) -> Option<&KeyRef> {
        match self {
            Caller::Anonymous => None,
            Caller::ApiKey(credential) => Some(credential),
            Caller::OAuth(oauth) => oauth.credential.as_ref(),
        }
    }

    /// The environment of the caller's key, if it has one.
    pub fn environment(&self) -> Option<crate::config::Environment> {
        self.key().map(|key| key.environment)
    }

    /// Subject, client id and permissions, for the identity headers.
    pub fn identity(&self) -> Option<Identity<'_>> {
        match self {
            Caller::Anonymous => None,
            Caller::ApiKey(key) => Some(Identity {
                subject: key.id.as_str(),
                client_id: key.client_id.as_str(),
                permissions: key.permissions_header(),
            }),
            Caller::OAuth(oauth) => Some(Identity {
                subject: IdText::Borrowed(&oauth.token.subject),
                client_id: IdText::Borrowed(&oauth.token.client_id),
                permissions: oauth.permissions_header(),
            }),
        }
    }
}

/// Who a caller is, as the identity headers say it. The permissions' value is made once per
/// permission set (or token), not per request.
pub struct Identity<'a> {
    pub subject: IdText<'a>,
    pub client_id: IdText<'a>,
    pub permissions: &'a HeaderValue,
}
