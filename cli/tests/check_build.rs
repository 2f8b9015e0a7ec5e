//! `mca check` and `mca build` as users and scripts call them: exit codes, JSON, IR output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mca(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mca"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run mca: {e}"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mca-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    for (f, text) in files {
        std::fs::write(dir.join(f), text).unwrap_or_else(|e| panic!("{e}"));
    }
    dir
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

const VALID: &str = r#"action ping {
  description "Check that the API answers."
  request GET "https://api.example.com/ping" { timeout 2s }
  output { ok: bool = exists($.ok) }
}
"#;

#[test]
fn check_of_the_canonical_examples_exits_0_with_an_empty_json_array() {
    let out = mca(&["check", "--format", "json", "examples"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out), serde_json::json!([]));
}

#[test]
fn check_reports_an_error_at_the_line_of_the_mistake_and_exits_1() {
    let broken = VALID.replace("exists($.ok)", "exists($.ok[)");
    let dir = scratch(
        "broken",
        &[("a_valid.mca", VALID), ("b_broken.mca", &broken)],
    );
    let out = mca(&[
        "check",
        "--format",
        "json",
        dir.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let diags = json(&out);
    let diags = diags.as_array().cloned().unwrap_or_default();
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d["severity"], "error");
    assert!(d["file"]
        .as_str()
        .unwrap_or_default()
        .ends_with("b_broken.mca"));
    assert_eq!(d["line"], 4);
    for key in ["code", "message", "column", "end_line", "end_column"] {
        assert!(!d[key].is_null(), "missing {key}");
    }
}

#[test]
fn warnings_alone_exit_0() {
    let warn = VALID.replace("https://api.example.com", "http://api.example.com");
    let dir = scratch("warn", &[("w.mca", &warn)]);
    let out = mca(&[
        "check",
        "--format",
        "json",
        dir.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)[0]["severity"], "warning");
    assert_eq!(json(&out)[0]["code"], "W0601");
}

#[test]
fn human_output_shows_the_source_line_and_a_summary() {
    let broken = VALID.replace("bool = exists", "boool = exists");
    let dir = scratch("human", &[("h.mca", &broken)]);
    let out = mca(&["check", dir.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error[E0204]: unknown type `boool`"), "{err}");
    assert!(err.contains("h.mca:4:"), "{err}");
    assert!(err.contains("did you mean `bool`?"), "{err}");
    assert!(err.contains("1 file checked: 1 error, 0 warnings"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "no color codes when not on a terminal"
    );
}

#[test]
fn an_unreadable_path_exits_2() {
    let out = mca(&["check", "no/such/file.mca"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/file.mca"));
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(mca(&["check"]).status.code(), Some(2));
    assert_eq!(mca(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn build_writes_versioned_ir_with_every_action() {
    let out_file = std::env::temp_dir().join(format!("mca-ir-{}.json", std::process::id()));
    let out = mca(&[
        "build",
        "examples",
        "-o",
        out_file.to_str().unwrap_or_default(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ir: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(ir["ir_version"], mca_compiler::ir::IR_VERSION);
    let names: Vec<&str> = ir["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    for expected in ["create_ticket", "lookup_customer", "order_status"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    // Secret names may appear, never values (there are none at build time).
    assert!(text.contains("CRM_TOKEN"));
}

#[test]
fn build_with_errors_writes_nothing_and_exits_1() {
    let dir = scratch("builderr", &[("e.mca", "action x {")]);
    let out_file = dir.join("ir.json");
    let out = mca(&[
        "build",
        dir.to_str().unwrap_or_default(),
        "-o",
        out_file.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!out_file.exists());
}

#[test]
fn fmt_check_passes_on_the_examples_and_fmt_rewrites_a_misformatted_file() {
    let out = mca(&["fmt", "--check", "examples"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let messy = VALID
        .replace("  description", "        description")
        .replace(" { timeout 2s }", " {\n timeout 2s\n}");
    let dir = scratch("fmt", &[("m.mca", &messy)]);
    let file = dir.join("m.mca");
    let out = mca(&["fmt", "--check", file.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        messy,
        "--check changes nothing"
    );
    let out = mca(&["fmt", file.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(0));
    let once = std::fs::read_to_string(&file).unwrap_or_default();
    assert_ne!(once, messy);
    let out = mca(&["fmt", "--check", file.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(0), "formatting is idempotent");
}

#[test]
fn fmt_leaves_a_file_with_syntax_errors_alone_and_exits_1() {
    let dir = scratch("fmt-broken", &[("b.mca", "action x {\n   input")]);
    let file = dir.join("b.mca");
    let out = mca(&["fmt", file.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "action x {\n   input"
    );
}
