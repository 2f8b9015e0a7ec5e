//! The HTTP side of the platform routes, reached from [`crate::server`]:
//!
//! | route | answer |
//! |---|---|
//! | `POST /vapi` | Vapi server messages: `tool-calls` answered with `{"results": [...]}` ([`super::vapi`]) |
//! | `POST /retell/{action}` | a Retell custom function call ([`super::retell`]) |
//! | `POST /mcp` | MCP over streamable HTTP ([`super::mcp`]); `GET`/`DELETE` are `405` (no server-initiated stream, no sessions) |
//! | `GET /tools?format=F[&base_url=URL]` | tool definitions ([`super::tools`]); the base URL defaults to `http://` and the request's `Host` |
//!
//! Every body is read whole (bounded by `max_body_bytes` and `request_read_timeout`, as on
//! `/actions`), then its credentials are checked on the raw bytes ([`super::auth`]), and only
//! then parsed.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::auth::{self, Route};
use super::tools::{tool_definitions, ToolFormat};
use super::{mcp, retell, vapi};
use crate::execute::Runtime;
use crate::response::{CallContext, ErrorBody};

pub(crate) type Reply = Response<Full<Bytes>>;

pub(crate) fn json_reply(status: u16, body: &Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn error_reply(status: u16, code: &str, message: impl Into<String>) -> Reply {
    json_reply(status, &ErrorBody::new(status, code, message).to_json())
}

fn unauthorized() -> Reply {
    let mut r = error_reply(
        401,
        "unauthorized",
        "a valid bearer token or platform signature is required",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut r = error_reply(405, "method_not_allowed", format!("use {allow}"));
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Answers `/vapi`, `/retell/{action}`, `/mcp` and `/tools`.
pub(crate) async fn handle(runtime: Arc<Runtime>, req: Request<Incoming>) -> Reply {
    // The action's deadline counts from here: reading and checking the body count too.
    let arrived = std::time::Instant::now();
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::POST, ["vapi"]) => {
            let body = match authenticated_body(&runtime, Route::Vapi, req).await {
                Ok((_, body)) => body,
                Err(reply) => return reply,
            };
            let (status, answer) = vapi::handle(&runtime, &body, arrived).await;
            json_reply(status, &answer)
        }
        (Method::POST, ["retell", action]) => {
            let action = percent_encoding::percent_decode_str(action)
                .decode_utf8_lossy()
                .into_owned();
            let (parts, body) = match authenticated_body(&runtime, Route::Retell, req).await {
                Ok(ok) => ok,
                Err(reply) => return reply,
            };
            let call = match call_headers(&parts.headers) {
                Ok(c) => c,
                Err(reply) => return *reply,
            };
            let (status, answer) = retell::handle(&runtime, &action, call, &body, arrived).await;
            json_reply(status, &answer)
        }
        (Method::POST, ["mcp"]) => mcp_post(runtime, req).await,
        (_, ["mcp"]) => method_not_allowed("POST"),
        (Method::GET, ["tools"]) => {
            if let Err(d) = auth::check(
                runtime.config(),
                Route::Plain,
                req.headers(),
                b"",
                SystemTime::now(),
            ) {
                tracing::info!(reason = d.0, "refused /tools");
                return unauthorized();
            }
            tools(&runtime, &req)
        }
        (_, ["tools"]) => method_not_allowed("GET"),
        (_, ["vapi"] | ["retell", _]) => method_not_allowed("POST"),
        _ => error_reply(404, "not_found", format!("no route {path}")),
    }
}

/// `GET /tools?format=F&base_url=URL`.
fn tools(runtime: &Runtime, req: &Request<Incoming>) -> Reply {
    let mut format = None;
    let mut base_url = None;
    for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "format" => format = Some(v.into_owned()),
            "base_url" => base_url = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some(format) = format.as_deref().and_then(ToolFormat::from_name) else {
        return error_reply(
            400,
            "invalid_format",
            format!("give ?format= one of {}", ToolFormat::names()),
        );
    };
    let base_url = base_url.unwrap_or_else(|| {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1:8080");
        format!("http://{host}")
    });
    json_reply(200, &tool_definitions(runtime.actions(), format, &base_url))
}

/// `X-Call-Id` and `X-Call-From`, as on `/actions` (`400` when one is not text).
fn call_headers(headers: &http::HeaderMap) -> Result<CallContext, Box<Reply>> {
    let text = |name: &str| match headers.get(name) {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Ok(_) => Ok(None),
            Err(_) => Err(Box::new(error_reply(
                400,
                "invalid_header",
                format!("the {name} header is not valid text"),
            ))),
        },
    };
    Ok(CallContext::new(text("x-call-id")?, text("x-call-from")?))
}

/// Reads the whole body (the same limits as `/actions`) and checks the credentials on it.
async fn authenticated_body(
    runtime: &Runtime,
    route: Route,
    req: Request<Incoming>,
) -> Result<(http::request::Parts, Bytes), Reply> {
    let (parts, body) = req.into_parts();
    let body = read_body(runtime, &parts.headers, body).await?;
    if let Err(d) = auth::check(
        runtime.config(),
        route,
        &parts.headers,
        &body,
        SystemTime::now(),
    ) {
        tracing::info!(path = %parts.uri.path(), reason = d.0, "refused an unauthenticated request");
        return Err(unauthorized());
    }
    Ok((parts, body))
}

/// The body, bounded by `max_body_bytes` (413) and `request_read_timeout` (408).
pub(crate) async fn read_body(
    runtime: &Runtime,
    headers: &http::HeaderMap,
    body: Incoming,
) -> Result<Bytes, Reply> {
    let config = runtime.config();
    let max = config.max_body_bytes;
    let too_large = || {
        error_reply(
            413,
            "body_too_large",
            format!("the body is larger than {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut collected = std::pin::pin!(Limited::new(body, max).collect());
    // A small body usually arrives with the headers: read what is there without a timer (a
    // timer costs two locks of tokio's timer wheel); wait for the rest under the timeout.
    let read = match futures_util::FutureExt::now_or_never(collected.as_mut()) {
        Some(read) => Ok(read),
        None => tokio::time::timeout(config.request_read_timeout, collected).await,
    };
    match read {
        Err(_) => Err(error_reply(
            408,
            "timeout",
            "the body did not arrive in time",
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(error_reply(
            400,
            "invalid_body",
            "the body could not be read",
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Whether a browser `Origin` may talk to the MCP endpoint: loopback origins, or the server's
/// own host (DNS-rebinding protection, as the MCP transport requires).
fn origin_allowed(headers: &http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(origin) = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) else {
        return false;
    };
    let host = origin.host_str().unwrap_or("");
    if matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1") {
        return true;
    }
    let own = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_authority = match origin.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    !own.is_empty() && own.eq_ignore_ascii_case(&origin_authority)
}

/// `POST /mcp`: one JSON-RPC message per request (MCP streamable HTTP, answered with
/// `application/json`; notifications and responses get `202`).
async fn mcp_post(runtime: Arc<Runtime>, req: Request<Incoming>) -> Reply {
    if !origin_allowed(req.headers()) {
        return error_reply(
            403,
            "forbidden_origin",
            "this Origin may not use the MCP endpoint",
        );
    }
    let (parts, body) = match authenticated_body(&runtime, Route::Plain, req).await {
        Ok(ok) => ok,
        Err(reply) => return reply,
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Some(version) = header("mcp-protocol-version") {
        if !mcp::is_supported(&version) {
            return json_reply(400, &mcp::unsupported_version(&Value::Null, &version));
        }
    }
    let call = match call_headers(&parts.headers) {
        Ok(c) => c,
        Err(reply) => return *reply,
    };
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_reply(
                400,
                &mcp::error_response(
                    &Value::Null,
                    mcp::PARSE_ERROR,
                    &format!("not JSON: {e}"),
                    None,
                ),
            )
        }
    };
    if let Some(mismatch) = mcp::header_mismatch(
        &message,
        header("mcp-method").as_deref(),
        header("mcp-name").as_deref(),
    ) {
        return json_reply(400, &mismatch);
    }
    match mcp::handle(&runtime, &message, call).await {
        mcp::Outcome::Reply(answer) => {
            let status = if mcp::is_unsupported_version(&answer) {
                400
            } else {
                200
            };
            json_reply(status, &answer)
        }
        mcp::Outcome::Accepted => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::ACCEPTED;
            r
        }
        mcp::Outcome::Invalid(answer) => json_reply(400, &answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origins() {
        assert!(origin_allowed(&headers(&[])));
        assert!(origin_allowed(&headers(&[(
            "origin",
            "http://localhost:3000"
        )])));
        assert!(origin_allowed(&headers(&[(
            "origin",
            "http://127.0.0.1:5173"
        )])));
        assert!(origin_allowed(&headers(&[
            ("origin", "https://mca.example.com"),
            ("host", "mca.example.com")
        ])));
        assert!(!origin_allowed(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!origin_allowed(&headers(&[("origin", "null")])));
    }
}
