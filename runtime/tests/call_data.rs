//! Call data: after `DELETE /calls/{id}`, nothing of that call stays in memory: its `scope
//! call` cache entries (fresh and stale copies) are removed from the caches at once, not just
//! hidden, and OAuth2 tokens obtained with the call's own data are dropped. Other calls keep
//! theirs.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::Config;
use serde_json::json;

const SOURCE: &str = r#"
action profile {
  description "Per-call cached lookup"
  input id: string "Id"
  request GET "https://api.example.com/profile/{input.id}" {
    auth bearer secret.TOKEN
    timeout 1s
  }
  output { value: string = $.value }
  cache {
    ttl 10m
    key input.id
    scope call
    stale_if_error 10m
  }
  fallback { value = "fallback" }
}

action tenant_data {
  description "OAuth2 with a client id that comes from the caller"
  input tenant: string "Tenant"
  request GET "https://api.example.com/tenant/{input.tenant}" {
    auth oauth2 { token_url "https://auth.example.com/token" client_id input.tenant client_secret secret.CLIENT_SECRET }
    timeout 1s
  }
  output { value: string = $.value }
  fallback { value = "fallback" }
}
"#;

async fn delete(server: &Running, id: &str) {
    let resp = server
        .client
        .delete(server.url(&format!("/calls/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_delete_nothing_of_the_call_stays_in_memory() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let config = Config {
        env: Some(HashMap::from([
            ("TOKEN".to_string(), "token-123456".to_string()),
            (
                "CLIENT_SECRET".to_string(),
                "client-secret-123456".to_string(),
            ),
        ])),
        ..Config::default()
    }
    .route("*", stub.addr());
    let ir = mca_compiler::compile_one("calls.mca", SOURCE)
        .ir
        .expect("compiles");
    let server = start(ir, config).await;
    for call_id in ["call-a", "call-b"] {
        for id in ["1", "2", "3"] {
            let (_, body) = call(&server, "profile", json!({ "id": id }), Some(call_id)).await;
            assert_eq!(body["status"], "ok", "{body}");
        }
        let (_, body) = call(
            &server,
            "tenant_data",
            json!({"tenant": format!("tenant-of-{call_id}")}),
            Some(call_id),
        )
        .await;
        assert_eq!(body["status"], "ok", "{body}");
    }
    let a = server.runtime.call_footprint("call-a").await;
    assert_eq!(a.cache_entries_of_call, 6, "3 fresh + 3 stale: {a:?}");
    assert_eq!(a.tokens_of_call, 1, "{a:?}");
    assert_eq!(a.cache_entries_held, 12, "{a:?}");

    delete(&server, "call-a").await;
    // Removal happens on a task of its own: give it a moment.
    let t = Instant::now();
    let after = loop {
        let f = server.runtime.call_footprint("call-a").await;
        if f.cache_entries_held == 6 || t.elapsed() > Duration::from_secs(2) {
            break f;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(after.cache_entries_of_call, 0, "{after:?}");
    assert_eq!(after.tokens_of_call, 0, "{after:?}");
    assert_eq!(
        after.cache_entries_held, 6,
        "entries removed, not only hidden: {after:?}"
    );
    let b = server.runtime.call_footprint("call-b").await;
    assert_eq!(b.cache_entries_of_call, 6, "{b:?}");
    assert_eq!(b.tokens_of_call, 1, "{b:?}");

    // The ended call starts from nothing: a miss, a new token.
    let before = stub.request_count();
    let (_, body) = call(&server, "profile", json!({"id": "1"}), Some("call-a")).await;
    assert_eq!(body["cached"], false);
    assert_eq!(stub.request_count(), before + 1);
    let (_, body) = call(&server, "profile", json!({"id": "1"}), Some("call-b")).await;
    assert_eq!(body["cached"], true);

    delete(&server, "call-b").await;
    delete(&server, "call-a").await;
    let t = Instant::now();
    loop {
        let (a, b) = (
            server.runtime.call_footprint("call-a").await,
            server.runtime.call_footprint("call-b").await,
        );
        if a.cache_entries_held == 0 {
            assert_eq!((a.tokens_of_call, b.tokens_of_call), (0, 0));
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
