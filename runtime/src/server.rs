//! The HTTP server (hyper, HTTP/1.1 with keep-alive).
//!
//! | route | answer |
//! |---|---|
//! | `POST /actions/{name}` | the action's answer (`X-Call-Id`, `X-Call-From` fill `call.id`, `call.from`) |
//! | `GET /actions` | every action with its description and JSON Schemas of inputs and outputs |
//! | `DELETE /calls/{id}` | `204`: the call's `scope call` cache entries are dropped |
//! | `GET /healthz` | `200 {"status":"ok"}` |
//! | `GET /metrics` | Prometheus metrics (OpenMetrics text) |
//! | `POST /vapi`, `POST /retell/{action}`, `POST /mcp`, `GET /tools` | voice platforms, see [`crate::platforms`] |
//!
//! With [`Config::token`](crate::Config::token) set, `/actions` and `/calls` require
//! `Authorization: Bearer TOKEN` (`401` otherwise); `/healthz` and `/metrics` stay open for
//! probes and scrapers. Listening on a non-loopback address without a token is refused.
//! Request bodies larger than `max_body_bytes` get `413`; a request not read within
//! `request_read_timeout` gets `408` (headers: the connection is closed). Past
//! [`Config::max_in_flight`](crate::Config::max_in_flight) concurrent `POST`s, the next get a
//! fast `503` (`overloaded`, `Retry-After: 1`): excess load is shed, never queued.
//!
//! Threads: with [`Config::worker_threads`](crate::Config::worker_threads) (`mca serve
//! --threads`), the accepting task hands each new connection to the serving thread with the
//! fewest open ones; each such thread runs a single-threaded async runtime with its own
//! upstream connection pool, so a request and its upstream exchange stay on one thread.
//! Before such a thread sleeps it polls for a short, adaptive window
//! ([`Config::idle_poll`](crate::Config::idle_poll), see `idle.rs`).
//! Without it, connections are served on the async runtime that runs [`Server::run`].
//!
//! Shutdown: when the `shutdown` future completes, the listener closes, idle keep-alive
//! connections are closed, and in-flight requests finish (each action answers by its deadline)
//! within `drain_timeout`, on every serving thread.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderName, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use crate::execute::Runtime;
use crate::response::{CallContext, ErrorBody};

/// Why the server could not run.
#[derive(Debug)]
pub enum ServeError {
    Io(std::io::Error),
    /// A non-loopback listen address needs [`Config::token`](crate::Config::token) (`MCA_TOKEN`).
    TokenRequired {
        addr: SocketAddr,
    },
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Io(e) => write!(f, "{e}"),
            ServeError::TokenRequired { addr } => write!(
                f,
                "listening on {addr} (not loopback) requires a caller token: set MCA_TOKEN"
            ),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<std::io::Error> for ServeError {
    fn from(e: std::io::Error) -> Self {
        ServeError::Io(e)
    }
}

/// A bound, not yet running server (bind first to learn the address of port 0).
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
}

/// Binds `listen` and serves until `shutdown` completes, then drains.
pub async fn serve(
    runtime: Arc<Runtime>,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    Server::bind(listen).await?.run(runtime, shutdown).await
}

impl Server {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Server> {
        Server::from_listener(TcpListener::bind(addr).await?)
    }

    pub fn from_listener(listener: TcpListener) -> std::io::Result<Server> {
        let local_addr = listener.local_addr()?;
        Ok(Server {
            listener,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests
    /// finish (at most `drain_timeout`). With [`Config::worker_threads`](crate::Config) set,
    /// connections are served on that many threads of their own; otherwise on the async
    /// runtime this runs on.
    pub async fn run(
        self,
        runtime: Arc<Runtime>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let config = runtime.config().clone();
        if !self.local_addr.ip().is_loopback() && config.token.is_none() {
            return Err(ServeError::TokenRequired {
                addr: self.local_addr,
            });
        }
        let limit = InFlight::new(config.max_in_flight);
        let workers = Workers::start(config.worker_threads, &runtime, &limit)?;
        tracing::info!(
            addr = %self.local_addr,
            actions = runtime.actions().count(),
            threads = config.worker_threads,
            idle_poll_us = if config.worker_threads > 0 {
                config.idle_poll.as_micros()
            } else {
                0
            },
            "serving"
        );
        // Deferred writes and follow-ups, including those a previous run left pending.
        let worker = runtime.start_worker();
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let here = match &workers {
                            Some(workers) => workers.hand_over(stream, peer),
                            None => Some(stream),
                        };
                        if let Some(stream) = here {
                            tokio::spawn(connection(&runtime, &limit, stream, peer, &graceful));
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        tracing::info!(
            connections = graceful.count() + workers.as_ref().map_or(0, Workers::open),
            "shutting down; draining in-flight requests"
        );
        let drained = async {
            let (here, there) = tokio::join!(drain(graceful, config.drain_timeout), async {
                match workers {
                    Some(workers) => workers.drain().await,
                    None => true,
                }
            });
            here && there
        };
        if drained.await {
            tracing::info!("drained");
        } else {
            tracing::warn!("drain timeout reached; closed the remaining connections");
        }
        if let Some(worker) = worker {
            worker.shutdown().await;
        }
        Ok(())
    }
}

/// Serves one connection until it closes (or, watched by `graceful`, until shutdown).
fn connection(
    runtime: &Arc<Runtime>,
    limit: &InFlight,
    stream: TcpStream,
    peer: SocketAddr,
    graceful: &GracefulShutdown,
) -> impl Future<Output = ()> + Send + 'static {
    let rt = runtime.clone();
    let limit = limit.clone();
    let config = runtime.config();
    let service = service_fn(move |req| {
        let rt = rt.clone();
        // Admission: past the limit, a fast 503 instead of a queue.
        let slot = limit.enter(&rt, &req);
        async move {
            let _busy = crate::idle::busy();
            Ok::<_, Infallible>(match slot {
                Ok(_slot) => handle(rt, req).await,
                Err(Shed) => overloaded(),
            })
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(config.request_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let conn = graceful.watch(conn);
    async move {
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// Closes idle connections and waits for the others to finish, at most `timeout`. True when
/// all finished in time.
async fn drain(graceful: GracefulShutdown, timeout: std::time::Duration) -> bool {
    tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_ok()
}

/// The serving threads of [`Config::worker_threads`](crate::Config): each runs a
/// single-threaded async runtime that serves the connections handed to it, with its own
/// upstream connection pool ([`Runtime::attach_thread`]).
struct Workers {
    threads: Vec<WorkerThread>,
}

/// The open-connection count of a serving thread that is gone: never chosen again.
const GONE: usize = usize::MAX;

struct WorkerThread {
    /// New connections for this thread; closed at shutdown, which starts its drain.
    connections: tokio::sync::mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    /// Its open connections (counted up here when handed over, down there when closed).
    open: Arc<AtomicUsize>,
    /// Completes with the thread's drain result when it has drained.
    done: tokio::sync::oneshot::Receiver<bool>,
}

impl Workers {
    /// Starts `count` threads; `None` for 0.
    fn start(
        count: usize,
        runtime: &Arc<Runtime>,
        limit: &InFlight,
    ) -> std::io::Result<Option<Workers>> {
        if count == 0 {
            return Ok(None);
        }
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let idle_poll = runtime.config().idle_poll;
            let async_runtime = crate::idle::runtime(idle_poll)?;
            let (connections, mut incoming) = tokio::sync::mpsc::unbounded_channel();
            let (finished, done) = tokio::sync::oneshot::channel();
            let open = Arc::new(AtomicUsize::new(0));
            let (runtime, limit, counter) = (runtime.clone(), limit.clone(), open.clone());
            std::thread::Builder::new()
                .name(format!("mca-serve-{index}"))
                .spawn(move || {
                    async_runtime.block_on(async move {
                        crate::idle::start(idle_poll);
                        if let Err(e) = runtime.attach_thread() {
                            tracing::warn!(error = %e, "serving thread shares the upstream client");
                        }
                        let graceful = GracefulShutdown::new();
                        while let Some((stream, peer)) = incoming.recv().await {
                            let stream = match TcpStream::from_std(stream) {
                                Ok(s) => s,
                                Err(e) => {
                                    counter.fetch_sub(1, Ordering::Relaxed);
                                    tracing::warn!(error = %e, "cannot serve a connection");
                                    continue;
                                }
                            };
                            let conn = connection(&runtime, &limit, stream, peer, &graceful);
                            let counter = counter.clone();
                            tokio::spawn(async move {
                                crate::idle::counted(conn).await;
                                counter.fetch_sub(1, Ordering::Relaxed);
                            });
                        }
                        let drained = drain(graceful, runtime.config().drain_timeout).await;
                        let _ = finished.send(drained);
                    });
                })?;
            threads.push(WorkerThread {
                connections,
                open,
                done,
            });
        }
        Ok(Some(Workers { threads }))
    }

    /// Hands a new connection to the thread with the fewest open ones. Gives it back, to be
    /// served here, only if every serving thread is gone (which a bug would have to cause).
    fn hand_over(&self, stream: TcpStream, peer: SocketAddr) -> Option<TcpStream> {
        // Leaves this runtime's reactor; the worker registers it with its own.
        let mut stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand over a connection");
                return None;
            }
        };
        loop {
            let Some(thread) = self
                .threads
                .iter()
                .filter(|t| t.open.load(Ordering::Relaxed) != GONE)
                .min_by_key(|t| t.open.load(Ordering::Relaxed))
            else {
                return TcpStream::from_std(stream).ok();
            };
            thread.open.fetch_add(1, Ordering::Relaxed);
            match thread.connections.send((stream, peer)) {
                Ok(()) => return None,
                Err(tokio::sync::mpsc::error::SendError((back, _))) => {
                    thread.open.store(GONE, Ordering::Relaxed);
                    tracing::error!("a serving thread stopped; the others serve its share");
                    stream = back;
                }
            }
        }
    }

    /// Open connections on all threads.
    fn open(&self) -> usize {
        self.threads
            .iter()
            .map(|t| t.open.load(Ordering::Relaxed))
            .filter(|&n| n != GONE)
            .sum()
    }

    /// Stops handing over connections and waits until every thread has drained (each within
    /// `drain_timeout`). True when all drained in time.
    async fn drain(self) -> bool {
        let mut all = true;
        let mut done = Vec::with_capacity(self.threads.len());
        for thread in self.threads {
            drop(thread.connections);
            done.push(thread.done);
        }
        for d in done {
            // A thread that panicked counts as not drained.
            all &= d.await.unwrap_or(false);
        }
        all
    }
}

type Reply = Response<Full<Bytes>>;

/// Admission control: at most `max_in_flight` calls (`POST` requests: actions, platform
/// webhooks, MCP) run at once; the next ones get `503 overloaded` with `Retry-After: 1` at
/// once, so excess load never waits in an unbounded queue. `GET` (probes, metrics, schemas)
/// is never refused.
#[derive(Clone)]
struct InFlight(Option<Arc<tokio::sync::Semaphore>>);

impl InFlight {
    fn new(max: usize) -> InFlight {
        InFlight((max > 0).then(|| Arc::new(tokio::sync::Semaphore::new(max))))
    }

    fn enter(
        &self,
        runtime: &Runtime,
        req: &Request<Incoming>,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Shed> {
        let Some(sem) = &self.0 else { return Ok(None) };
        if req.method() != Method::POST {
            return Ok(None);
        }
        match sem.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => {
                runtime.metrics.shed("post");
                tracing::debug!("overloaded: request shed");
                Err(Shed)
            }
        }
    }
}

/// A request refused by admission control.
struct Shed;

fn overloaded() -> Reply {
    let mut r = error_reply(
        503,
        "overloaded",
        "too many calls in flight; try again shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

fn json_reply(status: u16, body: &Value) -> Reply {
    bytes_reply(status, body.to_string().into_bytes())
}

/// A reply whose body is JSON text already.
fn bytes_reply(status: u16, body: Vec<u8>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_reply(status: u16, code: &str, message: impl Into<String>) -> Reply {
    json_reply(status, &ErrorBody::new(status, code, message).to_json())
}

/// Compares in time independent of where the first difference is.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn authorized(runtime: &Runtime, req: &Request<Incoming>) -> bool {
    let Some(token) = &runtime.config().token else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| same_token(given, token.as_bytes()))
}

/// A path segment, percent-decoded (borrowed when it has no escapes).
fn decode(segment: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy()
}

/// The first `N` segments of a path, and how many there are (at most `N`: a longer path
/// matches no route anyway).
fn segments<const N: usize>(path: &str) -> ([&str; N], usize) {
    let mut out = [""; N];
    let mut n = 0;
    for (slot, segment) in out.iter_mut().zip(path.trim_matches('/').split('/')) {
        *slot = segment;
        n += 1;
    }
    (out, n)
}

async fn handle(runtime: Arc<Runtime>, req: Request<Incoming>) -> Reply {
    let arrived = std::time::Instant::now();
    // The URI is shared, not copied; the routes have at most 3 segments.
    let uri = req.uri().clone();
    let path = uri.path();
    let (buffer, n) = segments::<4>(path);
    let segments = &buffer[..n];
    let method = req.method().clone();
    match (&method, segments) {
        (&Method::GET, ["healthz"]) => return json_reply(200, &json!({"status": "ok"})),
        (&Method::GET, ["metrics"]) => {
            let mut r = Response::new(Full::new(Bytes::from(runtime.metrics_text())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            return r;
        }
        (_, ["healthz" | "metrics"]) => {
            return error_reply(405, "method_not_allowed", "use GET");
        }
        (_, ["actions"] | ["actions", _] | ["calls", _]) => {}
        // Voice platforms: tool definitions, webhook envelopes, MCP (their own auth). Boxed,
        // so that this future (which hyper moves for every request) stays the size of the
        // direct route's.
        (_, ["vapi"] | ["retell", _] | ["mcp"] | ["tools"]) => {
            return Box::pin(crate::platforms::http::handle(runtime, req)).await;
        }
        _ => return error_reply(404, "not_found", format!("no route {path}")),
    }
    if !authorized(&runtime, &req) {
        let mut r = error_reply(401, "unauthorized", "a valid bearer token is required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    match (&method, segments) {
        (&Method::GET, ["actions"]) => {
            json_reply(200, &crate::schema::describe_all(runtime.actions()))
        }
        (&Method::POST, ["actions", name]) => {
            let name = decode(name);
            call_action(runtime, &name, req, arrived).await
        }
        (&Method::DELETE, ["calls", id]) => {
            // An optional JSON object gives the follow-ups' inputs by name (and `from`).
            let (parts, body) = req.into_parts();
            let body = match crate::platforms::http::read_body(&runtime, &parts.headers, body).await
            {
                Ok(b) => b,
                Err(reply) => return reply,
            };
            let details =
                if body.iter().all(u8::is_ascii_whitespace) {
                    serde_json::Map::new()
                } else {
                    match serde_json::from_slice::<Value>(&body) {
                        Ok(Value::Object(m)) => m,
                        _ => return error_reply(
                            400,
                            "invalid_body",
                            "the body of DELETE /calls/{id} is a JSON object of follow-up inputs",
                        ),
                    }
                };
            let call = CallContext {
                id: Some(decode(id).into_owned()),
                from: details
                    .get("from")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            };
            runtime.end_call_with(&call, &details).await;
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        (_, ["actions"]) => error_reply(405, "method_not_allowed", "use GET"),
        (_, ["actions", _]) => error_reply(405, "method_not_allowed", "use POST"),
        _ => error_reply(405, "method_not_allowed", "use DELETE"),
    }
}

static X_CALL_ID: HeaderName = HeaderName::from_static("x-call-id");
static X_CALL_FROM: HeaderName = HeaderName::from_static("x-call-from");

/// A call header's text; `Err` names the header when it is not valid text.
fn header_text<'a>(
    req: &Request<Incoming>,
    name: &'a HeaderName,
) -> Result<Option<String>, &'a str> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Ok(_) => Ok(None),
            Err(_) => Err(name.as_str()),
        },
    }
}

async fn call_action(
    runtime: Arc<Runtime>,
    name: &str,
    req: Request<Incoming>,
    arrived: std::time::Instant,
) -> Reply {
    if runtime.action(name).is_none() {
        return error_reply(
            404,
            "unknown_action",
            format!("there is no action named `{name}`"),
        );
    }
    let call = match (
        header_text(&req, &X_CALL_ID),
        header_text(&req, &X_CALL_FROM),
    ) {
        (Ok(id), Ok(from)) => CallContext { id, from },
        (Err(name), _) | (_, Err(name)) => {
            return error_reply(
                400,
                "invalid_header",
                format!("the {name} header is not valid text"),
            )
        }
    };
    let (parts, body) = req.into_parts();
    let body = match crate::platforms::http::read_body(&runtime, &parts.headers, body).await {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let inputs = match crate::hooks::decode_body(&body) {
        Ok(v) => v,
        Err(e) => return json_reply(e.http_status, &e.to_json()),
    };
    let response = runtime.execute_since(name, inputs, call, arrived).await;
    bytes_reply(response.http_status(), response.to_json_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper moves each request's future into place, and every move of a future copies all of
    /// it: 8 KB per request before the platform routes and each fetch were boxed. A larger
    /// future here means a rarely used branch is held inline; box that branch.
    #[test]
    fn a_requests_future_stays_small() {
        let rt = Arc::new(crate::test_support::lookup_customer());
        let size =
            crate::test_support::size_of_future(|req: Request<Incoming>| handle(rt.clone(), req));
        assert!(size <= 4096, "a request's future is {size} bytes");
    }

    #[test]
    fn token_comparison() {
        assert!(same_token(b"abc", b"abc"));
        assert!(!same_token(b"abd", b"abc"));
        assert!(!same_token(b"ab", b"abc"));
    }
}
