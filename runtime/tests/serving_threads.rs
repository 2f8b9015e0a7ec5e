//! Serving threads (`Config::worker_threads`, `mca serve --threads`): each thread keeps the
//! connections handed to it, and their upstream requests, to itself. (Draining calls in flight
//! on serving threads: `http_api.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::Config;
use serde_json::{json, Value};

fn threaded(base: &str, threads: usize) -> Config {
    Config {
        worker_threads: threads,
        ..config(base)
    }
}

/// Calls action `a` at `url` with input `id`; asserts a 200 and returns the answer.
async fn ask(client: &reqwest::Client, url: &str, id: &str) -> Value {
    let resp = client
        .post(url)
        .body(json!({ "id": id }).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON answer")
}

/// Calls action `a` on `n` connections of their own (a client each) at once; returns the
/// answers.
async fn ask_concurrently(url: String, n: usize) -> Vec<Value> {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { ask(&client(), &url, &i.to_string()).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("call task"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_threads_answer_every_connection_and_each_keeps_its_own_upstream_pool() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let server = start(project(vec![action("a")]), threaded(&stub.url(), 2)).await;
    // Four clients, one call at a time: each keeps one inbound connection, and the
    // fewest-open-connections rule gives two to each thread.
    let clients: Vec<_> = (0..4).map(|_| client()).collect();
    for round in 0..3 {
        for (i, client) in clients.iter().enumerate() {
            let answer = ask(client, &server.url("/actions/a"), &format!("{round}-{i}")).await;
            assert_eq!(answer["status"], "ok", "{answer}");
            assert_eq!(answer["output"]["value"], "v");
        }
    }
    assert_eq!(stub.request_count(), 12);
    // Calls never overlapped, so one shared pool would have used one upstream connection;
    // two threads with a pool each use exactly two.
    assert_eq!(stub.connections(), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_threads_answer_concurrent_calls_on_many_connections() {
    let stub = Stub::start(vec![
        Reply::json(200, json!({"value": "v"})).delayed(Duration::from_millis(20))
    ])
    .await
    .unwrap();
    let server = start(project(vec![action("a")]), threaded(&stub.url(), 3)).await;
    for answer in ask_concurrently(server.url("/actions/a"), 24).await {
        assert_eq!(answer["status"], "ok", "{answer}");
    }
    assert_eq!(stub.request_count(), 24);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_idle_connections_on_serving_threads_at_once() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let mut config = threaded(&stub.url(), 2);
    config.drain_timeout = Duration::from_secs(30);
    let server = start(project(vec![action("a")]), config).await;
    // An idle keep-alive connection on a serving thread must not hold the drain for 30 s.
    let client = client();
    let answer = ask(&client, &server.url("/actions/a"), "1").await;
    assert_eq!(answer["status"], "ok");
    let t = Instant::now();
    server.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}
