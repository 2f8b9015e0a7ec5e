//! `mca test`, `mca run` and `mca serve` as users call them: real processes, real HTTP on loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

mod common;
use common::{http, serve};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mca"));
    c.current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("MCA_TOKEN");
    c
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn mca(args: &[&str]) -> Output {
    bin()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mca: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mca-cmd-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("a.mca"), text).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn test_command_passes_every_example_and_ends_with_the_counts() {
    let out = mca(&["test", "examples"]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    assert!(
        text.contains("ok     lookup_customer › known caller"),
        "{text}"
    );
}

#[test]
fn a_wrong_expectation_fails_with_expected_and_actual_and_its_source_line() {
    let canonical =
        std::fs::read_to_string(repo().join("examples/order_status.mca")).unwrap_or_default();
    let wrong = canonical.replace(
        r#"expect { status: "shipped""#,
        r#"expect { status: "delivered""#,
    );
    let dir = scratch("wrong", &wrong);
    let out = mca(&["test", dir.to_str().unwrap_or_default()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED order_status › shipped order"),
        "{text}"
    );
    assert!(
        text.contains(r#"`status` is "shipped", expected "delivered""#),
        "{text}"
    );
    assert!(
        text.contains(r#"expect { status: "delivered""#),
        "the failing line is shown: {text}"
    );
    assert!(
        text.lines().last().unwrap_or_default() == "1 passed, 1 failed",
        "{text}"
    );
}

#[test]
fn test_filter_runs_only_matching_tests() {
    let out = mca(&["test", "examples", "--filter", "crm down"]);
    assert_eq!(stdout(&out).lines().last(), Some("1 passed, 0 failed"));
}

#[test]
fn run_refuses_invalid_input_before_any_request_and_exits_1() {
    let out = bin()
        .args([
            "run",
            "examples/lookup_customer.mca",
            "lookup_customer",
            "--input",
            r#"{"phone": "not a phone"}"#,
        ])
        .env("CRM_BASE_URL", "https://crm.invalid")
        .env("CRM_TOKEN", "t0ps3cret")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["error"]["code"], "invalid_input");
    assert_eq!(v["error"]["field"], "phone");
    assert!(!stdout(&out).contains("t0ps3cret"));
}

#[test]
fn run_lists_missing_environment_variables() {
    let out = bin()
        .args([
            "run",
            "examples/lookup_customer.mca",
            "lookup_customer",
            "--input",
            r#"{"phone": "+4930123456"}"#,
        ])
        .env_remove("CRM_BASE_URL")
        .env_remove("CRM_TOKEN")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CRM_BASE_URL") && err.contains("CRM_TOKEN"),
        "{err}"
    );
}

#[test]
fn run_refuses_a_loopback_upstream_without_allow_private() {
    let out = bin()
        .args([
            "run",
            "examples/lookup_customer.mca",
            "lookup_customer",
            "--input",
            r#"{"phone": "+4930123456"}"#,
        ])
        .env("CRM_BASE_URL", "https://127.0.0.1:9")
        .env("CRM_TOKEN", "t")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    // The action has a fallback: the caller hears it, with the reason.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["status"], "fallback");
    assert_eq!(v["reason"], "blocked");
}

#[test]
fn serve_demo_answers_the_canonical_examples_offline() {
    // The whole examples folder, template library included: nothing needs configuring.
    let s = serve(&["examples", "--demo"], &[]);
    let (status, body) = http(
        &s.addr,
        "POST",
        "/actions/lookup_customer",
        &[("X-Call-Id", "call-1")],
        r#"{"phone": "+4930123456"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["output"]["name"], "Max Mustermann");
    assert_eq!(v["say"], "Found Max Mustermann from Beispiel GmbH.");

    let (_, body) = http(
        &s.addr,
        "POST",
        "/actions/lookup_customer",
        &[("X-Call-Id", "call-1")],
        r#"{"phone": "+4930123456"}"#,
    );
    assert!(body.contains(r#""cached":true"#), "{body}");

    let (status, body) = http(
        &s.addr,
        "POST",
        "/actions/order_status",
        &[],
        r#"{"order_number": "100234"}"#,
    );
    assert_eq!(status, 200);
    assert!(body.contains(r#""carrier":"DHL""#), "{body}");

    let (status, body) = http(
        &s.addr,
        "POST",
        "/actions/lookup_customer",
        &[],
        r#"{"phone": 12}"#,
    );
    assert_eq!(status, 422, "{body}");
    let (status, _) = http(&s.addr, "POST", "/actions/nope", &[], "{}");
    assert_eq!(status, 404);
    let (status, _) = http(&s.addr, "DELETE", "/calls/call-1", &[], "");
    assert_eq!(status, 204);
    let (status, body) = http(&s.addr, "GET", "/actions", &[], "");
    assert_eq!(status, 200);
    assert!(body.contains("lookup_customer"));
    let (status, _) = http(&s.addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200);
}

/// Asks the demo upstream's lookup_customer for Max's number; asserts he is found.
fn assert_demo_finds_max(addr: &str) {
    let (status, body) = http(
        addr,
        "POST",
        "/actions/lookup_customer",
        &[],
        r#"{"phone": "+4930123456"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""name":"Max Mustermann""#), "{body}");
}

#[test]
fn serve_threads_flag_sets_the_serving_threads_and_refuses_zero() {
    let s = serve(
        &["examples/lookup_customer.mca", "--demo", "--threads", "3"],
        &[],
    );
    for _ in 0..4 {
        assert_demo_finds_max(&s.addr);
    }
    // The answers alone would come as well with the flag ignored: count the threads.
    #[cfg(target_os = "linux")]
    {
        let tasks = format!("/proc/{}/task", s.child.id());
        let serving = std::fs::read_dir(&tasks)
            .unwrap_or_else(|e| panic!("{tasks}: {e}"))
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("mca-serve-"))
            .count();
        assert_eq!(serving, 3, "serving threads");
    }
    let out = mca(&["serve", "examples/lookup_customer.mca", "--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--threads"), "{stderr}");
}

#[test]
fn serve_idle_poll_flag_reaches_the_serving_threads_and_refuses_more_than_a_millisecond() {
    // Polling itself is tested in the runtime (`idle::tests`); here, that the flag gets there.
    for (args, expect) in [
        (&[][..], "idle_poll_us=200"),
        (&["--idle-poll-us", "0"][..], "idle_poll_us=0"),
        (&["--idle-poll-us", "1000"][..], "idle_poll_us=1000"),
    ] {
        let s = serve(
            &[&["examples/lookup_customer.mca", "--demo"][..], args].concat(),
            &[],
        );
        assert_demo_finds_max(&s.addr);
        let line = s
            .log_line("idle_poll_us=")
            .unwrap_or_else(|log| panic!("no idle_poll_us in the log:\n{log}"));
        assert!(line.contains(expect), "{args:?}: {line}");
    }
    let out = mca(&[
        "serve",
        "examples/lookup_customer.mca",
        "--idle-poll-us",
        "1001",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--idle-poll-us"), "{stderr}");
}

#[test]
fn serve_stops_on_sigterm() {
    let mut s = serve(&["examples/lookup_customer.mca", "--demo"], &[]);
    let pid = s.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map(|st| st.success());
    assert_eq!(killed.ok(), Some(true));
    let mut waited = None;
    for _ in 0..100 {
        if let Ok(Some(st)) = s.child.try_wait() {
            waited = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        waited.and_then(|st| st.code()),
        Some(0),
        "exits cleanly after draining"
    );
}

#[test]
fn test_placeholders_for_unset_env_values_never_make_the_request_invalid() {
    // An env value used as a basic-auth user must not get a URL placeholder (its `:` is refused).
    let dir = scratch(
        "placeholders",
        r#"action basic_env_user {
  description "Reads a thing with basic auth whose user name comes from the environment."
  input n: int "Any number"
  request GET "{env.API_URL}/things/{input.n}" {
    auth basic env.API_USER secret.API_PASSWORD
  }
  output { s: string = $.s }
  fallback { s = "fallback" }
  test "env not set in the test" {
    input { n: 1 }
    upstream 200 { "s": "ok" }
    expect { s: "ok" }
  }
}
"#,
    );
    let out = mca(&["test", dir.to_str().unwrap_or_default()]);
    assert_eq!(
        stdout(&out).lines().last(),
        Some("1 passed, 0 failed"),
        "{}",
        stdout(&out)
    );
}
