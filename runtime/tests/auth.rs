//! Upstream auth (bearer, basic, header, query, OAuth2 client credentials) and secret hygiene:
//! secret values never appear in responses or logs (captured here at TRACE level, every crate).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use mca_compiler::ir::{Auth, Expr, Namespace, Part, Template};
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::Config;
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Every log line of this test binary, from every crate, at TRACE.
fn logs() -> String {
    static LOGS: OnceLock<Capture> = OnceLock::new();
    let c = LOGS.get_or_init(|| {
        let c = Capture::default();
        tracing_subscriber::fmt()
            .with_writer(c.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .init();
        c
    });
    String::from_utf8_lossy(&c.0.lock().unwrap()).into_owned()
}

fn with_auth(
    mut a: mca_compiler::ir::Action,
    auth: Auth,
    secrets: &[&str],
) -> mca_compiler::ir::Action {
    a.req().auth = Some(auth);
    a.secrets = secrets.iter().map(|s| s.to_string()).collect();
    a
}

fn cfg(base: &str, secrets: &[(&str, &str)]) -> Config {
    logs(); // capture from the start of every test
    let mut c = config(base);
    for (k, v) in secrets {
        c.set_env(*k, *v);
    }
    c
}

fn assert_secret_absent(secret: &str, text: &str, what: &str) {
    assert!(!text.contains(secret), "secret found in {what}:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_auth_is_sent_and_the_secret_stays_out_of_responses_and_logs() {
    logs();
    let secret = "bearer-s3cret-value-1";
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let a = with_auth(
        action("a"),
        Auth::Bearer {
            token: secret_ref("TOKEN"),
        },
        &["TOKEN"],
    );
    let server = start(project(vec![a]), cfg(&stub.url(), &[("TOKEN", secret)])).await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(
        stub.requests()[0].header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
    assert_secret_absent(secret, &body.to_string(), "the response");
    let logs = logs();
    assert!(
        logs.contains("answered") && logs.contains("upstream attempt"),
        "logs are captured"
    );
    assert_secret_absent(secret, &logs, "the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_is_base64_of_user_and_password() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let a = with_auth(
        action("a"),
        Auth::Basic {
            user: secret_ref("USER"),
            password: secret_ref("PASS"),
        },
        &["PASS", "USER"],
    );
    let server = start(
        project(vec![a]),
        cfg(&stub.url(), &[("USER", "Aladdin"), ("PASS", "open sesame")]),
    )
    .await;
    call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(
        stub.requests()[0].header("authorization"),
        Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    );
    assert_secret_absent("open sesame", &logs(), "the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_key_in_a_header_and_in_the_query() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let header = with_auth(
        action("h"),
        Auth::Header {
            name: "X-Api-Key".into(),
            value: secret_ref("KEY"),
        },
        &["KEY"],
    );
    let query = with_auth(
        action("q"),
        Auth::Query {
            name: "api_key".into(),
            value: secret_ref("KEY"),
        },
        &["KEY"],
    );
    let server = start(
        project(vec![header, query]),
        cfg(&stub.url(), &[("KEY", "k3y/with+chars")]),
    )
    .await;
    call(&server, "h", json!({"id": "1"}), None).await;
    call(&server, "q", json!({"id": "1"}), None).await;
    let reqs = stub.requests();
    assert_eq!(reqs[0].header("x-api-key"), Some("k3y/with+chars"));
    assert_eq!(reqs[1].path, "/thing?api_key=k3y%2Fwith%2Bchars");
    assert_secret_absent("k3y/with+chars", &logs(), "the logs");
    assert_secret_absent("k3y%2Fwith%2Bchars", &logs(), "the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_in_a_query_stays_out_of_error_answers_and_logs_when_the_upstream_is_down() {
    let secret = "query-s3cret-value-2";
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut a = with_auth(
        action("a"),
        Auth::Query {
            name: "key".into(),
            value: secret_ref("KEY"),
        },
        &["KEY"],
    );
    a.fallback = None;
    let server = start(
        project(vec![a]),
        cfg(&format!("http://127.0.0.1:{port}"), &[("KEY", secret)]),
    )
    .await;
    let (status, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "connect");
    assert_secret_absent(secret, &body.to_string(), "the error answer");
    assert_secret_absent(secret, &logs(), "the logs");
}

fn oauth(a: mca_compiler::ir::Action, scope: Option<&str>) -> mca_compiler::ir::Action {
    let mut a = with_auth(
        a,
        Auth::Oauth2 {
            token_url: Expr::Template(Template {
                parts: vec![
                    Part::Ref(r(Namespace::Env, "BASE")),
                    Part::Text("/oauth/token".into()),
                ],
            }),
            client_id: Expr::Literal(json!("client-1")),
            client_secret: secret_ref("CLIENT_SECRET"),
            scope: scope.map(|s| Expr::Literal(json!(s))),
        },
        &["CLIENT_SECRET"],
    );
    a.req().timeout_ms = 2000;
    a
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_token_is_fetched_once_and_shared_by_actions_with_the_same_client() {
    let secret = "oauth-client-s3cret-3";
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let a = oauth(action("a"), Some("read"));
    let b = oauth(action("b"), Some("read"));
    let other_scope = oauth(action("c"), Some("write"));
    let server = start(
        project(vec![a, b, other_scope]),
        cfg(&stub.url(), &[("CLIENT_SECRET", secret)]),
    )
    .await;
    for name in ["a", "b", "a", "b"] {
        let (_, body) = call(&server, name, json!({"id": "1"}), None).await;
        assert_eq!(body["status"], "ok", "{body}");
    }
    let tokens = stub.token_requests();
    assert_eq!(tokens.len(), 1, "one token for (url, client, scope)");
    let form = String::from_utf8_lossy(&tokens[0].body).into_owned();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains("scope=read"), "{form}");
    assert!(tokens[0]
        .header("authorization")
        .is_some_and(|v| v.starts_with("Basic ")));
    for req in stub.requests() {
        assert_eq!(req.header("authorization"), Some("Bearer stub-token-1"));
    }
    call(&server, "c", json!({"id": "1"}), None).await;
    assert_eq!(
        stub.token_requests().len(),
        2,
        "another scope, another token"
    );
    assert_secret_absent(secret, &logs(), "the logs");
    assert_secret_absent("stub-token-1", &logs(), "the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_token_is_fetched_again_once_after_a_401() {
    let stub = Stub::start(vec![
        Reply::status(401),
        Reply::json(200, json!({"value": "v"})),
    ])
    .await
    .unwrap();
    let server = start(
        project(vec![oauth(action("a"), None)]),
        cfg(&stub.url(), &[("CLIENT_SECRET", "s")]),
    )
    .await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(stub.token_requests().len(), 2);
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("authorization"), Some("Bearer stub-token-2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_persistent_401_is_refetched_only_once_then_falls_back() {
    let stub = Stub::start(vec![Reply::status(401)]).await.unwrap();
    let server = start(
        project(vec![oauth(with_retry(action("a"), 3, 5), None)]),
        cfg(&stub.url(), &[("CLIENT_SECRET", "s")]),
    )
    .await;
    let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(body["reason"], "upstream_status");
    assert_eq!(stub.token_requests().len(), 2);
    assert_eq!(stub.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_token_is_refreshed_before_it_expires() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    stub.set_token_lifetime(1);
    let server = start(
        project(vec![oauth(action("a"), None)]),
        cfg(&stub.url(), &[("CLIENT_SECRET", "s")]),
    )
    .await;
    call(&server, "a", json!({"id": "1"}), None).await;
    call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(stub.token_requests().len(), 1);
    // A 1 s token is refreshed 100 ms before it expires.
    tokio::time::sleep(Duration::from_millis(950)).await;
    call(&server, "a", json!({"id": "1"}), None).await;
    assert_eq!(stub.token_requests().len(), 2);
    let reqs = stub.requests();
    assert_eq!(reqs[2].header("authorization"), Some("Bearer stub-token-2"));
}
