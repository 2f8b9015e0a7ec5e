//! Compile throughput on a large generated project (`cargo bench -p mca-compiler`).
//!
//! The project is made of the 25 canonical examples without their `test` blocks (realistic
//! actions: inputs, requests with auth, retries, outputs with JSONPaths, fallbacks, caches),
//! copied with distinct action names (the `invalidates` targets follow) until it holds 10,000
//! actions, 100 per file. Throughput is in lines per second.
//!
//! - `compile/10k_actions/1_thread`: `compile`, everything on one thread;
//! - `compile/10k_actions/2_threads`: `compile_parallel` on 2 threads (what `mca check` does on
//!   a 2-core machine).
//!
//! The bound: 10,000 actions checked in under 1 s. Results are in BENCHMARKS.md.
//! `MCA_BENCH_PROJECT=DIR cargo bench -p mca-compiler` also writes the project to DIR.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mca_compiler::{compile, compile_parallel, Source};

const ACTIONS: usize = 10_000;
const PER_FILE: usize = 100;

fn mca_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            mca_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "mca") {
            out.push(p);
        }
    }
}

/// The text without `test "..." { ... }` blocks (braces counted outside strings).
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut depth = 0i32;
    let mut skipping = false;
    for line in text.lines() {
        if !skipping && line.trim_start().starts_with("test \"") {
            skipping = true;
            depth = 0;
        }
        if skipping {
            let mut in_string = false;
            let mut escaped = false;
            for c in line.chars() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_string => escaped = true,
                    '"' => in_string = !in_string,
                    '{' if !in_string => depth += 1,
                    '}' if !in_string => depth -= 1,
                    _ => {}
                }
            }
            if depth <= 0 && line.contains('}') {
                skipping = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The examples (tests removed) with their action names.
fn templates() -> Vec<(String, String)> {
    let mut files = Vec::new();
    mca_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"),
        &mut files,
    );
    files
        .iter()
        .map(|p| {
            let text = without_tests(&std::fs::read_to_string(p).unwrap_or_default());
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("action "))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_else(|| panic!("{}: no action", p.display()))
                .to_string();
            (name, text)
        })
        .collect()
}

/// `ACTIONS` actions in files of `PER_FILE`.
fn project() -> Vec<Source> {
    let templates = templates();
    let names: Vec<&str> = templates.iter().map(|(n, _)| n.as_str()).collect();
    let mut sources = Vec::new();
    let mut text = String::new();
    let mut in_file = 0;
    for i in 0..ACTIONS {
        let copy = i / templates.len();
        let (_, t) = &templates[i % templates.len()];
        let mut t = t.clone();
        // Rename every example action (its own name and `invalidates` targets) for this copy;
        // longest names first, so no name is replaced inside another.
        let mut sorted = names.clone();
        sorted.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for (k, n) in sorted.iter().enumerate() {
            t = t.replace(n, &format!("\u{0}{k}\u{0}"));
        }
        for (k, n) in sorted.iter().enumerate() {
            t = t.replace(&format!("\u{0}{k}\u{0}"), &format!("{n}_{copy}"));
        }
        text.push_str(&t);
        text.push('\n');
        in_file += 1;
        if in_file == PER_FILE {
            sources.push(Source::new(
                format!("gen/file_{:03}.mca", sources.len()),
                std::mem::take(&mut text),
            ));
            in_file = 0;
        }
    }
    if !text.is_empty() {
        sources.push(Source::new(
            format!("gen/file_{:03}.mca", sources.len()),
            text,
        ));
    }
    sources
}

fn bench(c: &mut Criterion) {
    let sources = project();
    // `MCA_BENCH_PROJECT=DIR` also writes the project there (to time `mca check DIR`).
    if let Some(dir) = std::env::var_os("MCA_BENCH_PROJECT") {
        let dir = PathBuf::from(dir);
        for s in &sources {
            let path = dir.join(&s.name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(&path, &s.text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    let lines: usize = sources.iter().map(|s| s.text.lines().count()).sum();
    let bytes: usize = sources.iter().map(|s| s.text.len()).sum();
    let check = compile(&sources);
    let errors: Vec<_> = check
        .diagnostics
        .iter()
        .filter(|d| d.severity == mca_compiler::diagnostic::Severity::Error)
        .take(3)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let ir = check.ir.unwrap_or_else(|| panic!("no IR"));
    assert_eq!(ir.actions.len(), ACTIONS);
    println!(
        "project: {ACTIONS} actions in {} files, {lines} lines, {} KB",
        sources.len(),
        bytes / 1024
    );

    let mut g = c.benchmark_group("compile");
    g.throughput(Throughput::Elements(lines as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function(BenchmarkId::new("10k_actions", "1_thread"), |b| {
        b.iter(|| compile(&sources).diagnostics.len())
    });
    g.bench_function(BenchmarkId::new("10k_actions", "2_threads"), |b| {
        b.iter(|| compile_parallel(&sources, 2).diagnostics.len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
