//! `POST /vapi`: Vapi's documented `tool-calls` payloads, concurrency and order, errors, the
//! secret header and the HMAC credential. Upstream requests go to the stub only.

mod common;
mod platforms_common;

use std::time::{Duration, Instant};

use common::*;
use mca_runtime::platforms::auth::sign_vapi_hmac;
use mca_runtime::platforms::{HmacScheme, InboundAuth};
use mca_runtime::stub::{Reply, Stub};
use platforms_common::*;
use serde_json::{json, Value};

async fn weather_server(inbound: InboundAuth) -> (Stub, Running) {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "sunny"}))])
        .await
        .unwrap();
    let mut cfg = config(&stub.url()).route("*", stub.addr());
    cfg.inbound = inbound;
    let server = start(project(vec![weather()]), cfg).await;
    (stub, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_tool_calls_payload_is_answered_with_results() {
    let (stub, server) = weather_server(InboundAuth::default()).await;
    let (status, body) = post(&server, "/vapi", fixture("vapi_tool_calls.json"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"results": [{
            "toolCallId": "toolu_01DTPAzUm5Gk3zxrpJ969oMF",
            "name": "get_weather",
            "result": "Weather in San Francisco: sunny."
        }]})
    );
    let sent = stub.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("x-upstream-call-id"), Some("call-uuid"));
}

#[tokio::test(flavor = "multi_thread")]
async fn arguments_as_a_json_string_and_the_customer_number_fill_the_call() {
    let (stub, server) = weather_server(InboundAuth::default()).await;
    let (status, body) = post(&server, "/vapi", fixture("vapi_tool_calls_phone.json"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][0],
        json!({"toolCallId": "tool_abc123def456", "name": "get_weather", "result": "Weather in Amsterdam: sunny."})
    );
    let sent = stub.requests();
    assert_eq!(
        sent[0].header("x-upstream-call-id"),
        Some("5c4d030f-43e3-4e65-899e-8148521e660f")
    );
    assert_eq!(sent[0].header("x-upstream-call-from"), Some("+31612345678"));
}

fn tool_calls(calls: Value) -> String {
    json!({"message": {"type": "tool-calls", "call": {"id": "c-1"}, "toolCallList": calls}})
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn several_calls_run_concurrently_and_are_answered_in_order() {
    let stub = Stub::start(vec![
        Reply::json(200, json!({"value": "sunny"})).delayed(Duration::from_millis(300))
    ])
    .await
    .unwrap();
    let cfg = config(&stub.url()).route("*", stub.addr());
    let server = start(project(vec![with_timeout(weather(), 2000)]), cfg).await;
    let cities = ["Berlin", "Paris", "Rome", "Oslo", "Lima"];
    let calls: Vec<Value> = cities
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"id": format!("t{i}"), "name": "get_weather", "arguments": {"location": c}}))
        .collect();
    let started = Instant::now();
    let (status, body) = post(&server, "/vapi", tool_calls(json!(calls)), &[]).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_millis(1200),
        "five 300 ms calls took {took:?}: not concurrent"
    );
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), cities.len());
    for (i, (r, city)) in results.iter().zip(cities).enumerate() {
        assert_eq!(r["toolCallId"], json!(format!("t{i}")));
        assert_eq!(r["result"], json!(format!("Weather in {city}: sunny.")));
    }
    assert_eq!(stub.request_count(), cities.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_errors_in_place_and_single_line() {
    let (stub, server) = weather_server(InboundAuth::default()).await;
    let calls = json!([
        {"id": "a", "name": "nope", "arguments": {}},
        {"id": "b", "name": "get_weather", "arguments": {}},
        {"id": "c", "name": "get_weather", "arguments": "{not json"},
        {"id": "d", "name": "get_weather", "arguments": {"location": "Kyiv"}}
    ]);
    let (status, body) = post(&server, "/vapi", tool_calls(calls), &[]).await;
    assert_eq!(status, 200, "{body}");
    let r = body["results"].as_array().expect("results");
    assert_eq!(r.len(), 4);
    assert!(r[0]["error"].as_str().unwrap().contains("nope"), "{}", r[0]);
    assert!(
        r[1]["error"].as_str().unwrap().contains("location"),
        "{}",
        r[1]
    );
    assert!(r[2]["error"].as_str().unwrap().contains("JSON"), "{}", r[2]);
    assert_eq!(r[3]["result"], json!("Weather in Kyiv: sunny."));
    for x in &r[..3] {
        assert!(x.get("result").is_none(), "{x}");
        assert!(!x["error"].as_str().unwrap().contains('\n'));
    }
    assert_eq!(
        stub.request_count(),
        1,
        "only the valid call reaches the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fallback_is_a_result_and_other_messages_are_acknowledged() {
    let stub = Stub::start(vec![Reply::status(503)]).await.unwrap();
    let cfg = config(&stub.url()).route("*", stub.addr());
    let server = start(project(vec![weather()]), cfg).await;
    let calls = json!([{"id": "x", "name": "get_weather", "arguments": {"location": "Bern"}}]);
    let (_, body) = post(&server, "/vapi", tool_calls(calls), &[]).await;
    assert_eq!(body["results"][0]["result"], json!("Sorry."));
    let report = json!({"message": {"type": "end-of-call-report", "call": {"id": "c-1"}}});
    assert_eq!(
        post(&server, "/vapi", report.to_string(), &[]).await,
        (200, json!({}))
    );
    let (status, _) = post(&server, "/vapi", "[1, 2]", &[]).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_header_is_required_once_configured() {
    let inbound = InboundAuth {
        vapi_secret: Some("vapi-shared-secret".into()),
        ..InboundAuth::default()
    };
    let (stub, server) = weather_server(inbound).await;
    let body = fixture("vapi_tool_calls.json");
    let (status, answer) = post(&server, "/vapi", body.clone(), &[]).await;
    assert_eq!(status, 401, "{answer}");
    let (status, _) = post(
        &server,
        "/vapi",
        body.clone(),
        &[("x-vapi-secret", "wrong")],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(stub.request_count(), 0, "a refused request never runs");
    let (status, answer) = post(
        &server,
        "/vapi",
        body,
        &[("x-vapi-secret", "vapi-shared-secret")],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn hmac_signed_requests_verify_and_tampered_or_replayed_ones_do_not() {
    let inbound = InboundAuth {
        vapi_hmac: Some(HmacScheme::new("hmac-key")),
        ..InboundAuth::default()
    };
    let (stub, server) = weather_server(inbound).await;
    let body = fixture("vapi_tool_calls.json");
    let now = (now_ms() / 1000).to_string();
    let sig = sign_vapi_hmac("hmac-key", body.as_bytes(), &now);

    let tampered = body.replace("San Francisco", "Sacramento");
    let (status, _) = post(
        &server,
        "/vapi",
        tampered,
        &[("x-signature", &sig), ("x-timestamp", &now)],
    )
    .await;
    assert_eq!(status, 401, "tampered body");

    let old = ((now_ms() - 6 * 60 * 1000) / 1000).to_string();
    let old_sig = sign_vapi_hmac("hmac-key", body.as_bytes(), &old);
    let (status, _) = post(
        &server,
        "/vapi",
        body.clone(),
        &[("x-signature", &old_sig), ("x-timestamp", &old)],
    )
    .await;
    assert_eq!(status, 401, "replayed outside the window");

    let (status, _) = post(&server, "/vapi", body.clone(), &[]).await;
    assert_eq!(status, 401, "unsigned");
    assert_eq!(stub.request_count(), 0, "nothing ran");

    let (status, answer) = post(
        &server,
        "/vapi",
        body,
        &[("x-signature", &sig), ("x-timestamp", &now)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bearer_token_also_opens_vapi() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "sunny"}))])
        .await
        .unwrap();
    let mut cfg = config(&stub.url()).route("*", stub.addr());
    cfg.token = Some("tok".into());
    let server = start(project(vec![weather()]), cfg).await;
    let body = fixture("vapi_tool_calls.json");
    assert_eq!(post(&server, "/vapi", body.clone(), &[]).await.0, 401);
    let (status, _) = post(&server, "/vapi", body, &[("authorization", "Bearer tok")]).await;
    assert_eq!(status, 200);
}
