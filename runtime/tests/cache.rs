//! The cache: hits never reach the upstream, `DELETE /calls/{id}` empties a call's entries,
//! concurrent misses make one upstream call, `invalidates` and `stale_if_error`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mca_compiler::ir::CacheScope;
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::Config;
use serde_json::json;

fn value(v: &str) -> Reply {
    Reply::json(200, json!({ "value": v }))
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_hit_does_not_reach_the_upstream() {
    let stub = Stub::start(vec![value("one"), value("two")]).await.unwrap();
    let a = with_cache(action("a"), CacheScope::Global, None);
    let server = start(project(vec![a]), config(&stub.url())).await;
    let (_, first) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(first["cached"], false);
    let (_, second) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(second["cached"], true);
    assert_eq!(second["status"], "ok");
    assert_eq!(second["output"]["value"], "one");
    assert_eq!(second["say"], "Value one.");
    assert_eq!(stub.request_count(), 1);
    // Another key is another entry.
    let (_, other) = call(&server, "a", json!({"id": "2"}), None).await;
    assert_eq!(other["cached"], false);
    assert_eq!(stub.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_call_empties_that_calls_cache_only() {
    let stub = Stub::start(vec![value("v")]).await.unwrap();
    let a = with_cache(action("a"), CacheScope::Call, None);
    let server = start(project(vec![a]), config(&stub.url())).await;
    call(&server, "a", json!({"id": "1"}), Some("call-a")).await;
    call(&server, "a", json!({"id": "1"}), Some("call-b")).await;
    assert_eq!(stub.request_count(), 2, "scope call: one entry per call");
    let (_, hit) = call(&server, "a", json!({"id": "1"}), Some("call-a")).await;
    assert_eq!(hit["cached"], true);
    assert_eq!(stub.request_count(), 2);

    let resp = server
        .client
        .delete(server.url("/calls/call-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let (_, after) = call(&server, "a", json!({"id": "1"}), Some("call-a")).await;
    assert_eq!(after["cached"], false);
    assert_eq!(stub.request_count(), 3);
    let (_, other) = call(&server, "a", json!({"id": "1"}), Some("call-b")).await;
    assert_eq!(other["cached"], true, "another call's entry survives");
    assert_eq!(stub.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn call_scoped_action_without_call_id_is_not_cached() {
    let stub = Stub::start(vec![value("v")]).await.unwrap();
    let a = with_cache(action("a"), CacheScope::Call, None);
    let server = start(project(vec![a]), config(&stub.url())).await;
    call(&server, "a", json!({"id": "1"}), None).await;
    let (_, second) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(second["cached"], false);
    assert_eq!(stub.request_count(), 2);
}

/// Eight calls at once (on up to eight connections) for one key, on a server with
/// `worker_threads`: one upstream call, whichever threads the calls land on.
async fn check_concurrent_misses_make_one_upstream_call(worker_threads: usize) {
    let stub = Stub::start(vec![value("shared").delayed(Duration::from_millis(200))])
        .await
        .unwrap();
    let a = with_cache(with_timeout(action("a"), 2000), CacheScope::Global, None);
    let config = Config {
        worker_threads,
        ..config(&stub.url())
    };
    let server = Arc::new(start(project(vec![a]), config).await);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            call(&server, "a", json!({"id": "1"}), None).await
        }));
    }
    let mut fresh = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["output"]["value"], "shared");
        if body["cached"] == false {
            fresh += 1;
        }
    }
    assert_eq!(stub.request_count(), 1);
    assert_eq!(fresh, 1, "exactly one caller made the upstream call");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_for_one_key_make_one_upstream_call() {
    check_concurrent_misses_make_one_upstream_call(0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_on_different_serving_threads_make_one_upstream_call() {
    check_concurrent_misses_make_one_upstream_call(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_share_one_failure_too() {
    let stub = Stub::start(vec![Reply::status(500).delayed(Duration::from_millis(150))])
        .await
        .unwrap();
    let a = with_cache(with_timeout(action("a"), 2000), CacheScope::Global, None);
    let server = Arc::new(start(project(vec![a]), config(&stub.url())).await);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            call(&server, "a", json!({"id": "1"}), None).await
        }));
    }
    for t in tasks {
        let (_, body) = t.await.unwrap();
        assert_eq!(body["reason"], "upstream_status");
    }
    assert_eq!(stub.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_not_cached() {
    let stub = Stub::start(vec![Reply::status(500), value("v")])
        .await
        .unwrap();
    let a = with_cache(action("a"), CacheScope::Global, None);
    let server = start(project(vec![a]), config(&stub.url())).await;
    let (_, first) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(first["status"], "fallback");
    let (_, second) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(second["status"], "ok");
    assert_eq!(second["cached"], false);
    assert_eq!(stub.request_count(), 2);
}

/// A cached `read` (with `stale_if_error`) and a `write` that invalidates it, on upstreams of
/// their own (`reads`
/// answering `read_replies` in turn; the last is the writes' upstream).
async fn read_and_write(read_replies: Vec<Reply>) -> (Running, Stub, Stub) {
    let reads = Stub::start(read_replies).await.unwrap();
    let writes = Stub::start(vec![value("written")]).await.unwrap();
    let read = with_cache(action("read"), CacheScope::Global, Some(60_000));
    let mut write = post_action("write");
    write.invalidates = vec!["read".into()];
    // The write talks to another upstream: give it its own base variable.
    write.req().url.parts[0] = mca_compiler::ir::UrlPart::Ref {
        r#ref: r(mca_compiler::ir::Namespace::Env, "WRITE_BASE"),
        at: mca_compiler::ir::UrlContext::Origin,
    };
    write.env = vec!["WRITE_BASE".into()];
    let mut cfg = config(&reads.url());
    cfg.set_env("WRITE_BASE", writes.url());
    let server = start(project(vec![read, write]), cfg).await;
    (server, reads, writes)
}

#[tokio::test(flavor = "multi_thread")]
async fn successful_write_invalidates_the_target_actions_entries() {
    let (server, reads, _writes) = read_and_write(vec![value("before"), value("after")]).await;
    call(&server, "read", json!({"id": "1"}), None).await;
    let (_, hit) = call(&server, "read", json!({"id": "1"}), None).await;
    assert_eq!(hit["cached"], true);
    let (_, w) = call(&server, "write", json!({"id": "1"}), None).await;
    assert_eq!(w["status"], "ok");
    let (_, after) = call(&server, "read", json!({"id": "1"}), None).await;
    assert_eq!(after["cached"], false);
    assert_eq!(after["output"]["value"], "after");
    assert_eq!(reads.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_in_flight_during_an_invalidating_write_is_answered_but_not_kept_even_as_stale() {
    let (server, reads, _writes) = read_and_write(vec![
        value("before").delayed(Duration::from_millis(300)),
        Reply::status(503),
    ])
    .await;
    let server = Arc::new(server);
    let in_flight = {
        let server = server.clone();
        tokio::spawn(async move { call(&server, "read", json!({"id": "1"}), None).await })
    };
    while reads.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_, w) = call(&server, "write", json!({"id": "1"}), None).await;
    assert_eq!(w["status"], "ok");
    let (_, before) = in_flight.await.unwrap();
    assert_eq!(
        before["output"]["value"], "before",
        "its caller gets its answer"
    );
    // The read began before the write: what it read may be what the write changed, so the
    // failing upstream now gets the fallback, not that answer as a stale copy.
    let (_, after) = call(&server, "read", json!({"id": "1"}), None).await;
    assert_eq!(after["status"], "fallback", "{after}");
    assert_ne!(after["output"]["value"], "before", "{after}");
    assert_eq!(reads.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_in_flight_when_its_call_ends_is_answered_but_not_kept() {
    let stub = Stub::start(vec![
        value("before").delayed(Duration::from_millis(300)),
        value("after"),
    ])
    .await
    .unwrap();
    let a = with_cache(with_timeout(action("a"), 2000), CacheScope::Call, None);
    let server = Arc::new(start(project(vec![a]), config(&stub.url())).await);
    let in_flight = {
        let server = server.clone();
        tokio::spawn(async move { call(&server, "a", json!({"id": "1"}), Some("call-1")).await })
    };
    while stub.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = server
        .client
        .delete(server.url("/calls/call-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (_, first) = in_flight.await.unwrap();
    assert_eq!(first["output"]["value"], "before");
    let (_, again) = call(&server, "a", json!({"id": "1"}), Some("call-1")).await;
    assert_eq!(
        again["cached"], false,
        "the ended call's entry came back: {again}"
    );
    assert_eq!(stub.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_entry_answers_when_the_upstream_fails_flagged_stale() {
    let stub = Stub::start(vec![value("old"), Reply::status(503)])
        .await
        .unwrap();
    let mut a = with_cache(action("a"), CacheScope::Global, Some(60_000));
    a.cache.as_mut().unwrap().ttl_ms = 100;
    let server = start(project(vec![a]), config(&stub.url())).await;
    let (_, first) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(first["output"]["value"], "old");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, stale) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(stale["status"], "ok", "{stale}");
    assert_eq!(stale["stale"], true);
    assert_eq!(stale["cached"], true);
    assert_eq!(stale["output"]["value"], "old");
    assert_eq!(
        stub.request_count(),
        2,
        "the expired entry was refreshed first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_stale_if_error_an_expired_entry_is_not_used() {
    let stub = Stub::start(vec![value("old"), Reply::status(503)])
        .await
        .unwrap();
    let mut a = with_cache(action("a"), CacheScope::Global, None);
    a.cache.as_mut().unwrap().ttl_ms = 100;
    let server = start(project(vec![a]), config(&stub.url())).await;
    call(&server, "a", json!({"id": "1"}), None).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, second) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(second["status"], "fallback");
    assert!(second.get("stale").is_none());
}
