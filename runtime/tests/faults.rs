//! Upstream faults over real HTTP: the runtime server and a stub upstream on loopback.
//! Each test asserts the outcome, the reason, the number of upstream requests and time bounds.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use mca_compiler::ir::{Expr, Method};
use mca_runtime::stub::{Reply, Stub};
use serde_json::json;

fn ok_reply() -> Reply {
    Reply::json(200, json!({"value": "fresh"}))
}

async fn setup(action: mca_compiler::ir::Action, replies: Vec<Reply>) -> (Stub, Running) {
    let stub = Stub::start(replies).await.unwrap();
    let server = start(project(vec![action]), config(&stub.url())).await;
    (stub, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn success_maps_outputs_and_renders_say() {
    let (stub, server) = setup(action("a"), vec![ok_reply()]).await;
    let (status, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["output"], json!({"value": "fresh"}));
    assert_eq!(body["say"], "Value fresh.");
    assert_eq!(body["cached"], false);
    assert!(body["duration_ms"].is_u64());
    assert!(body.get("reason").is_none());
    assert!(body.get("stale").is_none());
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_delayed_past_the_timeout_falls_back_within_timeout_plus_50ms() {
    let a = with_timeout(action("a"), 300);
    let (stub, server) = setup(a, vec![ok_reply().delayed(Duration::from_secs(3))]).await;
    let t = Instant::now();
    let (status, body) = call(&server, "a", json!({"id": "1"}), None).await;
    let took = t.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "timeout");
    assert_eq!(body["output"], json!({"value": "fallback"}));
    assert_eq!(body["say"], "Sorry.");
    assert!(took >= ms(300), "answered before the timeout: {took:?}");
    assert!(took < ms(350), "answered after timeout + 50 ms: {took:?}");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_that_hangs_forever_falls_back_within_timeout_plus_50ms_even_with_retries() {
    let a = with_retry(with_timeout(action("a"), 300), 3, 10);
    let (stub, server) = setup(a, vec![Reply::Hang]).await;
    let t = Instant::now();
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    let took = t.elapsed();
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "timeout");
    assert!(took < ms(350), "{took:?}");
    // Without per_try, the one attempt owns the whole deadline: no retry is started.
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_try_timeout_retries_a_hanging_attempt_and_succeeds() {
    let mut a = with_retry(with_timeout(action("a"), 1000), 2, 10);
    a.req().per_try_ms = Some(150);
    let (stub, server) = setup(a, vec![Reply::Hang, ok_reply()]).await;
    let t = Instant::now();
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(stub.request_count(), 2);
    assert!(t.elapsed() < ms(1000));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_503_then_success_is_retried_once() {
    let a = with_retry(action("a"), 2, 20);
    let (stub, server) = setup(a, vec![Reply::status(503), ok_reply()]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["output"]["value"], "fresh");
    assert_eq!(stub.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_503_is_retried_then_falls_back_with_upstream_status() {
    let a = with_retry(with_timeout(action("a"), 2000), 2, 20);
    let (stub, server) = setup(a, vec![Reply::status(503)]).await;
    let t = Instant::now();
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "upstream_status");
    assert_eq!(stub.request_count(), 3, "one attempt and two retries");
    // Backoff 20 ms then 40 ms (with jitter): well under the 2 s deadline.
    assert!(t.elapsed() < ms(1000), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn status_429_with_retry_after_that_fits_is_honoured() {
    let mut a = with_retry(with_timeout(action("a"), 2500), 1, 10);
    a.req().per_try_ms = Some(500);
    let (stub, server) = setup(
        a,
        vec![
            Reply::status(429).with_header("Retry-After", "1"),
            ok_reply(),
        ],
    )
    .await;
    let t = Instant::now();
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    let took = t.elapsed();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(stub.request_count(), 2);
    assert!(
        took >= ms(1000),
        "Retry-After of 1 s not honoured: {took:?}"
    );
    assert!(took < ms(2500), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_429_with_retry_after_past_the_deadline_falls_back_at_once() {
    let a = with_retry(with_timeout(action("a"), 500), 3, 10);
    let (stub, server) = setup(
        a,
        vec![
            Reply::status(429).with_header("Retry-After", "5"),
            ok_reply(),
        ],
    )
    .await;
    let t = Instant::now();
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "upstream_status");
    assert_eq!(
        stub.request_count(),
        1,
        "a retry that cannot fit is not started"
    );
    assert!(
        t.elapsed() < ms(300),
        "did not answer at once: {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_reset_is_retried() {
    let a = with_retry(action("a"), 2, 10);
    let (stub, server) = setup(a, vec![Reply::Reset, ok_reply()]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(stub.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_connection_reset_falls_back_with_connect() {
    let a = with_retry(action("a"), 1, 10);
    let (stub, server) = setup(a, vec![Reply::Reset]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "connect");
    assert_eq!(stub.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_falls_back_with_connect() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = start(
        project(vec![with_retry(action("a"), 1, 10)]),
        config(&format!("http://127.0.0.1:{port}")),
    )
    .await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "connect");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_json_falls_back_with_invalid_response_and_is_not_retried() {
    let a = with_retry(action("a"), 2, 10);
    let (stub, server) = setup(a, vec![Reply::raw(200, "{not json")]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "invalid_response");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_the_limit_falls_back_with_too_large() {
    let mut a = action("a");
    a.req().max_response_bytes = 1024;
    let big = json!({"value": "x".repeat(4096)});
    let (stub, server) = setup(a, vec![Reply::json(200, big)]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "too_large");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_body_over_the_limit_is_cut_while_streaming() {
    let mut a = with_timeout(action("a"), 2000);
    a.req().max_response_bytes = 1024;
    // No Content-Length: 100 chunks of 100 bytes, 1 ms apart; the cap is hit after 11.
    let drip = Reply::Drip {
        status: 200,
        chunk: Bytes::from(vec![b' '; 100]),
        chunks: 100,
        every: Duration::from_millis(1),
    };
    let (_stub, server) = setup(a, vec![drip]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["reason"], "too_large");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_drip_body_times_out_within_timeout_plus_50ms() {
    let a = with_timeout(action("a"), 300);
    let drip = Reply::Drip {
        status: 200,
        chunk: Bytes::from_static(b" "),
        chunks: 1000,
        every: Duration::from_millis(50),
    };
    let (stub, server) = setup(a, vec![drip]).await;
    let t = Instant::now();
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    let took = t.elapsed();
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "timeout");
    assert!(took < ms(350), "{took:?}");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn required_output_matching_nothing_falls_back_with_mapping() {
    let (_stub, server) = setup(action("a"), vec![Reply::json(200, json!({"other": 1}))]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "mapping");
}

#[tokio::test(flavor = "multi_thread")]
async fn output_of_the_wrong_type_falls_back_with_mapping() {
    let (_stub, server) = setup(action("a"), vec![Reply::json(200, json!({"value": 42}))]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["reason"], "mapping");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_4xx_is_not_retried_and_falls_back_with_upstream_status() {
    let a = with_retry(action("a"), 3, 10);
    let (stub, server) = setup(a, vec![Reply::status(400)]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["reason"], "upstream_status");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed() {
    let (stub, server) = setup(
        action("a"),
        vec![Reply::status(302).with_header("Location", "http://127.0.0.1:1/elsewhere")],
    )
    .await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["reason"], "upstream_status");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_status_block_answers_ok_with_its_outcome_after_retries() {
    let mut a = with_retry(action("a"), 1, 10);
    a.on_status.push(mca_compiler::ir::StatusHandler {
        statuses: vec![mca_compiler::ir::StatusRange { from: 404, to: 404 }],
        outcome: mca_compiler::ir::Outcome {
            values: vec![("value".into(), json!("missing"))],
            say: Some(template(vec![text("Not found.")])),
        },
    });
    let (stub, server) = setup(a, vec![Reply::json(404, json!({"error": "nope"}))]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["output"], json!({"value": "missing"}));
    assert_eq!(body["say"], "Not found.");
    assert!(body.get("reason").is_none());
    assert_eq!(stub.request_count(), 1, "404 is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn post_without_idempotency_key_is_never_retried() {
    let a = with_retry(post_action("a"), 3, 10);
    let (stub, server) = setup(a, vec![Reply::status(503), ok_reply()]).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "upstream_status");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn post_with_idempotency_key_is_retried_with_the_same_key() {
    let mut a = with_retry(post_action("a"), 1, 10);
    a.req().idempotency_key = Some(Expr::Template(template(vec![
        mca_compiler::ir::Part::Ref(r(mca_compiler::ir::Namespace::Call, "id")),
        text("-"),
        mca_compiler::ir::Part::Ref(r(mca_compiler::ir::Namespace::Input, "id")),
    ])));
    let (stub, server) = setup(a, vec![Reply::Reset, ok_reply()]).await;
    let (_, body) = call(&server, "a", json!({"id": "7"}), Some("call-1")).await;
    assert_eq!(body["status"], "ok", "{body}");
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        assert_eq!(req.method, "POST");
        assert_eq!(req.header("idempotency-key"), Some("call-1-7"));
        assert_eq!(req.json(), Some(json!({"id": "7"})));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_missing_its_call_id_makes_the_post_unretryable() {
    let mut a = with_retry(post_action("a"), 1, 10);
    a.req().idempotency_key = Some(Expr::Ref(r(mca_compiler::ir::Namespace::Call, "id")));
    let (stub, server) = setup(a, vec![Reply::status(503), ok_reply()]).await;
    let (_, body) = call(&server, "a", json!({"id": "7"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(stub.request_count(), 1);
    assert_eq!(stub.requests()[0].header("idempotency-key"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_post_is_retried() {
    let mut a = with_retry(post_action("a"), 1, 10);
    a.req().read_only = true;
    assert_eq!(a.req().method, Method::POST);
    let (stub, server) = setup(a, vec![Reply::status(502), ok_reply()]).await;
    let (_, body) = call(&server, "a", json!({"id": "7"}), None).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(stub.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn action_without_fallback_answers_502_with_the_reason() {
    let mut a = action("a");
    a.fallback = None;
    let (_stub, server) = setup(a, vec![Reply::status(500)]).await;
    let (status, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_status");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_concurrent_calls_to_a_hanging_upstream_all_fall_back_in_time() {
    let a = with_timeout(action("a"), 300);
    let (stub, server) = setup(a, vec![Reply::Hang]).await;
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let (_, body) = call(&server, "a", json!({ "id": i.to_string() }), None).await;
            (t.elapsed(), body)
        }));
    }
    for t in tasks {
        let (took, body) = t.await.unwrap();
        assert_eq!(body["reason"], "timeout");
        // The server's own clock holds the contract; the client (in this process, opening 20
        // connections at once on a 2-core machine) only checks that no call waited for another.
        assert!(body["duration_ms"].as_u64().unwrap() < 350, "{body}");
        assert!(took < ms(600), "{took:?}");
    }
    assert_eq!(stub.request_count(), 20);
}

/// A retry renders the request again (the first attempt sends the original, so no copy is
/// made for calls that need one attempt): it must be the same request, byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_request_repeats_the_first_exactly() {
    use mca_compiler::ir::{Body, JsonTemplate, Namespace, Param, Part};
    let mut a = with_retry(post_action("a"), 2, 10);
    a.req().idempotency_key = Some(Expr::Template(template(vec![
        Part::Ref(r(Namespace::Call, "id")),
        text("-"),
        Part::Ref(r(Namespace::Input, "id")),
    ])));
    a.req().query.push(Param {
        name: "q".into(),
        value: input_ref("id"),
    });
    a.req().headers.push(Param {
        name: "X-Id".into(),
        value: input_ref("id"),
    });
    a.req().headers.push(Param {
        name: "X-Fixed".into(),
        value: Expr::Literal(json!("fixed")),
    });
    a.req().body = Some(Body::Json {
        template: JsonTemplate::Object(vec![(
            "id".into(),
            JsonTemplate::Ref(r(Namespace::Input, "id")),
        )]),
    });
    let (stub, server) = setup(a, vec![Reply::status(503), Reply::Reset, ok_reply()]).await;
    let (_, body) = call(&server, "a", json!({"id": "7 &x"}), Some("call-1")).await;
    assert_eq!(body["status"], "ok", "{body}");
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 3);
    for req in &reqs[1..] {
        assert_eq!(req.method, reqs[0].method);
        assert_eq!(req.path, reqs[0].path);
        assert_eq!(req.headers, reqs[0].headers);
        assert_eq!(req.body, reqs[0].body);
    }
    assert_eq!(reqs[0].path, "/thing?q=7%20%26x");
    assert_eq!(reqs[0].header("idempotency-key"), Some("call-1-7 &x"));
    assert_eq!(reqs[0].header("x-fixed"), Some("fixed"));
}
