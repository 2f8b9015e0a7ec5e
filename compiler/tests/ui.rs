//! UI tests: every `.mca` file (or folder of files, compiled together) below `tests/ui/` ends with
//! the diagnostics it must produce, one comment line each:
//!
//! ```text
//! // Error E0102 at 12:20-12:25: unknown input `phnoe`
//! // Warning W0602 at 3:9-3:14: input `x` is never used
//! ```
//!
//! Lines and columns are 1-based, columns in characters, as `mca check --format json` reports
//! them. A file with no such line must compile cleanly. `MCA_BLESS=1 cargo test --test ui`
//! rewrites the expectations from the actual output (review the diff before committing).

use std::path::{Path, PathBuf};

use mca_compiler::{compile, LineIndex, Severity, Source};

const MARKERS: [&str; 2] = ["// Error ", "// Warning "];

fn ui_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui")
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(ui_root())
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    cases.retain(|p| p.is_dir() || p.extension().is_some_and(|e| e == "mca"));
    cases.sort();
    cases
}

fn files_of(case: &Path) -> Vec<PathBuf> {
    if case.is_dir() {
        let mut fs: Vec<PathBuf> = std::fs::read_dir(case)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        fs.retain(|p| p.extension().is_some_and(|e| e == "mca"));
        fs.sort();
        fs
    } else {
        vec![case.to_path_buf()]
    }
}

fn is_marker(line: &str) -> bool {
    MARKERS.iter().any(|m| line.trim_start().starts_with(m))
}

/// The expectation lines of a file.
fn expected(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| is_marker(l))
        .map(|l| l.trim().trim_start_matches("// ").to_string())
        .collect()
}

fn actual(sources: &[Source]) -> Vec<Vec<String>> {
    let compilation = compile(sources);
    let mut per_file = vec![Vec::new(); sources.len()];
    for d in &compilation.diagnostics {
        let src = &sources[d.primary.file];
        let idx = LineIndex::new(&src.text);
        let (l1, c1) = idx.line_col(&src.text, d.primary.span.start);
        let (l2, c2) = idx.line_col(&src.text, d.primary.span.end);
        let sev = match d.severity {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
        };
        per_file[d.primary.file].push(format!(
            "{sev} {} at {l1}:{c1}-{l2}:{c2}: {}",
            d.code.as_str(),
            d.message
        ));
    }
    // No IR without errors, and always IR when there are none.
    let errors = compilation.diagnostics.iter().any(|d| d.is_error());
    assert_eq!(
        compilation.ir.is_some(),
        !errors,
        "IR presence must match the absence of errors"
    );
    per_file
}

#[test]
fn ui_files_produce_exactly_their_inline_diagnostics() {
    let bless = std::env::var_os("MCA_BLESS").is_some();
    let mut failures = Vec::new();
    let cases = cases();
    assert!(
        !cases.is_empty(),
        "no UI cases found in {}",
        ui_root().display()
    );
    for case in cases {
        let paths = files_of(&case);
        let texts: Vec<String> = paths
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect();
        let sources: Vec<Source> = paths
            .iter()
            .zip(&texts)
            .map(|(p, t)| Source::new(p.display().to_string(), t.clone()))
            .collect();
        let actual = actual(&sources);
        for ((path, text), got) in paths.iter().zip(&texts).zip(actual) {
            let want = expected(text);
            if bless {
                let kept: Vec<&str> = text.lines().filter(|l| !is_marker(l)).collect();
                let mut body = kept.join("\n").trim_end().to_string();
                body.push('\n');
                for g in &got {
                    body.push_str(&format!("// {g}\n"));
                }
                std::fs::write(path, body).unwrap_or_default();
                continue;
            }
            if want != got {
                failures.push(format!(
                    "{}:\n  expected:\n    {}\n  actual:\n    {}",
                    path.display(),
                    want.join("\n    "),
                    got.join("\n    ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "UI mismatches (MCA_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}
