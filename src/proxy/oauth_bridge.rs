//! Hands the OAuth endpoints to the authorization server's axum router: the body is read
//! (at most 64 KiB, else 413), the answer written back with the request id and the
//! caller's rate-limit headers.

use super::context::RequestCtx;
use super::respond;
use crate::denial::Denial;
use crate::oauth::{ClientIp, MAX_BODY};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tower::ServiceExt;

pub async fn serve(
    session: &mut Session,
    ctx: &mut RequestCtx,
    router: &axum::Router,
) -> Result<()> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY) {
        return respond::refuse(session, ctx, &Denial::BodyTooLarge).await;
    }
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            session.set_keepalive(None);
            return respond::refuse(session, ctx, &Denial::BodyTooLarge).await;
        }
    }
    let head = session.req_header();
    let mut request = http::Request::builder()
        .method(head.method.clone())
        .uri(head.uri.clone())
        .body(axum::body::Body::from(body))
        .map_err(|_| {
            Error::explain(
                ErrorType::InvalidHTTPHeader,
                "unusable request for the OAuth endpoints",
            )
        })?;
    *request.headers_mut() = head.headers.clone();
    request
        .extensions_mut()
        .insert(ClientIp(ctx.connection.client_ip));
    let response = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| Error::explain(ErrorType::InternalError, "OAuth response body"))?;
    let mut header = ResponseHeader::build(parts.status.as_u16(), Some(parts.headers.len() + 8))?;
    for (name, value) in &parts.headers {
        header.append_header(name.clone(), value.clone())?;
    }
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    respond::annotate(&mut header, ctx)?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}
