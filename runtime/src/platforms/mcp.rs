//! MCP (Model Context Protocol) server: every action is a tool. One message handler
//! ([`handle`]) behind two transports: stdio ([`serve_stdio`], `mca mcp`) and streamable HTTP
//! (`POST /mcp` on `mca serve`, see `platforms::http`).
//!
//! Both protocol eras are served, each request by the rules of the era it uses:
//! - **2026-07-28** (stateless): a request whose `params._meta` carries
//!   `io.modelcontextprotocol/protocolVersion`. `server/discover` answers the supported versions,
//!   capabilities and server identity; results carry `resultType: "complete"`, and the list and
//!   discovery results the cache hints `ttlMs` and `cacheScope`. A version the server does not
//!   implement gets `UnsupportedProtocolVersionError` (`-32022`, with `supported` and
//!   `requested`; HTTP `400`). Over HTTP, `Mcp-Method` and `Mcp-Name` headers, when sent, must
//!   match the body (`-32020`, HTTP `400`).
//! - **2025-11-25 and earlier** (2025-06-18, 2025-03-26, 2024-11-05): the `initialize`
//!   handshake negotiates the version (the client's when supported, else 2025-11-25);
//!   `notifications/initialized` and other notifications are accepted silently (HTTP `202`);
//!   `ping` answers `{}`. No session is kept (no `Mcp-Session-Id`): every request stands
//!   alone, so `tools/list` and `tools/call` work on any connection.
//!
//! `tools/list` answers every action as a `Tool` with `inputSchema` and `outputSchema`
//! ([`super::tools::mcp_tool`]); there is one page (no cursor). `tools/call` runs the action
//! with `arguments` and answers:
//! - an answer (ok or fallback): `structuredContent` with the outputs (conforming to the
//!   `outputSchema`), one text block with the [voice text](super::voice), `isError: false`,
//!   and `_meta` `{"mca/status", "mca/reason"?}`;
//! - invalid arguments or an upstream failure without a fallback: one text block with the
//!   message and `isError: true` (tool execution errors go to the model, so it can correct
//!   itself);
//! - an unknown tool: JSON-RPC error `-32602`.
//!
//! Over HTTP, `X-Call-Id` and `X-Call-From` headers fill `call.id` and `call.from`.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::tools::mcp_tool;
use super::voice::response_text;
use crate::execute::Runtime;
use crate::response::{ActionResponse, CallContext};

/// The stateless revision.
pub const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];
/// Revisions negotiated with `initialize`, newest first.
pub const LEGACY_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const HEADER_MISMATCH: i64 = -32020;
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// How long clients may cache the tool list and the discovery result.
const TTL_MS: u64 = 5 * 60 * 1000;

const INSTRUCTIONS: &str = "Each tool is a mid-call action of a live phone call: it calls one \
    API within a fixed time and always answers. The text content is a sentence for the caller; \
    structuredContent holds the outputs.";

/// What a message gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A JSON-RPC response.
    Reply(Value),
    /// Nothing (a notification or a client's response): HTTP `202`.
    Accepted,
    /// The message is not valid JSON-RPC: this error response (HTTP `400`).
    Invalid(Value),
}

/// Whether a protocol version is served (either era).
pub fn is_supported(version: &str) -> bool {
    MODERN_VERSIONS.contains(&version) || LEGACY_VERSIONS.contains(&version)
}

pub fn error_response(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let (Some(data), Value::Object(e)) = (data, &mut error) {
        e.insert("data".into(), data);
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// `UnsupportedProtocolVersionError` for `requested`.
pub fn unsupported_version(id: &Value, requested: &str) -> Value {
    let supported: Vec<&str> = MODERN_VERSIONS
        .iter()
        .chain(LEGACY_VERSIONS.iter())
        .copied()
        .collect();
    error_response(
        id,
        UNSUPPORTED_PROTOCOL_VERSION,
        &format!("unsupported protocol version {requested}"),
        Some(json!({"supported": supported, "requested": requested})),
    )
}

pub fn is_unsupported_version(response: &Value) -> bool {
    response.pointer("/error/code").and_then(Value::as_i64) == Some(UNSUPPORTED_PROTOCOL_VERSION)
}

/// Checks the `Mcp-Method` and `Mcp-Name` headers of an HTTP request against its body; the
/// error response when one is sent and differs.
pub fn header_mismatch(message: &Value, method: Option<&str>, name: Option<&str>) -> Option<Value> {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let body_method = message.get("method").and_then(Value::as_str);
    if let Some(m) = method {
        if Some(m) != body_method {
            return Some(error_response(
                &id,
                HEADER_MISMATCH,
                "the Mcp-Method header does not match the body",
                None,
            ));
        }
    }
    if let Some(n) = name {
        let body_name = message.pointer("/params/name").and_then(Value::as_str);
        if Some(n) != body_name {
            return Some(error_response(
                &id,
                HEADER_MISMATCH,
                "the Mcp-Name header does not match the body",
                None,
            ));
        }
    }
    None
}

/// Handles one JSON-RPC message (see the module documentation).
pub async fn handle(runtime: &Runtime, message: &Value, call: CallContext) -> Outcome {
    let Value::Object(m) = message else {
        let text = if message.is_array() {
            "batches are not supported: send one message at a time"
        } else {
            "a JSON-RPC message is an object"
        };
        return Outcome::Invalid(error_response(&Value::Null, INVALID_REQUEST, text, None));
    };
    let id = m.get("id").cloned();
    let method = m.get("method").and_then(Value::as_str);
    if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Outcome::Invalid(error_response(
            id.as_ref().unwrap_or(&Value::Null),
            INVALID_REQUEST,
            "jsonrpc must be \"2.0\"",
            None,
        ));
    }
    let (Some(id), Some(method)) = (id, method) else {
        if method.is_some() || m.contains_key("result") || m.contains_key("error") {
            // A notification, or a response to a request we never send.
            return Outcome::Accepted;
        }
        return Outcome::Invalid(error_response(
            &Value::Null,
            INVALID_REQUEST,
            "a request has a method",
            None,
        ));
    };
    let params = m.get("params").cloned().unwrap_or_else(|| json!({}));
    let modern = match params.pointer(&format!("/_meta/{}", META_VERSION.replace('/', "~1"))) {
        None => false,
        Some(Value::String(v)) if MODERN_VERSIONS.contains(&v.as_str()) => true,
        Some(Value::String(v)) => return Outcome::Reply(unsupported_version(&id, v)),
        Some(_) => {
            return Outcome::Reply(error_response(
                &id,
                INVALID_PARAMS,
                "the protocol version in _meta is not a string",
                None,
            ))
        }
    };
    let result = match method {
        "initialize" => Ok(initialize(&params)),
        "server/discover" => Ok(json!({
            "supportedVersions": MODERN_VERSIONS,
            "capabilities": {"tools": {}},
            "serverInfo": server_info(),
            "instructions": INSTRUCTIONS,
            "ttlMs": TTL_MS,
            "cacheScope": "public",
        })),
        "ping" => Ok(json!({})),
        "tools/list" => {
            let tools: Vec<Value> = runtime
                .actions()
                .filter(|a| a.follow_up.is_none())
                .map(mcp_tool)
                .collect();
            let mut list = json!({ "tools": tools });
            if modern {
                if let Value::Object(l) = &mut list {
                    l.insert("ttlMs".into(), json!(TTL_MS));
                    l.insert("cacheScope".into(), json!("public"));
                }
            }
            Ok(list)
        }
        "tools/call" => call_tool(runtime, &params, call).await,
        other => Err((METHOD_NOT_FOUND, format!("method `{other}` not found"))),
    };
    Outcome::Reply(match result {
        Ok(mut result) => {
            if modern {
                if let Value::Object(r) = &mut result {
                    r.insert("resultType".into(), json!("complete"));
                }
            }
            json!({"jsonrpc": "2.0", "id": id, "result": result})
        }
        Err((code, text)) => error_response(&id, code, &text, None),
    })
}

fn server_info() -> Value {
    json!({
        "name": "mca",
        "title": "mca mid-call actions",
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// The legacy handshake: the client's version when served, else the newest legacy one.
fn initialize(params: &Value) -> Value {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = LEGACY_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(LEGACY_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    })
}

async fn call_tool(
    runtime: &Runtime,
    params: &Value,
    call: CallContext,
) -> Result<Value, (i64, String)> {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Err((INVALID_PARAMS, "tools/call needs a tool name".to_string()));
    };
    if runtime.action(name).is_none() {
        return Err((INVALID_PARAMS, format!("unknown tool `{name}`")));
    }
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(a) => a.clone(),
    };
    let response = runtime.execute(name, arguments, call).await;
    let text = response_text(&response);
    Ok(match (&response, text) {
        (ActionResponse::Answer(a), Ok(text)) => {
            let mut meta = Map::new();
            meta.insert("mca/status".into(), json!(a.status));
            if let Some(reason) = a.reason {
                meta.insert("mca/reason".into(), json!(reason.as_str()));
            }
            json!({
                "content": [{"type": "text", "text": text}],
                "structuredContent": a.output,
                "isError": false,
                "_meta": meta,
            })
        }
        (_, Ok(text) | Err(text)) => json!({
            "content": [{"type": "text", "text": text}],
            "isError": true,
        }),
    })
}

/// Serves MCP over stdin/stdout until stdin closes (newline-delimited JSON-RPC; nothing else is
/// written to stdout). Requests are handled concurrently; each answer is written whole, on one
/// line, when it is ready.
pub async fn serve_stdio(runtime: Arc<Runtime>) -> std::io::Result<()> {
    serve_lines(
        runtime,
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
    )
    .await
}

/// [`serve_stdio`] over any reader and writer.
pub async fn serve_lines<R, W>(
    runtime: Arc<Runtime>,
    input: R,
    mut output: W,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let mut line = message.to_string();
            line.push('\n');
            output.write_all(line.as_bytes()).await?;
            output.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut lines = input.lines();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        while tasks.try_join_next().is_some() {}
        let message = match serde_json::from_str::<Value>(&line) {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.send(error_response(
                    &Value::Null,
                    PARSE_ERROR,
                    &format!("not JSON: {e}"),
                    None,
                ));
                continue;
            }
        };
        let runtime = runtime.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            match handle(&runtime, &message, CallContext::default()).await {
                Outcome::Reply(r) | Outcome::Invalid(r) => {
                    let _ = tx.send(r);
                }
                Outcome::Accepted => {}
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    drop(tx);
    writer.await.unwrap_or(Ok(()))
}
