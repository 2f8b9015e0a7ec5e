//! `compile_parallel` is `compile` on several threads: same diagnostics, same IR, same order.

use std::path::Path;

use mca_compiler::{compile, compile_parallel, Source};

fn sources_below(dir: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources_below(&p, out);
        } else if p.extension().is_some_and(|e| e == "mca") {
            out.push(Source::new(
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap_or_default(),
            ));
        }
    }
}

#[test]
fn parallel_compilation_equals_sequential_on_examples_and_ui_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["examples", "tests/ui"] {
        let mut sources = Vec::new();
        sources_below(&root.join(dir), &mut sources);
        assert!(sources.len() > 3, "{dir}");
        let one = compile(&sources);
        for threads in [2, 3, 8] {
            let many = compile_parallel(&sources, threads);
            assert_eq!(
                one.diagnostics, many.diagnostics,
                "{dir} on {threads} threads"
            );
            assert_eq!(one.ir, many.ir, "{dir} on {threads} threads");
            assert_eq!(one.files, many.files, "{dir} on {threads} threads");
        }
    }
}
