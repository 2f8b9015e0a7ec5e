//! The actions in the repository's `examples/` folder (every `.mca` below it, however deep) are
//! the canonical ones: compiled together as one project, as `mca check examples/` does, they must
//! produce no diagnostic at all, not even a warning.
//!
//! Their checked IR is also pinned by one insta snapshot per file in `tests/snapshots/`. After an
//! intended change to the IR, or when adding an example, run
//! `INSTA_UPDATE=always cargo test -p mca-compiler --test examples` and review the `.snap` diffs
//! before committing them.

use std::path::{Path, PathBuf};

use mca_compiler::{compile, LineIndex, Source};

fn examples_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Every `.mca` file below `dir`, sorted, so that names and snapshots are stable.
fn mca_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            mca_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "mca") {
            out.push(path);
        }
    }
}

/// The examples as sources named by their path below `examples/`, with `/` separators (the name
/// is recorded in the IR, so it must not depend on the machine).
fn sources() -> Vec<Source> {
    let root = examples_root();
    let mut paths = Vec::new();
    mca_files(&root, &mut paths);
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap_or(p);
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let text = std::fs::read_to_string(p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            Source::new(name, text)
        })
        .collect()
}

#[test]
fn every_example_compiles_without_any_diagnostic() {
    let sources = sources();
    assert!(
        sources.len() >= 3,
        "expected the canonical examples in {}",
        examples_root().display()
    );
    let compilation = compile(&sources);
    let rendered: Vec<String> = compilation
        .diagnostics
        .iter()
        .map(|d| {
            let src = &sources[d.primary.file];
            let (line, col) = LineIndex::new(&src.text).line_col(&src.text, d.primary.span.start);
            format!(
                "examples/{}:{line}:{col}: {} {}: {}",
                src.name,
                d.severity.as_str(),
                d.code.as_str(),
                d.message
            )
        })
        .collect();
    assert!(
        rendered.is_empty(),
        "examples must compile with no errors or warnings:\n{}",
        rendered.join("\n")
    );
    assert!(compilation.ir.is_some(), "no IR without errors");
}

#[test]
fn canonical_examples_are_present() {
    let names: Vec<String> = sources().into_iter().map(|s| s.name).collect();
    for canonical in [
        "create_ticket.mca",
        "lookup_customer.mca",
        "order_status.mca",
    ] {
        assert!(
            names.iter().any(|n| n == canonical),
            "missing canonical example {canonical}"
        );
    }
}

#[test]
fn ir_of_every_example_matches_its_snapshot() {
    let sources = sources();
    let compilation = compile(&sources);
    let Some(project) = compilation.ir else {
        panic!("the examples do not compile; see every_example_compiles_without_any_diagnostic");
    };
    for src in &sources {
        let actions: Vec<&mca_compiler::ir::Action> = project
            .actions
            .iter()
            .filter(|a| a.file == src.name)
            .collect();
        assert!(!actions.is_empty(), "no action compiled from {}", src.name);
        let snapshot = src.name.trim_end_matches(".mca").replace('/', "__");
        insta::assert_json_snapshot!(snapshot, actions);
    }
}
