//! Turns a [`Denial`] into the JSON error response of SPEC section 4.

use super::RequestCtx;
use crate::denial::{error_body, Denial};
use crate::store::snapshot::Grace;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Writes the refusal. A request that may carry an unread body closes the connection,
/// so bytes of that body can never be read as a second request.
pub async fn refuse(session: &mut Session, ctx: &RequestCtx, denial: &Denial) -> Result<()> {
    let body = Bytes::from(error_body(denial, &ctx.request_id));
    let mut response = ResponseHeader::build(denial.status(), Some(6))?;
    response.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    response.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    response.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    response.insert_header("x-request-id", ctx.request_id.as_str())?;
    if let Some((verdict, policy)) = &ctx.limits {
        for (name, value) in crate::policy::rate_limit::headers::headers(verdict, policy) {
            response.insert_header(name, value)?;
        }
    }
    if let Some(grace) = &ctx.grace {
        deprecation(&mut response, grace)?;
    }
    if denial.status() == 401 {
        let challenge = if denial.credential_refused() {
            "Bearer realm=\"tollgate\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"tollgate\""
        };
        response.insert_header(http::header::WWW_AUTHENTICATE, challenge)?;
    }
    if may_have_body(session) {
        session.set_keepalive(None);
    }
    session
        .write_response_header(Box::new(response), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// A request made with a key's previous secret, during its grace period: `Deprecation`
/// (RFC 9745) dates the rotation and `Sunset` (RFC 8594) the end of the grace, so an
/// integration can see that it must switch to the new secret.
pub fn deprecation(response: &mut ResponseHeader, grace: &Grace) -> Result<()> {
    response.insert_header("deprecation", format!("@{}", grace.since.div_euclid(1000)))?;
    response.insert_header("sunset", crate::clock::http_date(grace.until))?;
    Ok(())
}

fn may_have_body(session: &Session) -> bool {
    let headers = &session.req_header().headers;
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}
