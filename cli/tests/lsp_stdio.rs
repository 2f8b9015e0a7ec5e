//! `mca lsp`, the real binary an editor starts, over stdio: handshake, diagnostics of a broken
//! file, shutdown, exit.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn send(stdin: &mut impl Write, msg: &Value) {
    let body = msg.to_string();
    let framed = format!("Content-Length: {}\r\n\r\n{body}", body.len());
    stdin
        .write_all(framed.as_bytes())
        .and_then(|()| stdin.flush())
        .unwrap_or_else(|e| panic!("write to the server: {e}"));
}

fn read(stdout: &mut impl BufRead) -> Value {
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        let n = stdout
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read from the server: {e}"));
        assert!(n > 0, "the server closed stdout");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            len = v.parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    stdout
        .read_exact(&mut body)
        .unwrap_or_else(|e| panic!("read body: {e}"));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("bad json from the server: {e}"))
}

#[test]
fn the_binary_serves_over_stdio() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mca"))
        .arg("lsp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start mca-lsp: {e}"));
    let mut stdin = child.stdin.take().unwrap_or_else(|| unreachable!());
    let mut stdout = BufReader::new(child.stdout.take().unwrap_or_else(|| unreachable!()));

    send(
        &mut stdin,
        &json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "processId": null, "rootUri": null, "capabilities": {} } }),
    );
    let init = read(&mut stdout);
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["serverInfo"]["name"], "mca-lsp");
    send(
        &mut stdin,
        &json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }),
    );

    let uri = "file:///tmp/mca-stdio/broken.mca";
    send(
        &mut stdin,
        &json!({ "jsonrpc": "2.0", "method": "textDocument/didOpen",
        "params": { "textDocument": { "uri": uri, "languageId": "mca", "version": 1,
                    "text": "action a {\n  input x string\n}\n" } } }),
    );
    let diags = read(&mut stdout);
    assert_eq!(diags["method"], "textDocument/publishDiagnostics");
    assert_eq!(diags["params"]["uri"], uri);
    assert_eq!(diags["params"]["diagnostics"][0]["code"], "E0001");

    send(
        &mut stdin,
        &json!({ "jsonrpc": "2.0", "id": 2, "method": "shutdown" }),
    );
    let r = read(&mut stdout);
    assert_eq!(r["id"], 2);
    assert!(r.get("error").is_none(), "{r}");
    send(&mut stdin, &json!({ "jsonrpc": "2.0", "method": "exit" }));
    drop(stdin);

    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                assert!(status.success(), "mca-lsp exited with {status}");
                break;
            }
            Ok(None) if start.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => {
                let _ = child.kill();
                panic!("mca-lsp did not exit after `exit`: {other:?}");
            }
        }
    }
}
