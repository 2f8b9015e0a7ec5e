//! Deferred writes survive a crash: `mca serve` records them before it answers, is killed with
//! SIGKILL while they are still pending (the upstream is down), and delivers every one of them
//! after a restart, each repeat with the same idempotency key.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mca_runtime::stub::{Reply, Stub};

mod common;
use common::{http, serve};

const ACTION: &str = r#"
action log_call {
  description "Log the caller's request in the CRM; the CRM may be briefly down."

  input topic: string "What the caller wants"

  step log deferred within 1h {
    request POST "{env.CRM_URL}/calls" {
      idempotency_key "{call.id}-log"
      body { call: call.id, topic: input.topic }
    }
  }

  say "I've noted that."
}
"#;

const CALLS: usize = 12;

#[test]
fn deferred_writes_pending_at_sigkill_are_all_delivered_after_restart_with_the_same_keys() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // The CRM is down: every delivery attempt gets a 503.
    let stub = rt
        .block_on(Stub::start(vec![Reply::status(503)]))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("log_call.mca"), ACTION).unwrap_or_else(|e| panic!("{e}"));
    let project = dir.path().to_string_lossy().to_string();
    let store = dir
        .path()
        .join("store.sqlite")
        .to_string_lossy()
        .to_string();
    let crm = format!("http://{}", stub.addr());
    let env = [("CRM_URL", crm.as_str())];
    let args = [
        "--allow-private",
        "--store",
        store.as_str(),
        project.as_str(),
    ];

    let mut first = serve(&args, &env);
    for i in 0..CALLS {
        let call_id = format!("call-{i}");
        let (status, body) = http(
            &first.addr,
            "POST",
            "/actions/log_call",
            &[("X-Call-Id", call_id.as_str())],
            &format!(r#"{{"topic": "topic {i}"}}"#),
        );
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""status":"ok""#), "{body}");
    }
    // Every answer came after its write was recorded. Let deliveries start failing (after a
    // few 503s the host's circuit opens and the rest wait without a request), then crash.
    wait_until(Duration::from_secs(20), || stub.request_count() >= 3);
    first
        .child
        .kill()
        .unwrap_or_else(|e| panic!("cannot SIGKILL mca serve: {e}"));
    let _ = first.child.wait();

    // The CRM is back (new answers also start a new request log); a new process delivers what
    // the killed one left pending.
    let before_crash = stub.requests();
    stub.set_replies(vec![Reply::json(200, serde_json::json!({"ok": true}))]);
    let _second = serve(&args, &env);
    let counts = || -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mca"))
            .args(["writes", "--store", store.as_str()])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let start = Instant::now();
    let all = format!("0 pending, {CALLS} delivered, 0 failed");
    loop {
        let listed = counts();
        if listed.contains(&all) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not all delivered within 60 s; the store says:\n{listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let expected: BTreeSet<String> = (0..CALLS).map(|i| format!("call-{i}-log")).collect();
    let sent: BTreeSet<String> = stub
        .requests()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_string))
        .collect();
    assert_eq!(sent, expected);
    // Every request for one call, before and after the crash, carried that call's key and body.
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in before_crash.iter().chain(stub.requests().iter()) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/calls");
        let key = r
            .header("idempotency-key")
            .unwrap_or_else(|| panic!("a delivery without an idempotency key"))
            .to_string();
        let body = r.json().unwrap_or_default();
        let call = body["call"].as_str().unwrap_or_default().to_string();
        assert_eq!(key, format!("{call}-log"), "key and body disagree: {body}");
        by_key.entry(key).or_default().insert(body.to_string());
    }
    for (key, bodies) in &by_key {
        assert_eq!(
            bodies.len(),
            1,
            "{key} was sent with different bodies: {bodies:?}"
        );
    }

    // Writes were repeated (503s before the crash, deliveries after it), always with their key.
    // Every write that failed before the crash was sent again after it, with the same key.
    assert!(
        before_crash.len() >= 3,
        "{} attempts before the crash",
        before_crash.len()
    );
    let failed_before: BTreeSet<&str> = before_crash
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .collect();
    let after: Vec<mca_runtime::stub::Recorded> = stub.requests();
    let sent_after: BTreeSet<&str> = after
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .collect();
    assert!(
        failed_before.is_subset(&sent_after),
        "attempted before the crash: {failed_before:?}; delivered after: {sent_after:?}"
    );
    drop(stub);
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "not done within {} s",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
