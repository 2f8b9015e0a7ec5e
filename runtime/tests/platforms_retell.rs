//! `POST /retell/{action}`: Retell's documented custom-function body (`{name, call, args}`) and
//! args at the root, `X-Retell-Signature` signed, tampered, replayed and unsigned.

mod common;
mod platforms_common;

use common::*;
use mca_runtime::platforms::auth::sign_retell;
use mca_runtime::platforms::InboundAuth;
use mca_runtime::stub::{Reply, Stub};
use platforms_common::*;
use serde_json::json;

const KEY: &str = "key_0123456789abcdef";

async fn retell_server(key: Option<&str>) -> (Stub, Running) {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "cloudy"}))])
        .await
        .unwrap();
    let mut cfg = config(&stub.url()).route("*", stub.addr());
    cfg.inbound = InboundAuth {
        retell_api_key: key.map(str::to_string),
        ..InboundAuth::default()
    };
    let server = start(project(vec![weather()]), cfg).await;
    (stub, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_body_signed_by_retell_runs_with_the_call() {
    let (stub, server) = retell_server(Some(KEY)).await;
    let body = fixture("retell_custom_function.json");
    let sig = sign_retell(KEY, body.as_bytes(), now_ms());
    let (status, answer) = post(
        &server,
        "/retell/get_weather",
        body,
        &[("x-retell-signature", &sig)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], json!("Weather in New York: cloudy."));
    assert_eq!(answer["status"], json!("ok"));
    assert_eq!(answer["output"], json!({"value": "cloudy"}));
    let sent = stub.requests();
    assert_eq!(
        sent[0].header("x-upstream-call-id"),
        Some("Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6")
    );
    assert_eq!(sent[0].header("x-upstream-call-from"), Some("+12137771234"));
}

#[tokio::test(flavor = "multi_thread")]
async fn args_at_the_root() {
    let (_stub, server) = retell_server(None).await;
    let (status, answer) = post(
        &server,
        "/retell/get_weather",
        json!({"location": "Boston"}).to_string(),
        &[("x-call-id", "hdr-call")],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], json!("Weather in Boston: cloudy."));
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_replayed_and_unsigned_requests_are_refused_before_running() {
    let (stub, server) = retell_server(Some(KEY)).await;
    let body = fixture("retell_custom_function.json");
    let sig = sign_retell(KEY, body.as_bytes(), now_ms());

    let tampered = body.replace("New York", "Newark");
    let (status, answer) = post(
        &server,
        "/retell/get_weather",
        tampered,
        &[("x-retell-signature", &sig)],
    )
    .await;
    assert_eq!(status, 401, "tampered: {answer}");
    assert_eq!(answer["error"]["code"], json!("unauthorized"));

    let stale = sign_retell(KEY, body.as_bytes(), now_ms() - 5 * 60 * 1000 - 5000);
    let (status, _) = post(
        &server,
        "/retell/get_weather",
        body.clone(),
        &[("x-retell-signature", &stale)],
    )
    .await;
    assert_eq!(status, 401, "replayed after the 5-minute window");

    let future = sign_retell(KEY, body.as_bytes(), now_ms() + 5 * 60 * 1000 + 5000);
    let (status, _) = post(
        &server,
        "/retell/get_weather",
        body.clone(),
        &[("x-retell-signature", &future)],
    )
    .await;
    assert_eq!(status, 401, "stamped too far ahead");

    let other_key = sign_retell("key_other", body.as_bytes(), now_ms());
    let (status, _) = post(
        &server,
        "/retell/get_weather",
        body.clone(),
        &[("x-retell-signature", &other_key)],
    )
    .await;
    assert_eq!(status, 401, "signed with another key");

    let (status, _) = post(&server, "/retell/get_weather", body.clone(), &[]).await;
    assert_eq!(status, 401, "unsigned");
    assert_eq!(stub.request_count(), 0, "no refused request ran");

    let (status, _) = post(
        &server,
        "/retell/get_weather",
        body,
        &[("x-retell-signature", &sig)],
    )
    .await;
    assert_eq!(status, 200, "the genuine request still runs");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_arguments_are_a_200_with_the_error_for_the_model() {
    let (stub, server) = retell_server(None).await;
    let body = json!({"name": "get_weather", "call": {"call_id": "c"}, "args": {}}).to_string();
    let (status, answer) = post(&server, "/retell/get_weather", body, &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["error"]["code"], json!("invalid_input"));
    assert!(
        answer["result"].as_str().unwrap().contains("location"),
        "{answer}"
    );
    let (status, _) = post(&server, "/retell/nope", "{}", &[]).await;
    assert_eq!(status, 404);
    let (status, _) = post(&server, "/retell/get_weather", "{oops", &[]).await;
    assert_eq!(status, 400);
    assert_eq!(stub.request_count(), 0);
}
