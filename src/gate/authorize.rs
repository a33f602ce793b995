//! Authorization: the key's allowlist and client-certificate binding (for a key, or a
//! token issued to one), then every permission the route requires.

use crate::denial::Denial;
use crate::policy::permissions::{Catalog, PermissionSet};
use crate::routes::Route;
use crate::store::snapshot::Credential;
use std::net::IpAddr;
use std::sync::Arc;

pub fn authorize(
    catalog: &Catalog,
    credential: Option<&Credential>,
    permissions: &PermissionSet,
    route: &Route,
    client_ip: IpAddr,
    client_cert: Option<&[u8; 32]>,
) -> Result<(), Denial> {
    if credential.is_some_and(|credential| !credential.allowlist().allows(client_ip)) {
        return Err(Denial::IpNotAllowed);
    }
    // RFC 8705's idea applied to keys: a bound key works only over a connection whose
    // verified client certificate has that SHA-256.
    if let Some(bound) = credential.and_then(Credential::client_cert) {
        if client_cert != Some(bound) {
            return Err(Denial::ClientCertificateRequired);
        }
    }
    if let Some(bit) = permissions.first_missing(&route.require) {
        let missing = catalog
            .name_of(bit)
            .cloned()
            .unwrap_or_else(|| Arc::from("?"));
        return Err(Denial::InsufficientPermission { missing });
    }
    Ok(())
}
