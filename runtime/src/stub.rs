//! A scriptable upstream on loopback, for tests and for `mca test`.
//!
//! [`Stub::start`] binds `127.0.0.1:0` and answers successive requests with successive
//! [`Reply`]s (the last one repeats), recording every request. Route all upstream requests of
//! a runtime to it with `Config::default().route("*", stub.addr())`: nothing reaches the
//! network. Faults: delays, never answering, connection resets (TCP RST), invalid JSON,
//! oversized and slowly dripping bodies, truncated bodies, and bodies whose end is the
//! connection's slow close. A request left waiting (delay, hang, slow close) ends as soon as the
//! client closes its side, so [`Stub::open_connections`] and [`Stub::in_flight`] show what the
//! client still holds.
//!
//! OAuth2 token requests (form bodies with `grant_type=client_credentials`) are answered with
//! a token by the stub itself and recorded separately ([`Stub::token_requests`]), so scripted
//! replies only answer the action's own requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use mca_compiler::ir::UpstreamStub;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON body (or none) with a status and headers.
    Json {
        status: u16,
        body: Option<Value>,
        headers: Vec<(String, String)>,
    },
    /// Raw bytes as the body (for invalid JSON).
    Raw {
        status: u16,
        body: Bytes,
        headers: Vec<(String, String)>,
    },
    /// Waits, then answers.
    Delay(Duration, Box<Reply>),
    /// Never answers (the connection stays open).
    Hang,
    /// Resets the connection (TCP RST) without answering.
    Reset,
    /// Sends the status and headers at once, then `chunks` pieces of the body, one every
    /// `every`.
    Drip {
        status: u16,
        chunk: Bytes,
        chunks: usize,
        every: Duration,
    },
    /// A complete response whose body ends with the connection (`Connection: close`, no
    /// length), which is closed only after `close_after`.
    SlowClose {
        status: u16,
        body: Bytes,
        close_after: Duration,
    },
    /// Announces `declared` bytes of body (`Content-Length`), sends `body` (fewer), then closes
    /// the connection.
    Truncated {
        status: u16,
        body: Bytes,
        declared: usize,
    },
    /// One of these, picked at random for each request (for load runs: nine answers and one
    /// fault make a 10% failure rate).
    Random(Vec<Reply>),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Json {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply::Json {
            status,
            body: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Json {
                status,
                body,
                mut headers,
            } => {
                headers.push((name.into(), value.into()));
                Reply::Json {
                    status,
                    body,
                    headers,
                }
            }
            Reply::Raw {
                status,
                body,
                mut headers,
            } => {
                headers.push((name.into(), value.into()));
                Reply::Raw {
                    status,
                    body,
                    headers,
                }
            }
            other => other,
        }
    }

    pub fn raw(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::Raw {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn delayed(self, by: Duration) -> Reply {
        Reply::Delay(by, Box::new(self))
    }
}

impl From<&UpstreamStub> for Reply {
    fn from(s: &UpstreamStub) -> Reply {
        match s {
            UpstreamStub::Respond {
                status,
                body,
                headers,
            } => Reply::Json {
                status: *status,
                body: body.clone(),
                headers: headers.clone(),
            },
            UpstreamStub::Timeout => Reply::Hang,
            UpstreamStub::Reset => Reply::Reset,
        }
    }
}

/// A request the stub received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent: path and query, still percent-encoded.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Recorded {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order (name case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[derive(Default)]
struct State {
    replies: Vec<Reply>,
    requests: Vec<Recorded>,
    token_requests: Vec<Recorded>,
    /// `expires_in` of the tokens the stub hands out; 3600 unless set.
    token_lifetime: Option<u64>,
    connections: usize,
    /// Connections open now.
    open: usize,
    /// Requests being answered now.
    in_flight: usize,
}

/// Decrements a counter of the state when dropped.
struct Gauge {
    state: Arc<Mutex<State>>,
    which: fn(&mut State) -> &mut usize,
}

impl Gauge {
    fn new(state: &Arc<Mutex<State>>, which: fn(&mut State) -> &mut usize) -> Gauge {
        *which(&mut state.lock().unwrap_or_else(|p| p.into_inner())) += 1;
        Gauge {
            state: state.clone(),
            which,
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = (self.which)(&mut s);
        *n = n.saturating_sub(1);
    }
}

/// The running stub; stops when dropped.
pub struct Stub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type StubBody = BoxBody<Bytes, Infallible>;

impl Stub {
    /// Starts answering on `127.0.0.1:0`.
    pub async fn start(replies: Vec<Reply>) -> std::io::Result<Stub> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            replies,
            ..State::default()
        }));
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(Stub { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the script; the count of answered requests starts again at zero.
    pub fn set_replies(&self, replies: Vec<Reply>) {
        let mut s = self.lock();
        s.replies = replies;
        s.requests.clear();
    }

    /// Every (non-token) request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// How many (non-token) requests arrived.
    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    /// OAuth2 token requests answered by the stub itself.
    pub fn token_requests(&self) -> Vec<Recorded> {
        self.lock().token_requests.clone()
    }

    /// Sets the `expires_in` (seconds) of the OAuth2 tokens the stub hands out.
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.lock().token_lifetime = Some(seconds);
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// How many TCP connections are open now (idle keep-alive connections included).
    pub fn open_connections(&self) -> usize {
        self.lock().open
    }

    /// How many requests are being answered now (a client that gave up on one closes its
    /// connection, which ends it).
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    // Dropping the set (when the stub's task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.lock().unwrap_or_else(|p| p.into_inner()).connections += 1;
        let _ = stream.set_nodelay(true);
        // A second handle on the socket, to reset it: linger 0, then close.
        let raw = match stream.into_std() {
            Ok(s) => s,
            Err(_) => continue,
        };
        let keep = raw.try_clone().ok();
        let Ok(stream) = tokio::net::TcpStream::from_std(raw) else {
            continue;
        };
        let keep = Arc::new(Mutex::new(keep));
        let state = state.clone();
        while connections.try_join_next().is_some() {}
        let open = Gauge::new(&state, |s| &mut s.open);
        connections.spawn(async move {
            let _open = open;
            let service = service_fn(move |req| {
                let state = state.clone();
                let keep = keep.clone();
                async move { answer(state, keep, req).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the stub")
    }
}

impl std::error::Error for ResetConnection {}

async fn answer(
    state: Arc<Mutex<State>>,
    keep: Arc<Mutex<Option<std::net::TcpStream>>>,
    req: Request<Incoming>,
) -> Result<Response<StubBody>, ResetConnection> {
    let _in_flight = Gauge::new(&state, |s| &mut s.in_flight);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let is_token_request = recorded.method == "POST"
        && recorded
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
        && String::from_utf8_lossy(&recorded.body).contains("grant_type=client_credentials");
    let reply = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        if is_token_request {
            let n = s.token_requests.len() + 1;
            s.token_requests.push(recorded);
            let expires_in = s.token_lifetime.unwrap_or(3600);
            Reply::json(
                200,
                serde_json::json!({"access_token": format!("stub-token-{n}"), "token_type": "Bearer", "expires_in": expires_in}),
            )
        } else {
            let i = s.requests.len();
            s.requests.push(recorded);
            s.replies
                .get(i)
                .or(s.replies.last())
                .cloned()
                .unwrap_or_else(|| Reply::status(200))
        }
    };
    let mut reply = reply;
    loop {
        match reply {
            Reply::Random(choices) => {
                if choices.is_empty() {
                    reply = Reply::status(200);
                } else {
                    reply = choices[fastrand::usize(..choices.len())].clone();
                }
            }
            Reply::Delay(d, inner) => {
                if until_peer_closes(&keep, Some(d)).await {
                    return Err(ResetConnection);
                }
                reply = *inner;
            }
            Reply::Hang => {
                until_peer_closes(&keep, None).await;
                return Err(ResetConnection);
            }
            Reply::SlowClose {
                status,
                body,
                close_after,
            } => {
                let head = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
                    reason_phrase(status)
                );
                write_raw(&keep, &[head.as_bytes(), &body].concat()).await;
                until_peer_closes(&keep, Some(close_after)).await;
                shutdown_raw(&keep);
                return Err(ResetConnection);
            }
            Reply::Truncated {
                status,
                body,
                declared,
            } => {
                let head = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n",
                    reason_phrase(status)
                );
                write_raw(&keep, &[head.as_bytes(), &body].concat()).await;
                shutdown_raw(&keep);
                return Err(ResetConnection);
            }
            Reply::Reset => {
                let socket = keep.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(socket) = socket {
                    let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
                }
                // Erroring makes hyper close its handle too: the close sends RST.
                return Err(ResetConnection);
            }
            Reply::Json {
                status,
                body,
                headers,
            } => {
                let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
                let mut headers = headers;
                if !headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                return Ok(respond(status, &headers, Full::new(bytes).boxed()));
            }
            Reply::Raw {
                status,
                body,
                headers,
            } => return Ok(respond(status, &headers, Full::new(body).boxed())),
            Reply::Drip {
                status,
                chunk,
                chunks,
                every,
            } => {
                let stream = futures_util::stream::unfold(0usize, move |i| {
                    let chunk = chunk.clone();
                    async move {
                        if i >= chunks {
                            return None;
                        }
                        tokio::time::sleep(every).await;
                        Some((Ok::<_, Infallible>(Frame::data(chunk)), i + 1))
                    }
                });
                return Ok(respond(
                    status,
                    &[],
                    BodyExt::boxed(StreamBody::new(stream)),
                ));
            }
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status")
}

type Keep = Arc<Mutex<Option<std::net::TcpStream>>>;

/// Whether the client closed its side (or the socket failed). Non-blocking.
fn peer_closed(keep: &Keep) -> bool {
    let guard = keep.lock().unwrap_or_else(|p| p.into_inner());
    let Some(socket) = guard.as_ref() else {
        return true;
    };
    match socket.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Waits `limit` (forever if `None`), or until the client closes its side: `true` then.
async fn until_peer_closes(keep: &Keep, limit: Option<Duration>) -> bool {
    let end = limit.map(|d| tokio::time::Instant::now() + d);
    loop {
        if peer_closed(keep) {
            return true;
        }
        let step = Duration::from_millis(10);
        match end {
            Some(end) => {
                let now = tokio::time::Instant::now();
                if now >= end {
                    return false;
                }
                tokio::time::sleep(step.min(end - now)).await;
            }
            None => tokio::time::sleep(step).await,
        }
    }
}

/// Writes bytes straight to the socket, past hyper (for malformed responses).
async fn write_raw(keep: &Keep, mut bytes: &[u8]) {
    use std::io::Write;
    for _ in 0..1000 {
        if bytes.is_empty() {
            return;
        }
        let written = {
            let guard = keep.lock().unwrap_or_else(|p| p.into_inner());
            let Some(mut socket) = guard.as_ref() else {
                return;
            };
            socket.write(bytes)
        };
        match written {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(1)).await
            }
            Err(_) => return,
        }
    }
}

/// Closes the connection (FIN both ways) under hyper's feet.
fn shutdown_raw(keep: &Keep) {
    let guard = keep.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(socket) = guard.as_ref() {
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
}

fn respond(status: u16, headers: &[(String, String)], body: StubBody) -> Response<StubBody> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (n, v) in headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(n.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(n, v);
        }
    }
    r
}
