//! `mca mcp` as an MCP client starts it: a child process speaking newline-delimited JSON-RPC on
//! stdio (initialize → initialized → tools/list → tools/call, and the stateless
//! server/discover), with `--demo` so nothing leaves the machine. And `mca schema`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mca"));
    c.current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("MCA_TOKEN");
    c
}

struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Session {
    fn start(args: &[&str]) -> Session {
        let mut child = bin()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mca: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Session {
            child,
            stdin: Some(stdin),
            lines,
        }
    }

    fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{message}").expect("write");
        stdin.flush().expect("flush");
    }

    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("an answer within 30 s");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout is not JSON-RPC: {e}: {line}"))
    }

    fn request(&mut self, message: Value) -> Value {
        let id = message["id"].clone();
        self.send(message);
        let answer = self.next();
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_mcp_client_lists_and_calls_the_examples_over_stdio() {
    let mut s = Session::start(&["mcp", "examples", "--demo"]);
    let init = s.request(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "stdio-test", "version": "0.1.0"}
        }}),
    );
    assert_eq!(init["result"]["protocolVersion"], json!("2025-11-25"));
    s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    let list = s.request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}));
    let tools = list["result"]["tools"].as_array().expect("tools");
    let order = tools
        .iter()
        .find(|t| t["name"] == json!("order_status"))
        .expect("order_status is a tool");
    assert_eq!(order["inputSchema"]["required"], json!(["order_number"]));
    assert!(order["outputSchema"]["properties"]["status"].is_object());

    let call = s.request(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "order_status", "arguments": {"order_number": "100234"}
        }}),
    );
    let result = &call["result"];
    assert_eq!(result["isError"], json!(false), "{call}");
    assert_eq!(result["structuredContent"]["status"], json!("shipped"));
    assert_eq!(
        result["content"][0]["text"],
        json!("Order 100234 is shipped.")
    );

    let discover = s.request(
        json!({"jsonrpc": "2.0", "id": 4, "method": "server/discover", "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }}),
    );
    assert_eq!(
        discover["result"]["supportedVersions"],
        json!(["2026-07-28"])
    );
    assert_eq!(discover["result"]["resultType"], json!("complete"));

    // Closing stdin ends the server cleanly.
    s.stdin = None;
    let status = s.child.wait().expect("exit");
    assert!(status.success(), "{status:?}");
}

#[test]
fn schema_prints_each_platforms_tools() {
    let out = bin()
        .args([
            "schema",
            "examples/order_status.mca",
            "--format",
            "vapi",
            "--base-url",
            "https://mca.example.com",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let tools: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        tools[0]["server"]["url"],
        json!("https://mca.example.com/vapi")
    );
    for format in [
        "openai",
        "openai-chat",
        "openai-realtime",
        "mcp",
        "retell",
        "elevenlabs",
    ] {
        let out = bin()
            .args(["schema", "examples/order_status.mca", "--format", format])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(0), "{format}");
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON");
    }
    let bad = bin()
        .args([
            "schema",
            "examples",
            "--format",
            "vapi",
            "--base-url",
            "ftp://x",
        ])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}
