//! `mca writes` as users call it: the real binary reads a store that this test process created
//! and still holds open for writing (as `mca serve` would).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mca_runtime::outbox::{Deliver, Delivery, JobKind, JobRecord, NewJob, Outbox, Schedule};
use serde_json::{json, Value};

fn mca(args: &[&str], store_env: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mca"));
    c.args(args).env("NO_COLOR", "1").env_remove("MCA_STORE");
    if let Some(p) = store_env {
        c.env("MCA_STORE", p);
    }
    c.output().unwrap_or_else(|e| panic!("cannot run mca: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Delivers the job of action `ok`, refuses the one of action `refused`.
struct ByAction(Mutex<Vec<i64>>);

impl Deliver for ByAction {
    fn deliver(&self, job: &JobRecord) -> Pin<Box<dyn Future<Output = Delivery> + Send + '_>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job.id);
        let answer = if job.action == "refused" {
            Delivery::Failed {
                reason: "upstream answered 422:\nunknown customer".into(),
            }
        } else {
            Delivery::Delivered
        };
        Box::pin(async move { answer })
    }
}

fn job(action: &str, key: &str) -> NewJob {
    NewJob {
        kind: JobKind::Step,
        action: action.into(),
        step: Some("notify_crm".into()),
        call_id: Some("call-7".into()),
        idempotency_key: Some(key.into()),
        payload: json!({"body": {"note": "payload-value-never-shown"}}),
        give_up_after: Duration::from_secs(600),
    }
}

/// A store with one delivered, one failed and (newest) one pending job, still open for writing.
fn store_with_three_jobs(path: &Path) -> Outbox {
    let outbox = Outbox::open(path).unwrap_or_else(|e| panic!("{e}"));
    let writer = outbox.clone();
    mca_runtime::block_on(async move {
        let schedule = Schedule {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(20),
            ..Schedule::default()
        };
        let worker = writer.start_worker_with(Arc::new(ByAction(Mutex::default())), schedule);
        writer
            .enqueue(vec![job("ok", "key-ok"), job("refused", "key-refused")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = writer.counts().unwrap_or_else(|e| panic!("{e}"));
            if c.delivered == 1 && c.failed == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "jobs not finished: {c:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worker.shutdown().await;
        writer
            .enqueue(vec![NewJob {
                kind: JobKind::FollowUp,
                step: None,
                ..job("wrap_up", "key-pending")
            }])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    })
    .unwrap_or_else(|e| panic!("{e}"));
    outbox
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("store.sqlite");
    (dir, path)
}

#[test]
fn writes_lists_jobs_newest_first_with_counts_while_a_writer_holds_the_store() {
    let (_dir, path) = temp();
    let _writer = store_with_three_jobs(&path);
    let out = mca(
        &["writes", "--store", path.to_str().unwrap_or_default()],
        None,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let pending = stdout.find("key-pending").expect(&stdout);
    let refused = stdout.find("key-refused").expect(&stdout);
    let ok = stdout.find("key-ok").expect(&stdout);
    assert!(pending < refused && refused < ok, "newest first:\n{stdout}");
    assert!(
        stdout.contains("pending   follow_up wrap_up  attempts 0  next "),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed    step      refused › notify_crm  attempts 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("delivered step      ok › notify_crm  attempts 1"),
        "{stdout}"
    );
    // The error is kept on one line.
    assert!(
        stdout.contains("last error: upstream answered 422: unknown customer\n"),
        "{stdout}"
    );
    assert!(stdout.contains("call call-7"), "{stdout}");
    assert!(stdout.contains("payload 1 field"), "{stdout}");
    assert!(!stdout.contains("payload-value-never-shown"), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("1 pending, 1 delivered, 1 failed")
    );
}

#[test]
fn writes_filters_by_state_and_limit_but_counts_the_whole_store() {
    let (_dir, path) = temp();
    let _writer = store_with_three_jobs(&path);
    let p = path.to_str().unwrap_or_default();
    let out = mca(&["writes", "--store", p, "--state", "failed"], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("key-refused"), "{stdout}");
    assert!(
        !stdout.contains("key-ok") && !stdout.contains("key-pending"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("1 pending, 1 delivered, 1 failed")
    );

    let out = mca(&["writes", "--store", p, "--limit", "1"], None);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("key-pending"), "{stdout}");
    assert!(!stdout.contains("key-refused"), "{stdout}");
}

#[test]
fn writes_as_json_has_every_field_and_the_counts() {
    let (_dir, path) = temp();
    let _writer = store_with_three_jobs(&path);
    let out = mca(&["writes", "--format", "json"], Some(&path));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        doc["counts"],
        json!({"pending": 1, "delivered": 1, "failed": 1})
    );
    let jobs = doc["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[0]["state"], "pending");
    assert_eq!(jobs[0]["kind"], "follow_up");
    assert_eq!(jobs[0]["idempotency_key"], "key-pending");
    assert_eq!(jobs[1]["state"], "failed");
    assert_eq!(
        jobs[1]["last_error"],
        "upstream answered 422:\nunknown customer"
    );
    assert_eq!(jobs[2]["state"], "delivered");
    assert_eq!(jobs[2]["step"], "notify_crm");
    assert_eq!(
        jobs[2]["payload"]["body"]["note"],
        "payload-value-never-shown"
    );
    assert!(jobs[2]["created_at"].as_i64().is_some());
}

#[test]
fn writes_without_a_store_is_a_usage_error_and_creates_nothing() {
    let (dir, path) = temp();
    let out = mca(
        &["writes", "--store", path.to_str().unwrap_or_default()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no store at"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path())
            .map(Iterator::count)
            .unwrap_or(1),
        0
    );
}

#[test]
fn writes_reads_a_store_after_its_writer_has_closed() {
    let (_dir, path) = temp();
    drop(store_with_three_jobs(&path));
    let out = mca(&["writes"], Some(&path));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().last(),
        Some("1 pending, 1 delivered, 1 failed")
    );
    // Reading changed nothing: the store is still a writable, valid store.
    let reopened = Outbox::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reopened.counts().map(|c| c.pending).ok(), Some(1));
}

#[test]
fn serve_and_run_take_a_store_flag() {
    for cmd in ["serve", "run"] {
        let out = mca(&[cmd, "--help"], None);
        let help = text(&out.stdout);
        assert!(help.contains("--store <STORE>"), "{cmd}: {help}");
    }
}
