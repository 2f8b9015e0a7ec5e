//! End-to-end throughput and latency over loopback: a client, the runtime server and a stub
//! upstream, all in one process. `cargo bench -p mca-runtime` prints requests per second and
//! latency percentiles for an uncached action and a cached one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mca_compiler::ir::{self, Action};
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::{Config, Runtime, Server};
use serde_json::json;

const REQUESTS: usize = 4000;
const CONCURRENCY: usize = 16;

fn action(name: &str, cached: bool) -> Action {
    // From JSON, so IR fields added later with serde defaults need no change here.
    let cache = cached.then(
        || json!({"ttl_ms": 60_000, "key": ["id"], "scope": "global", "stale_if_error_ms": null}),
    );
    serde_json::from_value(json!({
        "name": name,
        "file": "bench.mca",
        "location": {"line": 1, "column": 1},
        "description": "bench",
        "inputs": [{"name": "id", "type": {"kind": "string"}, "default": null, "description": null}],
        "request": {
            "method": "GET",
            "url": {"parts": [
                {"ref": {"ref": {"ns": "env", "name": "BASE"}, "at": "origin"}},
                {"text": "/items/"},
                {"ref": {"ref": {"ns": "input", "name": "id"}, "at": "path"}}
            ]},
            "query": [], "headers": [], "auth": null, "body": null, "idempotency_key": null,
            "timeout_ms": 2000, "per_try_ms": null,
            "retry": {"attempts": 1, "backoff_ms": 10},
            "max_response_bytes": 1048576, "read_only": false
        },
        "outputs": [{"name": "value", "type": {"kind": "string"},
            "mapping": {"kind": "path", "path": "$.value", "singular": true, "default": null}}],
        "say": null,
        "on_status": [],
        "fallback": {"values": [["value", "fallback"]], "say": null},
        "cache": cache,
        "invalidates": [],
        "tests": [],
        "env": ["BASE"],
        "secrets": []
    }))
    .expect("bench action")
}

async fn run(client: &reqwest::Client, url: String) -> Vec<Duration> {
    let per_task = REQUESTS / CONCURRENCY;
    let mut tasks = Vec::new();
    for t in 0..CONCURRENCY {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let body = format!("{{\"id\":\"{}\"}}", (t * per_task + i) % 50);
                let start = Instant::now();
                let resp = client.post(&url).body(body).send().await.expect("send");
                assert_eq!(resp.status(), 200);
                resp.bytes().await.expect("body");
                times.push(start.elapsed());
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort();
    all
}

fn report(name: &str, times: &[Duration], total: Duration) {
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{name:>9}: {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        times.len() as f64 / total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
            .await
            .expect("stub");
        let config = Config {
            allow_private: true,
            env: Some(HashMap::from([("BASE".to_string(), stub.url())])),
            ..Config::default()
        };
        let project = ir::Project {
            ir_version: ir::IR_VERSION,
            actions: vec![action("uncached", false), action("cached", true)],
        };
        let runtime = Arc::new(Runtime::new(project, config).expect("runtime"));
        let server = Server::bind(([127, 0, 0, 1], 0).into())
            .await
            .expect("bind");
        let addr = server.local_addr();
        tokio::spawn(server.run(runtime, std::future::pending()));
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        println!("{REQUESTS} requests, {CONCURRENCY} concurrent, over loopback:");
        for name in ["uncached", "cached"] {
            let url = format!("http://{addr}/actions/{name}");
            let start = Instant::now();
            let times = run(&client, url).await;
            report(name, &times, start.elapsed());
        }
    });
}
