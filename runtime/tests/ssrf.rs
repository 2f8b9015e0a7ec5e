//! The SSRF guard and scheme policy: a loopback upstream is refused without a connection unless
//! private addresses are allowed or the host is explicitly routed.

mod common;

use std::collections::HashMap;

use common::*;
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::Config;
use serde_json::json;

fn strict(base: &str) -> Config {
    Config {
        allow_private: false,
        env: Some(HashMap::from([("BASE".to_string(), base.to_string())])),
        ..Config::default()
    }
}

async fn refused(base_for: impl Fn(&Stub) -> String) {
    refused_on(0, base_for).await;
}

/// [`refused`] on a server with `worker_threads` serving threads (each sends with a client of
/// its own).
async fn refused_on(worker_threads: usize, base_for: impl Fn(&Stub) -> String) {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let config = Config {
        worker_threads,
        ..strict(&base_for(&stub))
    };
    let server = start(project(vec![with_retry(action("a"), 2, 5)]), config).await;
    let (status, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "blocked", "{body}");
    assert_eq!(stub.connections(), 0, "the guard let a connection through");
    assert_eq!(stub.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_upstream_over_https_ip_literal_is_refused_without_a_connection() {
    refused(|s| format!("https://127.0.0.1:{}", s.addr().port())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_upstream_by_name_is_refused_after_resolution_without_a_connection() {
    refused(|s| format!("https://localhost:{}", s.addr().port())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_upstream_by_name_is_refused_on_serving_threads_too() {
    refused_on(2, |s| format!("https://localhost:{}", s.addr().port())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv4_mapped_loopback_is_refused_without_a_connection() {
    refused(|s| format!("https://[::ffff:127.0.0.1]:{}", s.addr().port())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_is_refused_without_a_connection() {
    refused(|s| s.url()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_private_permits_plain_http_to_loopback() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let server = start(
        project(vec![action("a")]),
        Config {
            allow_private: true,
            ..strict(&stub.url())
        },
    )
    .await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn routed_host_reaches_its_target_with_the_original_host_header() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    // https to a public-looking name, routed to the stub; allow_private stays off.
    let server = start(
        project(vec![action("a")]),
        strict("https://api.example.com").route("api.example.com", stub.addr()),
    )
    .await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "ok", "{body}");
    let req = &stub.requests()[0];
    assert_eq!(req.path, "/thing");
    assert_eq!(req.header("host"), Some("api.example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn route_for_one_host_does_not_open_the_guard_for_others() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let server = start(
        project(vec![action("a")]),
        strict(&format!("https://localhost:{}", stub.addr().port()))
            .route("api.example.com", stub.addr()),
    )
    .await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["reason"], "blocked");
    assert_eq!(stub.connections(), 0);
}
