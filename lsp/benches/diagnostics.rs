//! Diagnostics of a 2,000-line file after a one-character change (issue: within 20 ms).
//!
//! - `server/change_to_publish`: the whole path an editor sees: a `didChange` notification with
//!   an incremental edit, through the in-memory server, until its `publishDiagnostics` arrives.
//!   Every change toggles a typo, so every change publishes.
//! - `incremental/change`: the project diagnostics engine alone on the same edits.
//! - `compile/full`: `mca_compiler::compile` of the whole file, for comparison.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use lsp_server::{Connection, Message, Notification, Request, RequestId};
use mca_compiler::Source;
use serde_json::{json, Value};

/// About 2,000 lines: the canonical examples, repeated with distinct action names.
fn generated() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let names = ["create_ticket", "lookup_customer", "order_status"];
    let texts: Vec<String> = names
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(format!("{n}.mca"))).unwrap_or_default())
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while out.lines().count() < 2000 {
        for t in &texts {
            let mut t = t.clone();
            for n in names {
                t = t.replace(n, &format!("{n}_{i}"));
            }
            out.push_str(&t);
            out.push('\n');
        }
        i += 1;
    }
    out
}

/// The position of the `phone` in an `{input.phone}`-like reference near the middle of the file.
fn edit_position(text: &str) -> (usize, u32, u32) {
    let middle = text.len() / 2;
    let at = text[middle..]
        .find("query \"phone\" = input.phone")
        .map(|i| middle + i + "query \"phone\" = input.".len())
        .unwrap_or(0);
    let line = text[..at].matches('\n').count() as u32;
    let col = (at - text[..at].rfind('\n').map_or(0, |i| i + 1)) as u32;
    (at, line, col)
}

fn bench(c: &mut Criterion) {
    let text = generated();
    let lines = text.lines().count();
    assert!(
        mca_compiler::compile_one("gen.mca", &text)
            .diagnostics
            .is_empty(),
        "the generated file must be valid"
    );
    let (at, line, col) = edit_position(&text);
    let mut group = c.benchmark_group(format!("diagnostics_{lines}_lines"));
    group.measurement_time(Duration::from_secs(8));

    // The engine alone.
    let mut engine = mca_lsp::incremental::Diagnostics::new();
    let mut broken = text.clone();
    broken.replace_range(at..at + 1, "X");
    let sources = [
        vec![Source::new("gen.mca", text.clone())],
        vec![Source::new("gen.mca", broken)],
    ];
    let _ = engine.compute(&sources[0]);
    let mut k = 0usize;
    group.bench_function("incremental/change", |b| {
        b.iter(|| {
            k += 1;
            engine.compute(&sources[k % 2])
        })
    });

    // The whole server path.
    let (client, server) = Connection::memory();
    let handle = std::thread::spawn(move || mca_lsp::run(server));
    let send = |m: Message| client.sender.send(m).unwrap_or_else(|e| panic!("{e}"));
    send(
        Request::new(
            RequestId::from(1),
            "initialize".into(),
            json!({ "capabilities": {} }),
        )
        .into(),
    );
    let _ = client.receiver.recv();
    send(Notification::new("initialized".into(), json!({})).into());
    let uri = "file:///bench/gen.mca";
    send(
        Notification::new(
            "textDocument/didOpen".into(),
            json!({ "textDocument": {
        "uri": uri, "languageId": "mca", "version": 1, "text": text } }),
        )
        .into(),
    );
    let wait_publish = || loop {
        match client.receiver.recv() {
            Ok(Message::Notification(n)) if n.method == "textDocument/publishDiagnostics" => {
                return n.params["diagnostics"].as_array().map_or(0, Vec::len);
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    };
    let mut version = 1;
    let mut edit = |broken: bool| {
        version += 1;
        send(
            Notification::new(
                "textDocument/didChange".into(),
                json!({
            "textDocument": { "uri": uri, "version": version },
            "contentChanges": [{ "range": { "start": { "line": line, "character": col },
                                            "end": { "line": line, "character": col + 1 } },
                                 "text": if broken { "X" } else { "p" } }] }),
            )
            .into(),
        );
        wait_publish()
    };
    // The first publish is the opened file's (empty, but sent once diagnostics exist): make one.
    assert_eq!(edit(true), 1);
    assert_eq!(edit(false), 0);
    let mut broken = false;
    group.bench_function("server/change_to_publish", |b| {
        b.iter(|| {
            broken = !broken;
            edit(broken)
        })
    });

    group.bench_function("compile/full", |b| {
        b.iter(|| {
            mca_compiler::compile_one("gen.mca", &text)
                .diagnostics
                .len()
        })
    });
    group.finish();

    send(Request::new(RequestId::from(2), "shutdown".into(), Value::Null).into());
    send(Notification::new("exit".into(), Value::Null).into());
    let _ = handle.join();
}

criterion_group!(benches, bench);
criterion_main!(benches);
