//! MCP over streamable HTTP (`POST /mcp`): a 2025-11-25 session (initialize → initialized →
//! tools/list → tools/call), the stateless 2026-07-28 revision (server/discover, `_meta`),
//! errors, the transport's status codes, Origin and bearer checks; and the stdio loop.

mod common;
mod platforms_common;

use std::sync::Arc;

use common::*;
use mca_runtime::platforms::mcp;
use mca_runtime::stub::{Reply, Stub};
use platforms_common::*;
use serde_json::{json, Value};

async fn mcp_server(token: Option<&str>) -> (Stub, Running) {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "sunny"}))])
        .await
        .unwrap();
    let mut cfg = config(&stub.url()).route("*", stub.addr());
    cfg.token = token.map(str::to_string);
    let server = start(project(vec![weather()]), cfg).await;
    (stub, server)
}

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

async fn rpc(server: &Running, message: Value, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut headers = vec![ACCEPT];
    headers.extend_from_slice(extra);
    post(server, "/mcp", message.to_string(), &headers).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2025_11_25_session_lists_and_calls_the_tools() {
    let (stub, server) = mcp_server(None).await;
    let (status, init) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test-client", "version": "1.0.0"}
        }}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{init}");
    assert_eq!(init["id"], json!(1));
    assert_eq!(init["result"]["protocolVersion"], json!("2025-11-25"));
    assert_eq!(init["result"]["serverInfo"]["name"], json!("mca"));
    assert!(init["result"]["capabilities"]["tools"].is_object());

    let (status, body) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        &[("mcp-protocol-version", "2025-11-25")],
    )
    .await;
    assert_eq!((status, body), (202, Value::Null));

    let (status, list) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        &[("mcp-protocol-version", "2025-11-25")],
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let tool = &list["result"]["tools"][0];
    assert_eq!(tool["name"], json!("get_weather"));
    assert_eq!(tool["inputSchema"]["type"], json!("object"));
    assert_eq!(tool["inputSchema"]["required"], json!(["location"]));
    assert_eq!(
        tool["outputSchema"],
        json!({"type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]})
    );
    assert_eq!(tool["annotations"]["readOnlyHint"], json!(true));

    let (status, call) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": "c-3", "method": "tools/call", "params": {
            "name": "get_weather", "arguments": {"location": "Turin"}
        }}),
        &[
            ("mcp-protocol-version", "2025-11-25"),
            ("x-call-id", "call-77"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["id"], json!("c-3"));
    let result = &call["result"];
    assert_eq!(result["isError"], json!(false));
    assert_eq!(result["structuredContent"], json!({"value": "sunny"}));
    assert_eq!(
        result["content"],
        json!([{"type": "text", "text": "Weather in Turin: sunny."}])
    );
    assert_eq!(result["_meta"]["mca/status"], json!("ok"));
    assert_eq!(
        stub.requests()[0].header("x-upstream-call-id"),
        Some("call-77")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn older_and_unknown_versions_negotiate_down() {
    let (_stub, server) = mcp_server(None).await;
    for (asked, got) in [
        ("2025-06-18", "2025-06-18"),
        ("2024-11-05", "2024-11-05"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let (_, init) = rpc(
            &server,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}),
            &[],
        )
        .await;
        assert_eq!(init["result"]["protocolVersion"], json!(got), "{asked}");
    }
}

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "ExampleClient", "version": "1.0.0"}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stateless_revision_discovers_lists_and_calls_without_a_handshake() {
    let (_stub, server) = mcp_server(None).await;
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "server/discover"),
    ];
    let (status, discover) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": "discover-1", "method": "server/discover", "params": {"_meta": meta()}}),
        &headers,
    )
    .await;
    assert_eq!(status, 200, "{discover}");
    let r = &discover["result"];
    assert_eq!(r["resultType"], json!("complete"));
    assert_eq!(r["supportedVersions"], json!(["2026-07-28"]));
    assert!(r["capabilities"]["tools"].is_object());
    assert!(r["ttlMs"].is_u64());

    let (_, list) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta()}}),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
    )
    .await;
    assert_eq!(list["result"]["resultType"], json!("complete"));
    assert_eq!(list["result"]["cacheScope"], json!("public"));
    assert_eq!(list["result"]["tools"][0]["name"], json!("get_weather"));

    let (status, call) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"_meta": meta(), "name": "get_weather", "arguments": {"location": "Nice"}}}),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "get_weather"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["result"]["resultType"], json!("complete"));
    assert_eq!(call["result"]["structuredContent"]["value"], json!("sunny"));

    // Headers that contradict the body.
    let (status, mismatch) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"_meta": meta(), "name": "get_weather", "arguments": {"location": "Nice"}}}),
        &[("mcp-method", "tools/call"), ("mcp-name", "other_tool")],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(mismatch["error"]["code"], json!(mcp::HEADER_MISMATCH));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_version_is_refused_with_the_supported_ones() {
    let (_stub, server) = mcp_server(None).await;
    let mut m = meta();
    m["io.modelcontextprotocol/protocolVersion"] = json!("2030-01-01");
    let (status, answer) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {"_meta": m}}),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], json!(-32022));
    assert_eq!(answer["error"]["data"]["requested"], json!("2030-01-01"));
    assert!(answer["error"]["data"]["supported"]
        .as_array()
        .unwrap()
        .contains(&json!("2026-07-28")));

    let (status, answer) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list"}),
        &[("mcp-protocol-version", "1999-01-01")],
    )
    .await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_errors_and_protocol_errors() {
    let (stub, server) = mcp_server(None).await;
    let (_, bad_args) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_weather", "arguments": {"location": 7}}}),
        &[],
    )
    .await;
    assert_eq!(bad_args["result"]["isError"], json!(true), "{bad_args}");
    assert!(bad_args["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("location"));
    assert_eq!(stub.request_count(), 0);

    let (_, unknown) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "nope"}}),
        &[],
    )
    .await;
    assert_eq!(unknown["error"]["code"], json!(-32602));

    let (_, missing) = rpc(
        &server,
        json!({"jsonrpc": "2.0", "id": 3, "method": "resources/list"}),
        &[],
    )
    .await;
    assert_eq!(missing["error"]["code"], json!(-32601));

    let (status, parse) = post(&server, "/mcp", "{nope", &[ACCEPT]).await;
    assert_eq!(
        (status, parse["error"]["code"].clone()),
        (400, json!(-32700))
    );

    let (status, batch) = post(&server, "/mcp", "[]", &[ACCEPT]).await;
    assert_eq!(
        (status, batch["error"]["code"].clone()),
        (400, json!(-32600))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_rules_get_origin_and_token() {
    let (_stub, server) = mcp_server(Some("tok")).await;
    let get = server.client.get(server.url("/mcp")).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(get.headers()["allow"], "POST");

    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    assert_eq!(rpc(&server, ping.clone(), &[]).await.0, 401);
    let (status, pong) = rpc(&server, ping.clone(), &[("authorization", "Bearer tok")]).await;
    assert_eq!((status, pong["result"].clone()), (200, json!({})));
    let (status, _) = rpc(
        &server,
        ping,
        &[
            ("authorization", "Bearer tok"),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_lines_in_lines_out() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "sunny"}))])
        .await
        .unwrap();
    let cfg = config(&stub.url()).route("*", stub.addr());
    let runtime = Arc::new(mca_runtime::Runtime::new(project(vec![weather()]), cfg).unwrap());
    let input = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}).to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        "not json".to_string(),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_weather", "arguments": {"location": "Oslo"}}}).to_string(),
    ]
    .join("\n")
        + "\n";
    let (writer, mut reader) = tokio::io::duplex(64 * 1024);
    mcp::serve_lines(runtime, tokio::io::BufReader::new(input.as_bytes()), writer)
        .await
        .unwrap();
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut reader, &mut out)
        .await
        .unwrap();
    let answers: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON message per line"))
        .collect();
    assert_eq!(answers.len(), 3, "{out}");
    let by_id = |id: Value| answers.iter().find(|a| a["id"] == id).cloned().unwrap();
    assert_eq!(
        by_id(json!(1))["result"]["protocolVersion"],
        json!("2025-11-25")
    );
    assert_eq!(
        by_id(json!(2))["result"]["content"][0]["text"],
        json!("Weather in Oslo: sunny.")
    );
    assert_eq!(by_id(Value::Null)["error"]["code"], json!(-32700));
}
