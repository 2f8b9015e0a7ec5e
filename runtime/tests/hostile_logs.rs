//! Logs at the most verbose level (`MCA_LOG=trace`: every event of every module, as `mca
//! serve` prints them) contain no secret value, whatever happens: success, retries, timeouts,
//! resets, refused addresses, OAuth2 token exchanges, 401s, mapping errors, hostile input.
//! One test in this binary: it installs the process-wide subscriber.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::Config;
use serde_json::json;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SOURCE: &str = r#"
action bearer_auth {
  description "Bearer"
  input id: string "Id"
  request GET "https://api.example.com/items/{input.id}" {
    auth bearer secret.BEARER_TOKEN
    header "X-Tenant" = secret.TENANT_KEY
    timeout 600ms
    retry 2 backoff 5ms
  }
  output { value: string = $.value }
  fallback { value = "fallback" }
}

action query_auth {
  description "Query key"
  input id: string "Id"
  request GET "https://api.example.com/q?id={input.id}" {
    auth query "api_key" secret.QUERY_KEY
    timeout 600ms
    retry 1 backoff 5ms
  }
  output { value: string = $.value }
  fallback { value = "fallback" }
}

action basic_auth {
  description "Basic"
  input id: string "Id"
  request GET "https://api.example.com/b/{input.id}" {
    auth basic secret.BASIC_USER secret.BASIC_PASSWORD
    timeout 600ms
  }
  output { value: string = $.value }
  fallback { value = "fallback" }
}

action oauth_auth {
  description "OAuth2"
  input id: string "Id"
  request GET "https://api.example.com/o/{input.id}" {
    auth oauth2 { token_url "https://auth.example.com/token" client_id env.CLIENT_ID client_secret secret.CLIENT_SECRET scope "read" }
    timeout 600ms
  }
  output { value: string = $.value }
  fallback { value = "fallback" }
}

action blocked_upstream {
  description "Refused address with a query key"
  input id: string "Id"
  request GET "{env.INTERNAL}/x/{input.id}" {
    auth query "key" secret.QUERY_KEY
    timeout 600ms
  }
  output { value: string = $.value }
  fallback { value = "fallback" }
}
"#;

fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("BEARER_TOKEN", "bearer-SECRET-aaaa1111"),
        ("TENANT_KEY", "tenant-SECRET-bbbb2222"),
        ("QUERY_KEY", "query-SECRET-cccc3333"),
        ("BASIC_USER", "basicuser-SECRET-dddd"),
        ("BASIC_PASSWORD", "basicpass-SECRET-eeee5555"),
        ("CLIENT_SECRET", "client-SECRET-ffff6666"),
        ("MCA_TOKEN", "caller-token-SECRET-gggg7777"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_logs_hold_no_secret_value() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("subscriber");

    let stub = Stub::start(vec![]).await.unwrap();
    let mut env: HashMap<String, String> = secrets()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("CLIENT_ID".into(), "client-id".into());
    env.insert("INTERNAL".into(), "https://10.0.0.7".into());
    let token = secrets().last().unwrap().1.to_string();
    let config = Config {
        env: Some(env),
        token: Some(token.clone()),
        ..Config::default()
    }
    .route("api.example.com", stub.addr())
    .route("auth.example.com", stub.addr());
    let ir = mca_compiler::compile_one("logs.mca", SOURCE)
        .ir
        .expect("compiles");
    let mut server = start(ir, config).await;
    server.client = reqwest::Client::builder()
        .no_proxy()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();

    let ok = || Reply::json(200, json!({"value": "v"}));
    // Replies echo secrets back, as careless APIs do in error messages.
    let echo = format!("invalid key {}", secrets()[0].1);
    let scenarios: Vec<(&str, Vec<Reply>)> = vec![
        ("bearer_auth", vec![ok()]),
        (
            "bearer_auth",
            vec![
                Reply::status(503),
                Reply::Reset,
                Reply::json(200, json!({"value": 42, "echo": echo})),
            ],
        ),
        ("bearer_auth", vec![Reply::raw(200, echo.clone())]),
        (
            "bearer_auth",
            vec![Reply::json(401, json!({"error": echo}))],
        ),
        ("bearer_auth", vec![ok().delayed(Duration::from_secs(2))]),
        ("query_auth", vec![ok()]),
        ("query_auth", vec![Reply::status(503), Reply::Reset]),
        (
            "query_auth",
            vec![Reply::status(302).with_header("Location", "https://evil.example/?k=x")],
        ),
        ("basic_auth", vec![ok()]),
        ("basic_auth", vec![Reply::Reset]),
        ("oauth_auth", vec![ok()]),
        ("oauth_auth", vec![Reply::status(401), ok()]),
        ("blocked_upstream", vec![ok()]),
    ];
    for (action, replies) in scenarios {
        stub.set_replies(replies);
        let (status, body) = call(&server, action, json!({"id": "7"}), Some("call-1")).await;
        assert_eq!(status, 200, "{action}: {body}");
        let text = body.to_string();
        for (name, value) in secrets() {
            assert!(!text.contains(value), "{name} in the answer: {text}");
        }
    }
    // Hostile input that looks like a secret reference or carries one.
    let (status, _) = call(
        &server,
        "bearer_auth",
        json!({"id": "{secret.BEARER_TOKEN}"}),
        Some("c2"),
    )
    .await;
    assert_eq!(status, 200);
    // A wrong caller token.
    let resp = reqwest::Client::new()
        .post(server.url("/actions/bearer_auth"))
        .header("authorization", "Bearer wrong")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    server.runtime.end_call("call-1");
    server.shutdown().await;

    let logs = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "{logs}");
    assert!(logs.contains("upstream attempt"), "{logs}");
    for (name, value) in secrets() {
        assert!(
            !logs.contains(value),
            "{name} appears in the logs:\n{}",
            logs.lines()
                .filter(|l| l.contains(value))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!(
        "{} log lines at trace level, no secret value",
        logs.lines().count()
    );
}
