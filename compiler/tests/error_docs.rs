//! `docs/errors.md` documents exactly the codes of `Code::ALL`: one `### CODE: title` section per
//! code (and no section for a code that does not exist), with the code's severity and title, a
//! row in the index table, and an example that really produces that code and nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use mca_compiler::{compile_one, Code, Severity};

struct Section {
    title: String,
    severity: Option<String>,
    example: Option<String>,
}

fn errors_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/errors.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `### E0102: unknown input` sections, keyed by code, with their severity line and their first
/// `mca` code block.
fn sections(md: &str) -> (BTreeMap<String, Section>, Vec<String>) {
    let mut out: BTreeMap<String, Section> = BTreeMap::new();
    let mut duplicates = Vec::new();
    let mut current: Option<String> = None;
    let mut in_block: Option<String> = None;
    for line in md.lines() {
        if let Some(block) = in_block.as_mut() {
            if line.trim_start().starts_with("```") {
                if let Some(s) = current.as_ref().and_then(|c| out.get_mut(c)) {
                    if s.example.is_none() {
                        s.example = Some(std::mem::take(block));
                    }
                }
                in_block = None;
            } else {
                block.push_str(line);
                block.push('\n');
            }
            continue;
        }
        if line.trim_start().starts_with("```mca") {
            in_block = Some(String::new());
            continue;
        }
        if line.starts_with("## ") || line.starts_with("# ") {
            current = None;
        }
        if let Some(rest) = line.strip_prefix("### ") {
            let (code, title) = rest.split_once(": ").unwrap_or((rest, ""));
            let code = code.trim().to_string();
            if out.contains_key(&code) {
                duplicates.push(code.clone());
            }
            out.insert(
                code.clone(),
                Section {
                    title: title.trim().to_string(),
                    severity: None,
                    example: None,
                },
            );
            current = Some(code);
            continue;
        }
        if let Some(sev) = line.strip_prefix("**Severity:**") {
            if let Some(s) = current.as_ref().and_then(|c| out.get_mut(c)) {
                s.severity = Some(sev.trim().to_string());
            }
        }
    }
    (out, duplicates)
}

fn is_code(s: &str) -> bool {
    s.len() == 5
        && (s.starts_with('E') || s.starts_with('W'))
        && s[1..].chars().all(|c| c.is_ascii_digit())
}

#[test]
fn every_code_has_a_section_and_every_section_a_code() {
    let md = errors_md();
    let (sections, duplicates) = sections(&md);
    assert!(
        duplicates.is_empty(),
        "sections given twice: {duplicates:?}"
    );
    let known: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let missing: Vec<&&str> = known
        .iter()
        .filter(|c| !sections.contains_key(**c))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without a section in docs/errors.md: {missing:?}"
    );
    let unknown: Vec<&String> = sections
        .keys()
        .filter(|c| !known.contains(&c.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "sections in docs/errors.md for codes that do not exist: {unknown:?}"
    );
}

#[test]
fn sections_state_the_severity_and_title_of_their_code() {
    let md = errors_md();
    let (sections, _) = sections(&md);
    let mut wrong = Vec::new();
    for code in Code::ALL {
        let Some(s) = sections.get(code.as_str()) else {
            continue;
        };
        if s.title != code.title() {
            wrong.push(format!(
                "{}: title {:?}, expected {:?}",
                code.as_str(),
                s.title,
                code.title()
            ));
        }
        if s.severity.as_deref() != Some(code.severity().as_str()) {
            wrong.push(format!(
                "{}: severity {:?}, expected {:?}",
                code.as_str(),
                s.severity,
                code.severity().as_str()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_index_table_lists_every_code_once() {
    let md = errors_md();
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in md.lines().filter(|l| l.starts_with("| [")) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        let code = cells
            .first()
            .and_then(|c| c.strip_prefix('['))
            .and_then(|c| c.split(']').next())
            .unwrap_or_default()
            .to_string();
        assert!(is_code(&code), "index row without a code: {line}");
        assert!(
            rows.insert(code, cells).is_none(),
            "index row twice: {line}"
        );
    }
    for code in Code::ALL {
        let cells = rows
            .remove(code.as_str())
            .unwrap_or_else(|| panic!("{} missing from the index table", code.as_str()));
        assert_eq!(
            cells.get(1).map(String::as_str),
            Some(code.severity().as_str())
        );
        assert_eq!(cells.get(2).map(String::as_str), Some(code.title()));
    }
    assert!(
        rows.is_empty(),
        "index rows for unknown codes: {:?}",
        rows.keys()
    );
}

#[test]
fn every_example_produces_its_code_and_nothing_else() {
    let md = errors_md();
    let (sections, _) = sections(&md);
    let mut wrong = Vec::new();
    for code in Code::ALL {
        let Some(example) = sections.get(code.as_str()).and_then(|s| s.example.as_ref()) else {
            wrong.push(format!("{}: no ```mca example", code.as_str()));
            continue;
        };
        let compilation = compile_one(&format!("{}.mca", code.as_str()), example);
        let got: Vec<&str> = compilation
            .diagnostics
            .iter()
            .map(|d| d.code.as_str())
            .collect();
        if !got.contains(&code.as_str()) || got.iter().any(|c| *c != code.as_str()) {
            let messages: Vec<String> = compilation
                .diagnostics
                .iter()
                .map(|d| format!("{} {}", d.code.as_str(), d.message))
                .collect();
            wrong.push(format!(
                "{}: the example gives [{}]",
                code.as_str(),
                messages.join("; ")
            ));
        }
        if code.severity() == Severity::Warning && compilation.ir.is_none() {
            wrong.push(format!(
                "{}: a warning example must still compile",
                code.as_str()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/errors.md examples:\n{}",
        wrong.join("\n")
    );
}
