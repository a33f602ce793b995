//! Who is calling, once admitted: nobody, a key, or an access token tied to its key, or to
//! its user and app.

use crate::auth::jwt::VerifiedToken;
use crate::policy::permissions::PermissionSet;
use crate::store::snapshot::KeyRef;
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
    pub(super) narrowed: Option<(PermissionSet, Arc<str>)>,
}

impl OAuthCaller {
    pub fn permissions(&self) -> &PermissionSet {
        self.narrowed
            .as_ref()
            .map_or(&self.token.scope, |(set, _)| set)
    }

    pub fn permissions_header(&self) -> &Arc<str> {
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

    /// Subject, client id and permissions, for the identity headers.
    pub fn identity(&self) -> Option<(&str, &str, &str)> {
        match self {
            Caller::Anonymous => None,
            Caller::ApiKey(key) => Some((&key.id, &key.client_id, key.permissions_header())),
            Caller::OAuth(oauth) => Some((
                &oauth.token.subject,
                &oauth.token.client_id,
                oauth.permissions_header(),
            )),
        }
    }
}
