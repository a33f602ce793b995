//! SPEC section 9 over raw sockets: framing, head limits, the head deadline. Each refusal
//! is checked for its status and code, that the connection closes, and that the upstream
//! received nothing.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn refused(gw: &Gateway, up: &Upstream, request: &[u8], status: u16, code: &str) -> RawResponse {
    up.recorder.clear();
    let response = raw(gw.addr, request);
    assert_eq!(
        response.status,
        status,
        "{}\n{response:?}",
        String::from_utf8_lossy(request)
    );
    assert_eq!(response.code(), code);
    assert!(response.header("x-request-id").is_some());
    assert!(
        up.recorder.requests().is_empty(),
        "forwarded: {:?}",
        up.recorder.requests()
    );
    response
}

#[test]
fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let cases: &[&[u8]] = &[
        // CL.TE and TE.CL
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        // duplicated, listed and conflicting Content-Length
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nA",
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 1\r\n\r\nA",
        // obfuscated Transfer-Encoding
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for request in cases {
        let response = refused(&gw, &up, request, 400, "invalid_request");
        assert!(
            response.closed,
            "connection left open after {}",
            String::from_utf8_lossy(request)
        );
    }
}

#[test]
fn malformed_heads_get_400_with_a_code_and_never_reach_the_upstream() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let cases: &[&[u8]] = &[
        // bare LF, NUL, obs-fold, a space before the colon, a line without a colon
        b"GET /v1/public/a HTTP/1.1\nHost: t\n\n",
        b"GET /v1/public/a HTTP/1.1\r\nHost: t\r\nX-Nul: a\0b\r\n\r\n",
        b"GET /v1/public/a HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n  b\r\n\r\n",
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"GET /v1/public/a HTTP/1.1\r\nHost: t\r\nno colon\r\n\r\n",
        // obfuscated Transfer-Encoding, conflicting and malformed Content-Length
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nAB",
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\nA",
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\nA",
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nContent-Length: +1\r\n\r\nA",
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nContent-Length: 184467440737095516160\r\n\r\nA",
        b"POST /v1/public/a HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n\r\nA",
    ];
    for request in cases {
        let response = refused(&gw, &up, request, 400, "invalid_request");
        assert!(
            response.closed,
            "connection left open after {}",
            String::from_utf8_lossy(request)
        );
    }
}

#[test]
fn an_oversized_chunk_size_is_refused() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    for size in ["FFFFFFFFFFFFFFFFFFFFFFFF", "10000000000000000", "-1", "zz"] {
        up.recorder.clear();
        let request = format!(
            "POST /v1/public/chunks HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nAAAA\r\n0\r\n\r\n"
        );
        let response = raw(gw.addr, request.as_bytes());
        assert_eq!(response.status, 400, "{size}: {response:?}");
        assert_eq!(response.code(), "invalid_request", "{size}");
        assert!(response.closed, "{size}");
        // The upstream never receives a complete request.
        assert!(
            up.recorder.requests().is_empty(),
            "{size}: {:?}",
            up.recorder.requests()
        );
    }
}

#[test]
fn pipelined_heads_are_held_to_the_same_rules() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let mut too_many = String::from("GET /v1/public/second HTTP/1.1\r\nHost: t\r\n");
    for i in 0..100 {
        too_many.push_str(&format!("X-H{i}: v\r\n"));
    }
    too_many.push_str("\r\n");
    for (second, status, code) in [
        ("GET /v1/public/second HTTP/1.1\nHost: t\n\n".to_string(), 400, "invalid_request"),
        (too_many, 431, "headers_too_large"),
        (
            "POST /v1/public/second HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
            400,
            "invalid_request",
        ),
    ] {
        up.recorder.clear();
        let mut stream = TcpStream::connect(gw.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let both = format!("GET /v1/public/first HTTP/1.1\r\nHost: t\r\n\r\n{second}");
        stream.write_all(both.as_bytes()).unwrap();
        let responses = read_pipelined(&mut stream, 2);
        assert_eq!(responses.len(), 2, "{second:?}");
        assert_eq!(responses[0].status, 200);
        assert_eq!(
            (responses[1].status, responses[1].code().as_str()),
            (status, code),
            "{second:?}"
        );
        let seen: Vec<String> = up.recorder.requests().iter().map(|r| r.uri.clone()).collect();
        assert_eq!(seen, ["/v1/public/first"]);
    }
}

#[test]
fn a_refused_request_body_is_never_read_as_a_second_request() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let smuggled = b"GET /v1/public/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut request = format!(
        "POST /v1/accounts HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    request.extend_from_slice(smuggled);
    let response = refused(&gw, &up, &request, 401, "missing_credentials");
    assert!(response.closed);
    std::thread::sleep(Duration::from_millis(200));
    assert!(up.recorder.requests().is_empty());
}

#[test]
fn head_limits_answer_431_and_414() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));

    let mut many = b"GET /v1/public/a HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..100 {
        many.extend(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    let response = refused(&gw, &up, &many, 431, "headers_too_large");
    assert!(response.closed);

    // 100 headers in all is the limit, and allowed.
    let mut hundred = b"GET /v1/public/a HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..99 {
        hundred.extend(format!("X-H{i}: v\r\n").as_bytes());
    }
    hundred.extend(b"\r\n");
    let at_limit = raw(gw.addr, &hundred);
    // The gateway forwards it; the echo upstream (hyper, also limited to 100 headers)
    // then refuses it with its own bare 431, because the gateway added five headers.
    assert!(!at_limit.body.contains("headers_too_large"), "{at_limit:?}");
    let scrape = scrape_until(
        &gw,
        "tollgate_upstream_requests_total{status=\"431\",upstream=\"echo\"}",
        1.0,
    );
    assert_eq!(
        metric(
            &scrape,
            "tollgate_upstream_requests_total{status=\"431\",upstream=\"echo\"}"
        ),
        1.0,
        "{scrape}"
    );

    let mut large = b"GET /v1/public/a HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    large.extend(std::iter::repeat_n(b'a', 33 * 1024));
    large.extend(b"\r\n\r\n");
    refused(&gw, &up, &large, 431, "headers_too_large");

    // 100 KB of headers, as a client might send by mistake.
    let mut huge = b"GET /v1/public/a HTTP/1.1\r\nHost: t\r\nX-Huge: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100 * 1024));
    huge.extend(b"\r\n\r\n");
    refused(&gw, &up, &huge, 431, "headers_too_large");

    let mut long_uri = b"GET /v1/public/".to_vec();
    long_uri.extend(std::iter::repeat_n(b'a', 8 * 1024 + 10));
    long_uri.extend(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    refused(&gw, &up, &long_uri, 414, "uri_too_long");

    // Just under 8 KiB of request line is served.
    let mut fine = b"GET /v1/public/".to_vec();
    fine.extend(std::iter::repeat_n(b'a', 8 * 1024 - 40));
    fine.extend(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(raw(gw.addr, &fine).status, 200);
    // The process is still serving after all of it.
    assert_eq!(http_get(gw.addr, "/v1/public/ok").unwrap().status, 200);
}

#[test]
fn a_slowloris_head_is_cut_at_the_deadline_even_while_it_trickles() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /v1/public/a HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    // One header every 500 ms: each read alone is quick, the head never completes.
    while started.elapsed() < Duration::from_secs(12) {
        if stream.write_all(b"X-Drip: 1\r\n").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let response = read_response(&mut stream).expect("a 408 before the close");
    let elapsed = started.elapsed();
    assert_eq!(response.status, 408);
    assert_eq!(response.code(), "request_timeout");
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(13),
        "{elapsed:?}"
    );
    assert!(up.recorder.requests().is_empty());
}

#[test]
fn keep_alive_connections_guard_every_head_not_only_the_first() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up));
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /v1/public/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    // Idle time between requests is not head time.
    std::thread::sleep(Duration::from_millis(500));
    let mut second = b"GET /v1/public/2 HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..120 {
        second.extend(format!("X-H{i}: v\r\n").as_bytes());
    }
    second.extend(b"\r\n");
    stream.write_all(&second).unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 431);
    assert_eq!(up.recorder.requests().len(), 1);
}

#[test]
fn oauth_endpoints_check_framing_and_count_against_the_caller_address() {
    let up = upstream();
    let gw = Gateway::start(&basic_config(&up).replace(
        "permissions: [accounts:read, accounts:write]",
        "rate_limits: { tiers: { anonymous: { per_minute: 3, per_day: 1000 } } }\npermissions: [accounts:read, accounts:write]",
    ));
    // Ambiguous framing on the token endpoint is refused like anywhere else.
    let smuggled = raw(
        gw.addr,
        b"POST /oauth/token HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
    );
    assert_eq!(
        (smuggled.status, smuggled.code().as_str()),
        (400, "invalid_request")
    );
    assert!(smuggled.closed);
    // The OAuth endpoints count against the caller's address in the anonymous tier and
    // carry the rate-limit headers (counted inside one minute window).
    while tollgate::clock::now_ms().rem_euclid(60_000) > 50_000 {
        std::thread::sleep(Duration::from_millis(200));
    }
    for left in [2, 1, 0] {
        let response = http_get(gw.addr, "/.well-known/jwks.json").unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            response.header("x-ratelimit-remaining").as_deref(),
            Some(left.to_string().as_str())
        );
    }
    let limited = http_get(gw.addr, "/oauth/token").unwrap();
    assert_eq!(
        (limited.status, limited.code().as_str()),
        (429, "rate_limited")
    );
    assert!(limited.header("retry-after").is_some());
    assert!(up.recorder.requests().is_empty());
}
