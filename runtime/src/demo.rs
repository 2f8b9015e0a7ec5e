//! The built-in demo upstream behind `mca serve examples --demo`: a plain-HTTP server on
//! loopback that answers the canonical examples' APIs from fixtures, so everything works
//! offline.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/customers?phone=...` (bearer auth) | `+4930123456`: Max Mustermann of Beispiel GmbH with tickets; `+4940555000`: Erika Musterfrau, no company; others: no match |
//! | `GET /api/orders/{n}` (`X-Shop-Key`) | `100234`: shipped with DHL; `100235`: processing; others: 404 |
//! | `POST /api/v2/tickets` (basic auth) | 201 with a new ticket number; the same `Idempotency-Key` gets the same ticket |
//!
//! A request without its credentials gets 401, so the demo shows auth being sent.
//!
//! # How `--demo` reaches it
//!
//! [`configure`] prepares a [`Config`] for the demo:
//! - `CRM_BASE_URL` and `HELPDESK_URL` are set to `http://127.0.0.1:PORT`;
//! - `CRM_TOKEN`, `HELPDESK_USER`, `HELPDESK_TOKEN` and `SHOP_API_KEY` get placeholder values
//!   when they are not set;
//! - two routes ([`Config::routes`]) point at the demo: `shop.example.com`, the literal host of
//!   `order_status.mca` (its `https://` request goes to the demo over plain HTTP, with
//!   `Host: shop.example.com`), and `127.0.0.1:PORT` itself, which exempts exactly the demo's
//!   address from the SSRF guard and the HTTPS requirement. `allow_private` stays off, so any
//!   other private or plain-HTTP upstream is still refused.
//!
//! [`configure_project`] does the same and also covers projects beyond the canonical examples:
//! placeholders for every missing variable and a catch-all route, so that in demo mode no
//! request leaves the machine.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use mca_compiler::ir;

use crate::config::Config;

/// The running demo upstream; stops when dropped.
pub struct DemoHandle {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DemoHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the demo upstream.
    pub fn stop(self) {}
}

impl Drop for DemoHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the demo upstream on `addr` (use `127.0.0.1:0` for any free port).
pub async fn start(addr: SocketAddr) -> std::io::Result<(SocketAddr, DemoHandle)> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let tickets = Arc::new(Mutex::new(Tickets::default()));
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tickets = tickets.clone();
            while connections.try_join_next().is_some() {}
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let tickets = tickets.clone();
                    async move { Ok::<_, Infallible>(handle(req, &tickets).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    tracing::info!(%addr, "demo upstream listening");
    Ok((addr, DemoHandle { addr, task }))
}

/// Points a configuration at the demo upstream at `demo` (see the module documentation).
pub fn configure(config: &mut Config, demo: SocketAddr) {
    let base = format!("http://{demo}");
    config.set_env("CRM_BASE_URL", base.clone());
    config.set_env("HELPDESK_URL", base);
    for (name, placeholder) in [
        ("CRM_TOKEN", "demo-crm-token"),
        ("HELPDESK_USER", "demo"),
        ("HELPDESK_TOKEN", "demo-helpdesk-token"),
        ("SHOP_API_KEY", "demo-shop-key"),
    ] {
        if config.var(name).is_none_or(|v| v.is_empty()) {
            config.set_env(name, placeholder);
        }
    }
    config.routes.insert("shop.example.com".to_string(), demo);
    config.routes.insert(demo.to_string(), demo);
}

/// [`configure`], and for serving a whole project in demo mode: every other variable the
/// project needs and the environment does not set gets a placeholder (`env.NAME`:
/// `https://name.demo.invalid`; `secret.NAME`: `demo-NAME`), and every upstream request of every
/// action is routed to the demo upstream (`*`), so nothing leaves the machine. Actions whose
/// API the demo does not know get its 404 and answer with their `on 404` or `fallback`.
pub fn configure_project(config: &mut Config, demo: SocketAddr, project: &ir::Project) {
    configure(config, demo);
    for action in &project.actions {
        for name in &action.env {
            if config.var(name).is_none_or(|v| v.is_empty()) {
                let host = name.to_ascii_lowercase().replace('_', "-");
                config.set_env(name.clone(), format!("https://{host}.demo.invalid"));
            }
        }
        for name in &action.secrets {
            if config.var(name).is_none_or(|v| v.is_empty()) {
                config.set_env(name.clone(), format!("demo-{name}"));
            }
        }
    }
    config.routes.insert("*".to_string(), demo);
}

#[derive(Default)]
struct Tickets {
    next: u32,
    by_key: HashMap<String, String>,
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn has_auth(req: &Request<Incoming>, name: header::HeaderName, prefix: &str) -> bool {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(prefix) && v.len() > prefix.len())
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

async fn handle(req: Request<Incoming>, tickets: &Mutex<Tickets>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let unauthorized = || reply(401, json!({"error": "missing credentials"}));
    match (req.method(), path.as_str()) {
        (&Method::GET, "/v1/customers") => {
            if !has_auth(&req, header::AUTHORIZATION, "Bearer ") {
                return unauthorized();
            }
            let phone = query_param(&query, "phone").unwrap_or_default();
            reply(200, customers(&phone))
        }
        (&Method::GET, p) if p.starts_with("/api/orders/") => {
            if !has_auth(&req, header::HeaderName::from_static("x-shop-key"), "") {
                return unauthorized();
            }
            let n = percent_encoding::percent_decode_str(&p["/api/orders/".len()..])
                .decode_utf8_lossy()
                .into_owned();
            match order(&n) {
                Some(o) => reply(200, o),
                None => reply(404, json!({"error": "not found"})),
            }
        }
        (&Method::POST, "/api/v2/tickets") => {
            if !has_auth(&req, header::AUTHORIZATION, "Basic ") {
                return unauthorized();
            }
            let key = req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let Ok(body) = serde_json::from_slice::<Value>(&body) else {
                return reply(400, json!({"error": "the body is not JSON"}));
            };
            if body
                .pointer("/ticket/subject")
                .and_then(Value::as_str)
                .is_none()
            {
                return reply(422, json!({"error": "ticket.subject is required"}));
            }
            let mut t = tickets.lock().unwrap_or_else(|p| p.into_inner());
            let existing = key.as_ref().and_then(|k| t.by_key.get(k).cloned());
            let id = existing.unwrap_or_else(|| {
                t.next += 1;
                let id = format!("T-{}", 1000 + t.next);
                if let Some(k) = key {
                    t.by_key.insert(k, id.clone());
                }
                id
            });
            reply(201, json!({"ticket": {"id": id, "status": "new"}}))
        }
        _ => reply(404, json!({"error": "not found"})),
    }
}

fn customers(phone: &str) -> Value {
    match phone {
        "+4930123456" => json!({
            "data": [{
                "id": "c-1042",
                "name": "Max Mustermann",
                "company": {"name": "Beispiel GmbH"},
                "tickets": [{"status": "open"}, {"status": "closed"}]
            }],
            "total": 1
        }),
        "+4940555000" => json!({
            "data": [{"id": "c-2077", "name": "Erika Musterfrau", "tickets": []}],
            "total": 1
        }),
        _ => json!({"data": [], "total": 0}),
    }
}

fn order(n: &str) -> Option<Value> {
    match n {
        "100234" => Some(json!({"order": {
            "status": "shipped",
            "shipment": {"carrier": "DHL", "estimated_delivery": "2026-11-24"},
            "items": [{"name": "Router X2"}, {"name": "Power cable"}]
        }})),
        "100235" => Some(json!({"order": {
            "status": "processing",
            "items": [{"name": "Mesh repeater"}]
        }})),
        _ => None,
    }
}
