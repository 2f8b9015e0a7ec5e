//! Shared helpers: hand-built IR, a running runtime server, an HTTP client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mca_compiler::ir::{
    self, Action, Body, Cache, CacheScope, Expr, Input, JsonTemplate, Mapping, MappingKind, Method,
    Namespace, Outcome, Output, Part, Ref, Retry, Template, Ty, UrlContext, UrlPart, UrlTemplate,
};
use mca_runtime::{Config, Runtime, Server};
use serde_json::{json, Value};

pub fn r(ns: Namespace, name: &str) -> Ref {
    Ref {
        ns,
        name: name.into(),
    }
}

pub fn input_ref(name: &str) -> Expr {
    Expr::Ref(r(Namespace::Input, name))
}

pub fn secret_ref(name: &str) -> Expr {
    Expr::Ref(r(Namespace::Secret, name))
}

pub fn string() -> Ty {
    Ty::String { format: None }
}

pub fn optional(t: Ty) -> Ty {
    Ty::Optional { inner: Box::new(t) }
}

pub fn text(s: &str) -> Part {
    Part::Text(s.into())
}

pub fn template(parts: Vec<Part>) -> Template {
    Template { parts }
}

/// `GET {env.BASE}{path}` where path may hold `{input.X}` path segments.
pub fn url(path: &str) -> UrlTemplate {
    let mut parts = vec![UrlPart::Ref {
        r#ref: r(Namespace::Env, "BASE"),
        at: UrlContext::Origin,
    }];
    let mut rest = path;
    while let Some(i) = rest.find("{input.") {
        parts.push(UrlPart::Text(rest[..i].into()));
        let end = rest[i..].find('}').expect("closing brace") + i;
        parts.push(UrlPart::Ref {
            r#ref: r(Namespace::Input, &rest[i + 7..end]),
            at: UrlContext::Path,
        });
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(UrlPart::Text(rest.into()));
    }
    UrlTemplate { parts }
}

pub fn output(name: &str, ty: Ty, path: &str) -> Output {
    Output {
        name: name.into(),
        ty,
        source: mca_compiler::ir::Source::Path(Mapping {
            kind: MappingKind::Path,
            path: path.into(),
            singular: !path.contains('*') && !path.contains('?'),
            default: None,
        }),
        when: None,
    }
}

/// An action `name`: `GET {env.BASE}/thing`, input `id: string`, output `value: string =
/// $.value`, say "Value {output.value}.", fallback `value = "fallback"`, timeout 400 ms, no
/// retries.
pub fn action(name: &str) -> Action {
    // Built from JSON so that IR fields added later with serde defaults need no change here.
    let mut a: Action = serde_json::from_value(json!({
        "name": name,
        "file": format!("{name}.mca"),
        "location": {"line": 1, "column": 1},
        "description": format!("Test action {name}"),
        "inputs": [],
        "request": {
            "method": "GET",
            "url": {"parts": []},
            "query": [],
            "headers": [],
            "auth": null,
            "body": null,
            "idempotency_key": null,
            "timeout_ms": 400,
            "per_try_ms": null,
            "retry": {"attempts": 0, "backoff_ms": 10},
            "max_response_bytes": 65536,
            "read_only": false
        },
        "timeout_ms": 400,
        "outputs": [],
        "say": [],
        "on_status": [],
        "fallback": null,
        "cache": null,
        "invalidates": [],
        "tests": [],
        "env": ["BASE"],
        "secrets": []
    }))
    .expect("base action");
    a.inputs = vec![Input {
        name: "id".into(),
        ty: string(),
        default: None,
        description: Some("An id".into()),
    }];
    a.req().url = url("/thing");
    a.outputs = vec![output("value", string(), "$.value")];
    a.say = vec![mca_compiler::ir::Say {
        when: None,
        text: template(vec![
            text("Value "),
            Part::Ref(r(Namespace::Output, "value")),
            text("."),
        ]),
    }];
    a.fallback = Some(Outcome {
        values: vec![("value".into(), json!("fallback"))],
        say: Some(template(vec![text("Sorry.")])),
    });
    a
}

pub fn with_retry(mut a: Action, attempts: u32, backoff_ms: u64) -> Action {
    a.req().retry = Retry {
        attempts,
        backoff_ms,
    };
    a
}

pub fn with_timeout(mut a: Action, ms: u64) -> Action {
    a.req().timeout_ms = ms;
    a.timeout_ms = ms;
    a
}

pub fn with_cache(mut a: Action, scope: CacheScope, stale_if_error_ms: Option<u64>) -> Action {
    a.cache = Some(Cache {
        ttl_ms: 60_000,
        key: vec!["id".into()],
        scope,
        stale_if_error_ms,
    });
    a
}

/// A POST with a JSON body `{"id": input.id}`.
pub fn post_action(name: &str) -> Action {
    let mut a = action(name);
    a.req().method = Method::POST;
    a.req().body = Some(Body::Json {
        template: JsonTemplate::Object(vec![(
            "id".into(),
            JsonTemplate::Ref(r(Namespace::Input, "id")),
        )]),
    });
    a
}

/// The one request of a single-request test action.
pub trait RequestOf {
    fn req(&mut self) -> &mut mca_compiler::ir::Request;
}

impl RequestOf for Action {
    fn req(&mut self) -> &mut mca_compiler::ir::Request {
        self.request.as_mut().expect("a single-request action")
    }
}

pub fn project(actions: Vec<Action>) -> ir::Project {
    ir::Project {
        ir_version: ir::IR_VERSION,
        actions,
    }
}

/// A config for a loopback upstream at `base`: `env.BASE = base`, private addresses allowed.
pub fn config(base: &str) -> Config {
    Config {
        allow_private: true,
        env: Some(HashMap::from([("BASE".to_string(), base.to_string())])),
        ..Config::default()
    }
}

/// A runtime server on 127.0.0.1:0, stopped when dropped.
pub struct Running {
    pub runtime: Arc<Runtime>,
    pub addr: SocketAddr,
    /// A client made in advance (making one costs tens of milliseconds: keep it out of timings).
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), mca_runtime::ServeError>>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and waits until the server has drained.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start(project: ir::Project, config: Config) -> Running {
    let runtime = Arc::new(Runtime::new(project, config).expect("runtime starts"));
    start_runtime(runtime).await
}

pub async fn start_runtime(runtime: Arc<Runtime>) -> Running {
    let server = Server::bind(([127, 0, 0, 1], 0).into())
        .await
        .expect("bind");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(runtime.clone(), async {
        let _ = stopped.await;
    }));
    Running {
        runtime,
        addr,
        client: client(),
        stop: Some(stop),
        task: Some(task),
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// POSTs `body` to `/actions/{action}` with an optional call id; returns status and JSON.
/// The server's `GET /metrics` text (asserting it answered 200).
pub async fn metrics_text(server: &Running) -> String {
    let resp = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

pub async fn call(
    server: &Running,
    action: &str,
    body: Value,
    call_id: Option<&str>,
) -> (u16, Value) {
    let mut req = server
        .client
        .post(server.url(&format!("/actions/{action}")))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(id) = call_id {
        req = req.header("X-Call-Id", id);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

/// Millisecond bounds for assertions: the contract's `timeout + 50 ms`, plus slack for a
/// loaded 2-core test machine where noted.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The canonical examples, compiled by the real compiler.
pub fn examples() -> ir::Project {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut sources = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mca"))
        .collect();
    names.sort();
    for p in names {
        let text = std::fs::read_to_string(&p).expect("read example");
        sources.push(mca_compiler::Source::new(
            format!("examples/{}", p.file_name().unwrap().to_string_lossy()),
            text,
        ));
    }
    let compiled = mca_compiler::compile(&sources);
    compiled.ir.unwrap_or_else(|| {
        panic!(
            "examples do not compile: {} diagnostics",
            compiled.diagnostics.len()
        )
    })
}
