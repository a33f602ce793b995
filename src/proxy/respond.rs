//! The one place a refusal becomes bytes: the JSON error of SPEC section 4 with the request
//! id, the caller's limit headers and the grace headers, the outcome recorded for the
//! access log, and the connection closed when an unread body could follow.

use super::context::RequestCtx;
use crate::denial::Denial;
use crate::reply;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Writes the refusal. A request that may carry an unread body closes the connection,
/// so bytes of that body can never be read as a second request.
pub async fn refuse(session: &mut Session, ctx: &mut RequestCtx, denial: &Denial) -> Result<()> {
    ctx.admission.outcome = Some(denial.code());
    let refusal = reply::refusal(
        denial,
        &ctx.request_id,
        ctx.limits.as_ref(),
        ctx.admission.grace.as_ref(),
    );
    let mut response = ResponseHeader::build(refusal.status, Some(refusal.headers.len() + 1))?;
    for (name, value) in refusal.headers {
        response.insert_header(name, value)?;
    }
    if let Some(hsts) = &ctx.connection.hsts {
        response.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
    }
    if may_have_body(session) {
        session.set_keepalive(None);
    }
    session
        .write_response_header(Box::new(response), false)
        .await?;
    session.write_response_body(Some(refusal.body), true).await
}

/// The headers every answer that is not a refusal gets too: the limits, the grace, HSTS
/// on HTTPS and the request id.
pub fn annotate(response: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if let Some(hsts) = &ctx.connection.hsts {
        response.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
    }
    for (name, value) in reply::limit(ctx.limits.as_ref()) {
        response.insert_header(name, value)?;
    }
    for (name, value) in reply::deprecation(ctx.admission.grace.as_ref()) {
        response.insert_header(name, value)?;
    }
    response.insert_header("x-request-id", ctx.request_id.as_str())
}

fn may_have_body(session: &Session) -> bool {
    let headers = &session.req_header().headers;
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}
