//! The data plane end to end: a real gateway process in front of a recording echo upstream.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn error_code(response: reqwest::Response) -> (u16, String, serde_json::Value) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, code, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_match_by_prefix_and_method_first_match_wins() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let http = client();

    let ok = http
        .get(gw.url("/v1/public/hello?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let echoed: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(echoed["path"], "/v1/public/hello");
    assert_eq!(echoed["query"], "x=1");

    // Any method on a route without `methods`.
    let put = http
        .put(gw.url("/v1/public/x"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    // Protected routes stay closed without a credential, with the challenge.
    let closed = http.get(gw.url("/v1/accounts")).send().await.unwrap();
    assert_eq!(
        closed.headers()["www-authenticate"].to_str().unwrap(),
        "Bearer realm=\"tollgate\""
    );
    let (status, code, body) = error_code(closed).await;
    assert_eq!((status, code.as_str()), (401, "missing_credentials"));
    assert!(body["error"]["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));

    // A method no route lists, and a prefix that only shares characters, are not found.
    let (status, code, _) =
        error_code(http.delete(gw.url("/v1/accounts")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "route_not_found"));
    let (status, code, _) =
        error_code(http.get(gw.url("/v1/publicity")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "route_not_found"));
    // Refused requests never reach the upstream.
    let seen: Vec<String> = up
        .recorder
        .requests()
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(seen, ["/v1/public/hello?x=1", "/v1/public/x"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_gets_forwarding_headers_and_never_spoofed_identity() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let response = client()
        .get(gw.url("/v1/public/headers"))
        .header("X-Tollgate-Subject", "key_admin")
        .header("x-tollgate-permissions", "accounts:write")
        .header("X-TOLLGATE-AUTH-METHOD", "api_key")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Request-Id", "client-chosen-id.42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "client-chosen-id.42");

    let requests = up.recorder.requests();
    let seen = requests.last().unwrap();
    assert_eq!(seen.header("x-tollgate-subject"), Vec::<&str>::new());
    assert_eq!(seen.header("x-tollgate-permissions"), Vec::<&str>::new());
    assert_eq!(seen.header("x-tollgate-auth-method"), ["anonymous"]);
    // The peer is not a trusted proxy, so its X-Forwarded-For claim is replaced.
    assert_eq!(seen.header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.header("x-request-id"), ["client-chosen-id.42"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_generated_when_absent_or_invalid() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let http = client();
    let generated = http.get(gw.url("/v1/public/a")).send().await.unwrap();
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let invalid = http
        .get(gw.url("/v1/public/a"))
        .header("X-Request-Id", "has spaces and {braces}")
        .send()
        .await
        .unwrap();
    let replaced = invalid.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(replaced, "has spaces and {braces}");
    assert_eq!(replaced.len(), 36);
    // Errors carry it too, in the header and the body.
    let refused = http
        .get(gw.url("/nowhere"))
        .header("X-Request-Id", "trace-1")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.headers()["x-request-id"], "trace-1");
    let (_, _, body) = error_code(refused).await;
    assert_eq!(body["error"]["request_id"], "trace-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_are_502_and_504_in_the_error_shape() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let http = client();

    let dead = http.get(gw.url("/dead/x")).send().await.unwrap();
    assert_eq!(dead.headers()["content-type"], "application/json");
    // The connection closes after a failed proxy attempt, and the answer says so.
    assert_eq!(dead.headers()["connection"], "close");
    let (status, code, body) = error_code(dead).await;
    assert_eq!((status, code.as_str()), (502, "upstream_unavailable"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("upstream"));

    let (status, code, _) =
        error_code(http.get(gw.url("/timeout/slow/2000")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (504, "upstream_timeout"));

    // A slow answer within the read timeout is fine.
    let slow = http.get(gw.url("/slow/200")).send().await.unwrap();
    assert_eq!(slow.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_are_normalised_before_routing_and_forwarded_normalised() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let sent = raw(
        gw.addr,
        b"GET /v1/private/../public/%61bc//d HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(sent.status, 200, "{sent:?}");
    assert_eq!(
        up.recorder.requests().last().unwrap().uri,
        "/v1/public/abc/d"
    );

    // `..` cannot climb out of a protected prefix into a public one, or the reverse.
    let sneaky = raw(
        gw.addr,
        b"GET /v1/public/../accounts HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(
        (sneaky.status, sneaky.code().as_str()),
        (401, "missing_credentials")
    );
    let broken = raw(gw.addr, b"GET /v1/public/%zz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (broken.status, broken.code().as_str()),
        (400, "invalid_request")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_traffic_by_route_method_and_status() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let before = gw.scrape();
    assert!(
        before.contains("tollgate_build_info{version=\""),
        "{before}"
    );
    let http = client();
    for _ in 0..3 {
        http.get(gw.url("/v1/public/m")).send().await.unwrap();
    }
    http.get(gw.url("/nowhere")).send().await.unwrap();
    http.get(gw.url("/dead/x")).send().await.unwrap();

    scrape_until(
        &gw,
        "tollgate_upstream_duration_seconds_count{upstream=\"echo\"}",
        3.0,
    );
    let after = scrape_until(
        &gw,
        "tollgate_requests_total{method=\"GET\",route=\"/dead\",status=\"502\"}",
        1.0,
    );
    assert_eq!(
        metric(
            &after,
            "tollgate_requests_total{method=\"GET\",route=\"public\",status=\"200\"}"
        ),
        3.0,
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            "tollgate_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "tollgate_requests_total{method=\"GET\",route=\"/dead\",status=\"502\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "tollgate_upstream_requests_total{status=\"200\",upstream=\"echo\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &after,
            "tollgate_upstream_requests_total{status=\"0\",upstream=\"dead\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "tollgate_request_duration_seconds_count{route=\"public\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &after,
            "tollgate_upstream_duration_seconds_count{upstream=\"echo\"}"
        ),
        3.0
    );
    // No raw path ever becomes a label.
    assert!(!after.contains("/v1/public/m"));
    assert!(!after.contains("nowhere"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let up = upstream();
    let mut gw = Gateway::start(&basic_config(&up));
    let url = gw.url("/slow/1500");
    let in_flight =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    // Signal once the gateway has taken the request, not before.
    let admitted = "tollgate_auth_decisions_total{method=\"anonymous\",outcome=\"allowed\"}";
    assert_eq!(metric(&scrape_until(&gw, admitted, 1.0), admitted), 1.0);
    let code =
        tokio::task::spawn_blocking(move || gw.signal_and_wait("TERM", Duration::from_secs(10)))
            .await
            .unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness_are_on_the_admin_listener() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    assert_eq!(http_get(gw.admin, "/healthz").unwrap().status, 200);
    assert_eq!(http_get(gw.admin, "/readyz").unwrap().status, 200);
    // Not on the data plane.
    assert_eq!(http_get(gw.addr, "/healthz").unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_round_robin_and_route_around_a_dead_target() {
    let (a, b) = (upstream(), upstream());
    let config = basic_config(&a).replace(
        &format!("  echo: {{ targets: [\"{}\"] }}", a.addr),
        &format!(
            "  echo: {{ targets: [\"{}\", \"{}\", \"127.0.0.1:1\"], connect_timeout: 500ms }}",
            a.addr, b.addr
        ),
    );
    assert!(config.contains("127.0.0.1:1\"], connect_timeout"));
    let gw = Gateway::start(&config);
    let http = client();
    let send = |count: usize| {
        let http = http.clone();
        let url = gw.url("/v1/public/spread");
        async move {
            for _ in 0..count {
                let response = http.get(&url).send().await.unwrap();
                assert_eq!(
                    response.status(),
                    200,
                    "a dead target is skipped, never shown"
                );
            }
        }
    };
    // Before the health check has marked the dead target, a refused connect moves on to
    // the next target; every request is answered and both live targets share the load.
    send(30).await;
    let (first_a, first_b) = (a.recorder.requests().len(), b.recorder.requests().len());
    assert_eq!(first_a + first_b, 30);
    assert!(first_a >= 8 && first_b >= 8, "{first_a} / {first_b}");
    // Once the health check has run, the dead target is no longer chosen: strict alternation.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    send(20).await;
    let (second_a, second_b) = (
        a.recorder.requests().len() - first_a,
        b.recorder.requests().len() - first_b,
    );
    assert_eq!((second_a, second_b), (10, 10));
}
