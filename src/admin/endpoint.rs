//! What an admin endpoint is: its method and path, who may call it, the query it takes,
//! its handler and its description. The table of them is in `endpoints.rs`.

use super::AdminState;
use crate::admin_access::Permission;
use axum::routing::MethodRouter;
use std::sync::Arc;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: signing in, and this API's description.
    Public,
    /// Any signed-in operator or valid token (`GET /me`, signing out).
    SignedIn,
    /// Callers holding this permission.
    Needs(Permission),
}

/// What the OpenAPI document says of an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    pub summary: &'static str,
    /// The request body's schema, in `components/schemas`.
    pub body: Option<&'static str>,
    /// The success status and its body's schema.
    pub ok: (u16, &'static str),
    /// Honours `Idempotency-Key`.
    pub idempotent: bool,
}

pub struct Endpoint {
    pub method: &'static str,
    /// Under `/admin/v1`, with `{id}` for path parameters.
    pub path: &'static str,
    pub access: Access,
    /// The query parameters it takes; any other is `400 invalid_request`.
    pub query: &'static [&'static str],
    pub handler: fn() -> MethodRouter<Arc<AdminState>>,
    pub doc: Doc,
}

impl Endpoint {
    /// The permission label of `tollgate_admin_requests_total` and `x-required-permission`.
    pub fn permission_label(&self) -> &'static str {
        match self.access {
            Access::Needs(permission) => permission.as_str(),
            Access::SignedIn => "signed_in",
            Access::Public => "none",
        }
    }
}
