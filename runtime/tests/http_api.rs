//! The HTTP surface: routes, status codes, error bodies, schemas, limits, the caller token,
//! keep-alive and graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mca_compiler::ir::{Format, Input, Ty};
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::Config;
use serde_json::{json, Value};

fn typed_action() -> mca_compiler::ir::Action {
    let mut a = action("typed");
    a.inputs = vec![
        Input {
            name: "phone".into(),
            ty: Ty::String {
                format: Some(Format::Phone),
            },
            default: None,
            description: Some("E.164".into()),
        },
        Input {
            name: "count".into(),
            ty: Ty::Int,
            default: Some(json!(1)),
            description: None,
        },
        Input {
            name: "mode".into(),
            ty: Ty::Enum {
                values: vec!["fast".into(), "slow".into()],
            },
            default: Some(json!("fast")),
            description: None,
        },
        Input {
            name: "note".into(),
            ty: optional(string()),
            default: None,
            description: None,
        },
    ];
    a.req().query = vec![
        mca_compiler::ir::Param {
            name: "phone".into(),
            value: input_ref("phone"),
        },
        mca_compiler::ir::Param {
            name: "count".into(),
            value: input_ref("count"),
        },
        mca_compiler::ir::Param {
            name: "mode".into(),
            value: input_ref("mode"),
        },
        mca_compiler::ir::Param {
            name: "note".into(),
            value: input_ref("note"),
        },
    ];
    a
}

async fn typed_server() -> (Stub, Running) {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let server = start(project(vec![typed_action()]), config(&stub.url())).await;
    (stub, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_is_422_naming_the_field_with_zero_upstream_requests() {
    let (stub, server) = typed_server().await;
    for (body, field) in [
        (json!({"phone": "0301234"}), "phone"),
        (json!({"phone": 4930123456u64}), "phone"),
        (json!({}), "phone"),
        (json!({"phone": "+4930123456", "count": "two"}), "count"),
        (json!({"phone": "+4930123456", "count": 1.5}), "count"),
        (json!({"phone": "+4930123456", "mode": "whenever"}), "mode"),
        (json!({"phone": "+4930123456", "note": 3}), "note"),
    ] {
        let (status, resp) = call(&server, "typed", body.clone(), None).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(resp["error"]["code"], "invalid_input", "{body}");
        assert_eq!(resp["error"]["field"], field, "{body}");
        assert!(resp["error"]["message"].as_str().unwrap().contains(field));
    }
    assert_eq!(stub.request_count(), 0);
    assert_eq!(stub.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn body_that_is_not_a_json_object_is_400() {
    let (stub, server) = typed_server().await;
    for body in ["[1,2]", "\"text\"", "{not json", "42"] {
        let resp = server
            .client
            .post(server.url("/actions/typed"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let json: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(json["error"]["code"], "invalid_body");
        assert!(json["error"]["message"].is_string());
    }
    assert_eq!(stub.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn defaults_are_applied_and_null_optional_query_parameters_left_out() {
    let (stub, server) = typed_server().await;
    let (status, body) = call(&server, "typed", json!({"phone": "+4930123456"}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        stub.requests()[0].path,
        "/thing?phone=%2B4930123456&count=1&mode=fast"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_action_is_404() {
    let (_stub, server) = typed_server().await;
    let (status, body) = call(&server, "nope", json!({}), None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "unknown_action");
    let resp = server
        .client
        .get(server.url("/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_methods_are_405() {
    let (_stub, server) = typed_server().await;
    let c = &server.client;
    assert_eq!(
        c.get(server.url("/actions/typed"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    assert_eq!(
        c.post(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    assert_eq!(
        c.get(server.url("/calls/x")).send().await.unwrap().status(),
        405
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_lists_descriptions_and_json_schemas() {
    let (_stub, server) = typed_server().await;
    let resp = server
        .client
        .get(server.url("/actions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let a = &body["actions"][0];
    assert_eq!(a["name"], "typed");
    assert_eq!(a["description"], "Test action typed");
    let inputs = &a["inputs"];
    assert_eq!(inputs["type"], "object");
    assert_eq!(inputs["required"], json!(["phone"]));
    assert_eq!(inputs["properties"]["phone"]["type"], "string");
    assert_eq!(inputs["properties"]["phone"]["description"], "E.164");
    assert!(inputs["properties"]["phone"]["pattern"].is_string());
    assert_eq!(inputs["properties"]["count"]["type"], "integer");
    assert_eq!(inputs["properties"]["count"]["default"], 1);
    assert_eq!(
        inputs["properties"]["mode"]["enum"],
        json!(["fast", "slow"])
    );
    assert_eq!(
        inputs["properties"]["note"]["anyOf"][1],
        json!({"type": "null"})
    );
    assert_eq!(a["outputs"]["properties"]["value"]["type"], "string");
    assert_eq!(a["timeout_ms"], 400);
    assert!(a.get("messages").is_none(), "no messages declared");
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_export_the_messages_spoken_while_waiting() {
    let mut a = action("a");
    a.messages = serde_json::from_value(json!({
        "start": "Let me check.",
        "delayed": {"after_ms": 1500, "text": "Still looking."}
    }))
    .unwrap();
    let server = start(project(vec![a]), config("http://127.0.0.1:1")).await;
    let resp = server
        .client
        .get(server.url("/actions"))
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        body["actions"][0]["messages"],
        json!({"start": "Let me check.", "delayed": {"after_ms": 1500, "text": "Still looking."}})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_200() {
    let (_stub, server) = typed_server().await;
    let resp = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_calls_by_outcome_latency_retries_and_cache() {
    let stub = Stub::start(vec![
        Reply::status(503),
        Reply::json(200, json!({"value": "v"})),
    ])
    .await
    .unwrap();
    let a = with_cache(
        with_retry(action("m"), 1, 5),
        mca_compiler::ir::CacheScope::Global,
        None,
    );
    let server = start(project(vec![a]), config(&stub.url())).await;
    call(&server, "m", json!({"id": "1"}), None).await;
    call(&server, "m", json!({"id": "1"}), None).await;
    call(&server, "m", json!({"id": 5}), None).await;
    let text = metrics_text(&server).await;
    for line in [
        "mca_action_calls_total{action=\"m\",outcome=\"ok\"} 2",
        "mca_action_calls_total{action=\"m\",outcome=\"invalid_input\"} 1",
        "mca_upstream_retries_total{action=\"m\"} 1",
        "mca_upstream_attempts_total{action=\"m\",result=\"5xx\"} 1",
        "mca_upstream_attempts_total{action=\"m\",result=\"2xx\"} 1",
        "mca_cache_hits_total{action=\"m\"} 1",
        "mca_cache_misses_total{action=\"m\"} 1",
        "mca_action_duration_seconds_count{action=\"m\"} 3",
        "mca_upstream_duration_seconds_count{action=\"m\"} 2",
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    assert!(
        text.contains("mca_action_duration_seconds_bucket{le=\"0.005\",action=\"m\"}")
            || text.contains("mca_action_duration_seconds_bucket{action=\"m\",le=\"0.005\"}")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_an_attempt_cut_by_the_deadline_as_a_timeout() {
    let stub = Stub::start(vec![Reply::Hang]).await.unwrap();
    let server = start(
        project(vec![with_timeout(action("h"), 150)]),
        config(&stub.url()),
    )
    .await;
    let (status, body) = call(&server, "h", json!({"id": "1"}), None).await;
    assert_eq!((status, body["reason"].as_str()), (200, Some("timeout")));
    let text = metrics_text(&server).await;
    for line in [
        "mca_upstream_attempts_total{action=\"h\",result=\"timeout\"} 1",
        "mca_upstream_duration_seconds_count{action=\"h\"} 1",
        "mca_action_calls_total{action=\"h\",outcome=\"fallback\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_body_over_the_limit_is_413() {
    let stub = Stub::start(vec![]).await.unwrap();
    let server = start(
        project(vec![action("a")]),
        Config {
            max_body_bytes: 100,
            ..config(&stub.url())
        },
    )
    .await;
    let big = json!({"id": "x".repeat(500)});
    let (status, body) = call(&server, "a", big, None).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "body_too_large");
    assert_eq!(stub.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn caller_token_is_required_when_configured() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let server = start(
        project(vec![action("a")]),
        Config {
            token: Some("caller-token-1".into()),
            ..config(&stub.url())
        },
    )
    .await;
    let c = &server.client;
    let url = server.url("/actions/a");
    let none = c.post(&url).body("{\"id\":\"1\"}").send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = c
        .post(&url)
        .bearer_auth("caller-token-2")
        .body("{\"id\":\"1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = c
        .post(&url)
        .bearer_auth("caller-token-1")
        .body("{\"id\":\"1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(
        c.get(server.url("/actions")).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        c.delete(server.url("/calls/x"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Probes and scrapers need no token.
    assert_eq!(
        c.get(server.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn listening_on_a_non_loopback_address_without_a_token_is_refused() {
    let runtime = std::sync::Arc::new(
        mca_runtime::Runtime::new(project(vec![action("a")]), config("http://127.0.0.1:1"))
            .unwrap(),
    );
    let server = mca_runtime::Server::bind(([0, 0, 0, 0], 0).into())
        .await
        .unwrap();
    let err = server
        .run(runtime, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(err, mca_runtime::ServeError::TokenRequired { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn call_headers_fill_call_id_and_from() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let mut a = action("a");
    a.req().headers.push(mca_compiler::ir::Param {
        name: "X-Caller".into(),
        value: mca_compiler::ir::Expr::Ref(r(mca_compiler::ir::Namespace::Call, "from")),
    });
    a.req().headers.push(mca_compiler::ir::Param {
        name: "X-Call".into(),
        value: mca_compiler::ir::Expr::Ref(r(mca_compiler::ir::Namespace::Call, "id")),
    });
    let server = start(project(vec![a]), config(&stub.url())).await;
    let resp = server
        .client
        .post(server.url("/actions/a"))
        .header("X-Call-Id", "call-9")
        .header("X-Call-From", "+4930111")
        .body("{\"id\":\"1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let req = &stub.requests()[0];
    assert_eq!(req.header("x-caller"), Some("+4930111"));
    assert_eq!(req.header("x-call"), Some("call-9"));
}

/// `request_read_timeout`: headers that never end close the connection, a body that never
/// ends gets `408`, both in time (and not before).
#[tokio::test(flavor = "multi_thread")]
async fn slow_requests_are_cut_at_the_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let mut config = config(&stub.url());
    config.request_read_timeout = Duration::from_millis(300);
    let server = start(project(vec![typed_action()]), config).await;
    let read_all = |mut s: tokio::net::TcpStream| async move {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("the server ends the exchange in time")
            .ok();
        buf
    };

    // Headers, then nothing: the connection is closed (twice: the timer serves again after a
    // request on a kept-alive connection).
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let answer = read_all(s).await;
    let took = start.elapsed();
    assert_eq!(
        answer
            .windows(15)
            .filter(|w| w == b"HTTP/1.1 200 OK")
            .count(),
        1,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");

    // A body shorter than announced: 408.
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /actions/typed HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"phone\"")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    let took = start.elapsed();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(stub.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let (_stub, server) = typed_server().await;
    for _ in 0..5 {
        let resp = server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // hyper-level check: one raw connection carries two requests.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(req).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while buf.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count() < 2 {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .expect("two answers in time")
            .unwrap();
        assert!(n > 0, "connection closed after {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Starts `calls` calls on connections of their own against a server with `worker_threads`,
/// shuts the server down while the upstream holds them, and checks each still gets its answer
/// and the listener is closed.
async fn check_shutdown_lets_in_flight_calls_finish(worker_threads: usize, calls: usize) {
    let stub = Stub::start(vec![
        Reply::json(200, json!({"value": "slow"})).delayed(Duration::from_millis(300))
    ])
    .await
    .unwrap();
    let server = start(
        project(vec![with_timeout(action("a"), 2000)]),
        Config {
            worker_threads,
            ..config(&stub.url())
        },
    )
    .await;
    let in_flight: Vec<_> = (0..calls)
        .map(|i| {
            let url = server.url("/actions/a");
            tokio::spawn(async move {
                // A client of its own: a connection of its own.
                let resp = client()
                    .post(url)
                    .body(json!({ "id": i.to_string() }).to_string())
                    .send()
                    .await
                    .unwrap();
                serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).unwrap()
            })
        })
        .collect();
    // Let the calls reach the upstream, then shut down while they wait.
    while stub.in_flight() < calls {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let addr = server.addr;
    let t = Instant::now();
    server.shutdown().await;
    for call in in_flight {
        let body = call.await.unwrap();
        assert_eq!(body["status"], "ok", "{body}");
        assert_eq!(body["output"]["value"], "slow");
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_lets_in_flight_calls_finish() {
    check_shutdown_lets_in_flight_calls_finish(0, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_lets_calls_in_flight_on_serving_threads_finish() {
    // Two connections: one on each thread.
    check_shutdown_lets_in_flight_calls_finish(2, 2).await;
}

/// The caller's object becomes the inputs: exactly the declared members, defaults for omitted
/// or null ones, null for omitted optional ones, integral numbers of ints as integers.
#[test]
fn inputs_keep_exactly_the_declared_members_with_defaults_and_ints_normalized() {
    let runtime =
        mca_runtime::Runtime::new(project(vec![typed_action()]), config("http://127.0.0.1:9"))
            .unwrap();
    let body =
        br#"{"extra": 1, "count": 3.0, "phone": "+4930123456", "mode": null, "x": {"y": 2}}"#;
    let inputs = mca_runtime::hooks::decode_inputs(&runtime, "typed", body).unwrap();
    assert_eq!(
        Value::Object(inputs),
        json!({"phone": "+4930123456", "count": 3, "mode": "fast", "note": null})
    );
    let inputs =
        mca_runtime::hooks::decode_inputs(&runtime, "typed", br#"{"phone": "+4930123456"}"#)
            .unwrap();
    assert_eq!(inputs.len(), 4);
    assert!(inputs["count"].is_i64());
}

/// Routes match whole paths: an escaped action name is decoded, a trailing slash is the same
/// path, and a longer path under a route is no route.
#[tokio::test(flavor = "multi_thread")]
async fn action_names_are_decoded_and_longer_paths_match_no_route() {
    let (stub, server) = typed_server().await;
    let (status, body) = call(&server, "t%79ped", json!({"phone": "+4930123456"}), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(&server, "typed/", json!({"phone": "+4930123456"}), None).await;
    assert_eq!(status, 200);
    for path in ["typed/extra", "typed/a/b", "typed/a/b/c/d/e"] {
        let (status, body) = call(&server, path, json!({"phone": "+4930123456"}), None).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    assert_eq!(stub.request_count(), 2);
}
