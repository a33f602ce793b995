//! The forward-auth listener (SPEC section 12): nginx `auth_request`, Traefik
//! `forwardAuth`, Caddy `forward_auth` and Envoy `ext_authz` ask it about a request they
//! proxy themselves. It reads the original request, asks the same checkpoint as the data
//! plane (one snapshot, one limiter, one set of usage counts, metrics and access log), and
//! answers with the same headers and refusals. It proxies nothing.

pub mod original;

use crate::checkpoint::{Checked, Checkpoint, Finished, Served};
use crate::clock;
use crate::denial::Denial;
use crate::gate::Decision;
use crate::policy::client_addr::client_ip;
use crate::reply::{self, text, Headers};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use http::{HeaderValue, Method, Request};
use ipnet::IpNet;
use original::{original, Endpoint};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

pub struct ForwardAuth {
    pub checkpoint: Arc<Checkpoint>,
    pub trusted_proxies: Vec<IpNet>,
}

/// Every path and method goes to [`answer`]: the endpoints are told apart by path.
pub fn router(state: Arc<ForwardAuth>) -> axum::Router {
    axum::Router::new().fallback(answer).with_state(state)
}

/// What one forward-auth request was about, for the log and the metrics.
struct Asked {
    method: Method,
    path: String,
    client_ip: IpAddr,
}

async fn answer(State(state): State<Arc<ForwardAuth>>, request: Request<Body>) -> Response {
    let started = Instant::now();
    let now = clock::now_ms();
    let headers = request.headers();
    let request_id = reply::request_id(headers.get("x-request-id").map(|v| v.as_bytes()));
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let forwarded_for = headers.get_all("x-forwarded-for");
    let client = client_ip(
        peer,
        forwarded_for.iter().map(|v| v.as_bytes()),
        &state.trusted_proxies,
    );
    let checkpoint = &state.checkpoint;
    let endpoint = Endpoint::of(request.uri());
    let read = match endpoint {
        None => Err(Denial::RouteNotFound),
        Some(endpoint) => original(headers, request.method(), endpoint),
    };
    let mut asked = Asked {
        method: request.method().clone(),
        path: request.uri().path().to_string(),
        client_ip: client,
    };
    let checked = match read {
        Err(denial) => checkpoint.refuse(denial, client, now).await,
        Ok(original) => {
            asked.method = original.method;
            asked.path = original.path;
            (checkpoint)
                .judge(&asked.method, &asked.path, headers, client, None, now)
                .await
        }
    };
    let nginx = endpoint == Some(Endpoint::Nginx);
    let response = respond(&checked, &request_id, nginx);
    let answer = &checked.answer;
    checkpoint.finished(&Finished {
        request_id: &request_id,
        served: answer.route.map_or(Served::Unmatched, Served::Route),
        method: &asked.method,
        path: &asked.path,
        status: answer.denial().map_or(200, Denial::status),
        caller: answer.caller.as_ref(),
        key_id: answer.key.as_ref().map(|key| &key.id),
        outcome: answer.denial().map_or("allowed", Denial::code),
        client_ip: asked.client_ip,
        upstream: None,
        started,
        auth_time: checked.auth_time,
    });
    response
}

const IDENTITY: [&str; 5] = [
    "x-tollgate-subject",
    "x-tollgate-client-id",
    "x-tollgate-permissions",
    "x-tollgate-environment",
    "x-tollgate-owner-id",
];

/// An allowed request: `200`, no body, and the headers the proxy copies upstream. A
/// refusal: exactly the data plane's, or for nginx (which passes only 2xx, 401 and 403)
/// 401 or 403 with the real answer in `X-Tollgate-*` headers.
fn respond(checked: &Checked<'_>, request_id: &str, nginx: bool) -> Response {
    let answer = &checked.answer;
    let limits = Some(&checked.limits);
    let (status, mut headers, body): (u16, Headers, Body) = match &answer.decision {
        Decision::Forward => {
            let mut headers = reply::identity(answer.caller.as_ref());
            // Every identity header is always there, empty for an anonymous caller: a
            // proxy that copies a fixed list copies nothing stale (Caddy 2.6 would copy a
            // missing one as its placeholder text).
            for name in IDENTITY {
                if !headers.iter().any(|(present, _)| *present == name) {
                    headers.push((name, HeaderValue::from_static("")));
                }
            }
            headers.extend(reply::limit(limits));
            headers.extend(reply::deprecation(answer.grace.as_ref()));
            headers.push(("x-request-id", text(request_id)));
            headers.push(("cache-control", HeaderValue::from_static("no-store")));
            (200, headers, Body::empty())
        }
        Decision::Refuse(denial) => {
            let refusal = reply::refusal(denial, request_id, limits, answer.grace.as_ref());
            let mut headers = refusal.headers;
            let status = match (nginx, refusal.status) {
                (false, status) | (true, status @ (401 | 403)) => status,
                (true, _) => 403,
            };
            if nginx {
                headers.push(("x-tollgate-status", HeaderValue::from(refusal.status)));
                headers.push((
                    "x-tollgate-error-code",
                    HeaderValue::from_static(denial.code()),
                ));
                headers.push(("x-tollgate-error-message", text(&json_escaped(denial))));
            }
            (status, headers, Body::from(refusal.body))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    for (name, value) in headers.drain(..) {
        response.headers_mut().append(name, value);
    }
    response
}

/// The message as it stands inside the JSON body's string, so a proxy that cannot escape
/// (nginx) can write the same body from it.
fn json_escaped(denial: &Denial) -> String {
    let quoted = serde_json::Value::String(denial.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}
