//! A small LSP client over `Connection::memory()` for protocol tests, and fixture helpers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use lsp_server::{Connection, Message, Notification, Request, RequestId, ResponseError};
use serde_json::{json, Value};

pub struct Client {
    conn: Connection,
    server: Option<JoinHandle<Result<(), mca_lsp::Error>>>,
    next_id: i32,
    /// Notifications received while waiting for responses.
    pending: VecDeque<Notification>,
    pub capabilities: Value,
}

const WAIT: Duration = Duration::from_secs(20);

impl Client {
    /// Starts a server and initializes it, with `root` as the workspace folder (if any).
    pub fn start(root: Option<&Path>) -> Client {
        let (client, server) = Connection::memory();
        let handle = std::thread::spawn(move || mca_lsp::run(server));
        let mut c = Client {
            conn: client,
            server: Some(handle),
            next_id: 0,
            pending: VecDeque::new(),
            capabilities: Value::Null,
        };
        let folders = root.map(|r| json!([{ "uri": uri_of(r), "name": "ws" }]));
        let result = c
            .request(
                "initialize",
                json!({
                    "processId": null,
                    "rootUri": root.map(uri_of),
                    "workspaceFolders": folders,
                    "capabilities": {
                        "workspace": { "didChangeWatchedFiles": { "dynamicRegistration": true } },
                        "textDocument": { "publishDiagnostics": { "relatedInformation": true } }
                    }
                }),
            )
            .unwrap_or_else(|e| panic!("initialize failed: {e:?}"));
        c.capabilities = result["capabilities"].clone();
        c.notify("initialized", json!({}));
        c
    }

    pub fn notify(&self, method: &str, params: Value) {
        let n = Notification::new(method.to_string(), params);
        self.conn
            .sender
            .send(n.into())
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Sends a request and waits for its response, answering the server's own requests.
    pub fn request(&mut self, method: &str, params: Value) -> Result<Value, ResponseError> {
        self.next_id += 1;
        let id = RequestId::from(self.next_id);
        let req = Request::new(id.clone(), method.to_string(), params);
        self.conn
            .sender
            .send(req.into())
            .unwrap_or_else(|e| panic!("send: {e}"));
        loop {
            match self.recv() {
                Message::Response(r) if r.id == id => {
                    return r.response_result;
                }
                Message::Response(_) => {}
                Message::Request(r) => {
                    // `client/registerCapability`: accept.
                    let resp = lsp_server::Response::new_ok(r.id, Value::Null);
                    let _ = self.conn.sender.send(resp.into());
                }
                Message::Notification(n) => self.pending.push_back(n),
            }
        }
    }

    fn recv(&self) -> Message {
        self.conn
            .receiver
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no message from the server: {e}"))
    }

    /// The next `publishDiagnostics` for `uri` (its diagnostics).
    pub fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|n| n.method == "textDocument/publishDiagnostics" && n.params["uri"] == uri)
        {
            let n = self.pending.remove(i).unwrap_or_else(|| unreachable!());
            return n.params["diagnostics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
        }
        loop {
            match self.recv() {
                Message::Notification(n)
                    if n.method == "textDocument/publishDiagnostics" && n.params["uri"] == uri =>
                {
                    return n.params["diagnostics"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                }
                Message::Notification(n) => self.pending.push_back(n),
                Message::Request(r) => {
                    let resp = lsp_server::Response::new_ok(r.id, Value::Null);
                    let _ = self.conn.sender.send(resp.into());
                }
                Message::Response(_) => {}
            }
        }
    }

    /// Waits until the server has handled everything sent so far (a request round trip).
    pub fn sync(&mut self) {
        let _ = self.request(
            "textDocument/hover",
            json!({
                "textDocument": { "uri": "untitled:sync" },
                "position": { "line": 0, "character": 0 }
            }),
        );
    }

    pub fn open(&self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "mca", "version": 1, "text": text } }),
        );
    }

    pub fn change(&self, uri: &str, version: i32, changes: Value) {
        self.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": changes }),
        );
    }

    pub fn at(&mut self, method: &str, uri: &str, pos: (u32, u32)) -> Result<Value, ResponseError> {
        self.request(
            method,
            json!({ "textDocument": { "uri": uri }, "position": { "line": pos.0, "character": pos.1 } }),
        )
    }

    pub fn completion_labels(&mut self, uri: &str, pos: (u32, u32)) -> Vec<String> {
        let r = self
            .at("textDocument/completion", uri, pos)
            .unwrap_or_else(|e| panic!("completion failed: {e:?}"));
        let items = r
            .as_array()
            .cloned()
            .or_else(|| r["items"].as_array().cloned());
        items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i["label"].as_str().map(str::to_string))
            .collect()
    }

    /// Shuts the server down and checks that it stopped cleanly.
    pub fn shutdown(mut self) {
        let r = self.request("shutdown", Value::Null);
        assert!(r.is_ok(), "shutdown: {r:?}");
        self.notify("exit", Value::Null);
        if let Some(h) = self.server.take() {
            match h.join() {
                Ok(Ok(())) => {}
                other => panic!("server ended with {other:?}"),
            }
        }
    }
}

/// A text with one `$0` cursor: the text without it, and the cursor's (line, UTF-16 column).
pub fn cursor(marked: &str) -> (String, (u32, u32)) {
    let i = marked
        .find("$0")
        .unwrap_or_else(|| panic!("no $0 in {marked}"));
    let text = marked.replacen("$0", "", 1);
    (text, position(marked, i))
}

/// (line, UTF-16 column) of a byte offset.
pub fn position(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32;
    let col = before
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| c.len_utf16() as u32)
        .sum();
    (line, col)
}

/// (line, UTF-16 column) just after the first occurrence of `needle`.
pub fn after(text: &str, needle: &str) -> (u32, u32) {
    let i = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    position(text, i + needle.len())
}

/// (line, UTF-16 column) at the start of the first occurrence of `needle`.
pub fn at(text: &str, needle: &str) -> (u32, u32) {
    let i = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    position(text, i)
}

pub fn range_of(v: &Value) -> ((u32, u32), (u32, u32)) {
    let p = |p: &Value| {
        (
            p["line"].as_u64().unwrap_or(u64::MAX) as u32,
            p["character"].as_u64().unwrap_or(u64::MAX) as u32,
        )
    };
    (p(&v["start"]), p(&v["end"]))
}

pub fn uri_of(path: &Path) -> String {
    mca_lsp::paths::path_to_uri(path)
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh folder with these files; removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(files: &[(&str, &str)]) -> TempDir {
        let n = DIRS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("mca-lsp-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
            }
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write: {e}"));
        }
        TempDir(dir)
    }

    pub fn uri(&self, name: &str) -> String {
        uri_of(&self.0.join(name))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn examples() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut out = Vec::new();
    collect(&root, &mut out);
    out.sort();
    out.into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).unwrap_or_default();
            (p, t)
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "mca") {
            out.push(p);
        }
    }
}

/// The semantic tokens of an open document, decoded: each token's text (UTF-16 columns, as the
/// protocol counts them), its type from the server's legend, and its modifier bits.
pub fn semantic_tokens(client: &mut Client, uri: &str, text: &str) -> Vec<(String, String, u32)> {
    let r = client
        .request(
            "textDocument/semanticTokens/full",
            json!({ "textDocument": { "uri": uri } }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let legend: Vec<String> = client.capabilities["semanticTokensProvider"]["legend"]["tokenTypes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let data: Vec<u32> = r["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64().map(|v| v as u32))
                .collect()
        })
        .unwrap_or_default();
    let lines: Vec<Vec<u16>> = text.lines().map(|l| l.encode_utf16().collect()).collect();
    let (mut line, mut col) = (0u32, 0u32);
    let mut got = Vec::new();
    for t in data.chunks(5) {
        if t[0] > 0 {
            line += t[0];
            col = t[1];
        } else {
            col += t[1];
        }
        let units = &lines[line as usize][col as usize..(col + t[2]) as usize];
        got.push((
            String::from_utf16_lossy(units),
            legend[t[3] as usize].clone(),
            t[4],
        ));
    }
    got
}
