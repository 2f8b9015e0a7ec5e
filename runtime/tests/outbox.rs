//! The store of deferred jobs: durability across reopen and "crashes", the retry schedule,
//! give-up, the concurrency bound, metrics, and reading while another handle writes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mca_runtime::outbox::{
    Deliver, Delivery, JobKind, JobRecord, JobState, NewJob, Outbox, OutboxError, Schedule,
};
use serde_json::json;

/// A fast schedule so tests wait milliseconds, not minutes.
fn fast() -> Schedule {
    Schedule {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(40),
        concurrency: 16,
        delivery_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_millis(200),
        ..Schedule::default()
    }
}

fn store(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("nested").join("store.sqlite")
}

fn job(action: &str, key: Option<&str>, give_up_after: Duration) -> NewJob {
    NewJob {
        kind: JobKind::Step,
        action: action.into(),
        step: Some("notify_crm".into()),
        call_id: Some("call-1".into()),
        idempotency_key: key.map(Into::into),
        payload: json!({"method": "POST", "url": "https://crm.example.com/notes", "body": {"n": 1}}),
        give_up_after,
    }
}

/// Polls `cond` until it holds, for at most 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A deliverer that answers from a script (one answer per call, the last one repeated) and
/// records every job it was given.
struct Scripted {
    answers: Mutex<Vec<Delivery>>,
    seen: Mutex<Vec<JobRecord>>,
}

impl Scripted {
    fn new(answers: Vec<Delivery>) -> Arc<Scripted> {
        Arc::new(Scripted {
            answers: Mutex::new(answers),
            seen: Mutex::new(Vec::new()),
        })
    }
    fn seen(&self) -> Vec<JobRecord> {
        self.seen.lock().unwrap().clone()
    }
}

impl Deliver for Scripted {
    fn deliver<'a>(
        &'a self,
        job: &'a JobRecord,
    ) -> Pin<Box<dyn Future<Output = Delivery> + Send + 'a>> {
        self.seen.lock().unwrap().push(job.clone());
        let mut answers = self.answers.lock().unwrap();
        let answer = if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers[0].clone()
        };
        Box::pin(async move { answer })
    }
}

/// A deliverer that never answers (the process "dies" during the delivery).
struct Hangs {
    started: AtomicUsize,
}

impl Deliver for Hangs {
    fn deliver(&self, _job: &JobRecord) -> Pin<Box<dyn Future<Output = Delivery> + Send + '_>> {
        self.started.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::pending())
    }
}

fn retry(reason: &str) -> Delivery {
    Delivery::Retry {
        reason: reason.into(),
        after: None,
    }
}

#[tokio::test]
async fn enqueued_jobs_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = store(&dir);
    let ids = {
        let outbox = Outbox::open(&path).unwrap();
        let ids = outbox
            .enqueue(vec![
                job("book", Some("key-1"), Duration::from_secs(60)),
                NewJob {
                    kind: JobKind::FollowUp,
                    step: None,
                    ..job("summary", None, Duration::from_secs(60))
                },
            ])
            .await
            .unwrap();
        assert_eq!(ids.len(), 2);
        ids
    };
    let outbox = Outbox::open(&path).unwrap();
    let jobs = outbox.list(None, 10).unwrap();
    assert_eq!(jobs.len(), 2);
    // Newest first.
    assert_eq!(jobs[0].id, ids[1]);
    assert_eq!(jobs[0].kind, JobKind::FollowUp);
    assert!(
        jobs[0].idempotency_key.starts_with("mca-"),
        "a key was made"
    );
    assert_eq!(jobs[1].id, ids[0]);
    assert_eq!(jobs[1].idempotency_key, "key-1");
    assert_eq!(jobs[1].step.as_deref(), Some("notify_crm"));
    assert_eq!(jobs[1].call_id.as_deref(), Some("call-1"));
    assert_eq!(jobs[1].payload["body"]["n"], 1);
    assert_eq!(jobs[1].state, JobState::Pending);
    assert_eq!(jobs[1].attempts, 0);
    assert_eq!(jobs[1].give_up_at - jobs[1].created_at, 60_000);
    let counts = outbox.counts().unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.failed), (2, 0, 0));
    assert_eq!(outbox.get(ids[0]).unwrap().unwrap(), jobs[1]);
}

#[tokio::test]
async fn a_job_cut_by_a_crash_mid_delivery_is_redelivered_with_the_same_key_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = store(&dir);
    {
        let outbox = Outbox::open(&path).unwrap();
        let hangs = Arc::new(Hangs {
            started: AtomicUsize::new(0),
        });
        let worker = outbox.start_worker_with(hangs.clone(), fast());
        outbox
            .enqueue(vec![job(
                "book",
                Some("key-crash"),
                Duration::from_secs(600),
            )])
            .await
            .unwrap();
        eventually("the delivery started", || {
            hangs.started.load(Ordering::SeqCst) == 1
        })
        .await;
        // "Crash": the worker and the store go away while the deliverer has not answered.
        drop(worker);
        drop(outbox);
    }
    let outbox = Outbox::open(&path).unwrap();
    let before = outbox.list(None, 10).unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].state, JobState::Pending);
    assert_eq!(before[0].attempts, 1, "the cut attempt was recorded");

    let deliver = Scripted::new(vec![Delivery::Delivered]);
    let worker = outbox.start_worker_with(deliver.clone(), fast());
    eventually("redelivered", || outbox.counts().unwrap().delivered == 1).await;
    worker.shutdown().await;
    let seen = deliver.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].idempotency_key, "key-crash");
    assert_eq!(seen[0].attempts, 2);
    let after = outbox.get(seen[0].id).unwrap().unwrap();
    assert_eq!(after.state, JobState::Delivered);
    assert_eq!(after.attempts, 2);
}

#[tokio::test]
async fn a_retried_job_is_delivered_later_and_keeps_its_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&store(&dir)).unwrap();
    let deliver = Scripted::new(vec![
        retry("upstream answered 503"),
        Delivery::Retry {
            reason: "upstream answered 429".into(),
            after: Some(Duration::from_millis(30)),
        },
        Delivery::Delivered,
    ]);
    let worker = outbox.start_worker_with(deliver.clone(), fast());
    let ids = outbox
        .enqueue(vec![job("book", Some("key-r"), Duration::from_secs(600))])
        .await
        .unwrap();
    eventually("delivered", || outbox.counts().unwrap().delivered == 1).await;
    worker.shutdown().await;
    let seen = deliver.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|j| j.idempotency_key == "key-r"));
    assert_eq!(
        seen.iter().map(|j| j.attempts).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let job = outbox.get(ids[0]).unwrap().unwrap();
    assert_eq!(job.state, JobState::Delivered);
    assert_eq!(job.attempts, 3);
    assert_eq!(job.last_error.as_deref(), Some("upstream answered 429"));
}

#[tokio::test]
async fn retry_after_delays_the_next_attempt_at_least_that_long() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&store(&dir)).unwrap();
    let deliver = Scripted::new(vec![
        Delivery::Retry {
            reason: "429".into(),
            after: Some(Duration::from_millis(300)),
        },
        Delivery::Delivered,
    ]);
    let schedule = Schedule {
        cap: Duration::from_secs(1),
        ..fast()
    };
    let worker = outbox.start_worker_with(deliver.clone(), schedule);
    let started = Instant::now();
    outbox
        .enqueue(vec![job("book", None, Duration::from_secs(600))])
        .await
        .unwrap();
    eventually("delivered", || outbox.counts().unwrap().delivered == 1).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    worker.shutdown().await;
}

#[tokio::test]
async fn a_job_that_keeps_asking_for_retries_fails_after_its_give_up_time() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&store(&dir)).unwrap();
    let deliver = Scripted::new(vec![retry("connection refused")]);
    let worker = outbox.start_worker_with(deliver.clone(), fast());
    let ids = outbox
        .enqueue(vec![job("book", None, Duration::from_millis(150))])
        .await
        .unwrap();
    eventually("failed", || outbox.counts().unwrap().failed == 1).await;
    worker.shutdown().await;
    let job = outbox.get(ids[0]).unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.attempts >= 2,
        "retried before giving up: {}",
        job.attempts
    );
    assert_eq!(
        job.last_error.as_deref(),
        Some(
            format!(
                "gave up after {} attempts: connection refused",
                job.attempts
            )
            .as_str()
        )
    );
    assert_eq!(deliver.seen().len() as u32, job.attempts);
    // The last attempt came at (or after) the give-up time, not before it.
    assert!(job.updated_at >= job.give_up_at);
}

#[tokio::test]
async fn a_refused_job_fails_at_once_without_retries() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&store(&dir)).unwrap();
    let deliver = Scripted::new(vec![Delivery::Failed {
        reason: "upstream answered 422".into(),
    }]);
    let worker = outbox.start_worker_with(deliver.clone(), fast());
    let ids = outbox
        .enqueue(vec![job("book", None, Duration::from_secs(600))])
        .await
        .unwrap();
    eventually("failed", || outbox.counts().unwrap().failed == 1).await;
    // Give a wrong retry every chance to happen.
    tokio::time::sleep(Duration::from_millis(100)).await;
    worker.shutdown().await;
    assert_eq!(deliver.seen().len(), 1);
    let job = outbox.get(ids[0]).unwrap().unwrap();
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_error.as_deref(), Some("upstream answered 422"));
}

/// Counts deliveries in flight; each waits until `bound` are in flight (or 2 s passed), so the
/// bound is reached on any machine, and exceeding it would be seen.
struct Concurrent {
    bound: usize,
    active: AtomicUsize,
    max: AtomicUsize,
}

impl Deliver for Concurrent {
    fn deliver(&self, _job: &JobRecord) -> Pin<Box<dyn Future<Output = Delivery> + Send + '_>> {
        Box::pin(async move {
            let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(now, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.active.load(Ordering::SeqCst) < self.bound && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.active.fetch_sub(1, Ordering::SeqCst);
            Delivery::Delivered
        })
    }
}

#[tokio::test]
async fn the_worker_never_runs_more_deliveries_at_once_than_its_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&store(&dir)).unwrap();
    let jobs = (0..24)
        .map(|i| job(&format!("a{i}"), None, Duration::from_secs(600)))
        .collect();
    outbox.enqueue(jobs).await.unwrap();
    let deliver = Arc::new(Concurrent {
        bound: 4,
        active: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
    });
    let schedule = Schedule {
        concurrency: 4,
        ..fast()
    };
    let worker = outbox.start_worker_with(deliver.clone(), schedule);
    eventually("all delivered", || outbox.counts().unwrap().delivered == 24).await;
    worker.shutdown().await;
    assert_eq!(deliver.max.load(Ordering::SeqCst), 4);
    let jobs = outbox.list(Some(JobState::Delivered), 100).unwrap();
    assert!(jobs.iter().all(|j| j.attempts == 1), "each delivered once");
}

#[tokio::test]
async fn metrics_count_jobs_by_state_and_this_processes_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&store(&dir)).unwrap();
    let deliver = Scripted::new(vec![
        retry("503"),
        Delivery::Delivered,
        Delivery::Failed {
            reason: "400".into(),
        },
    ]);
    let worker = outbox.start_worker_with(deliver.clone(), fast());
    outbox
        .enqueue(vec![job("one", None, Duration::from_secs(600))])
        .await
        .unwrap();
    eventually("delivered", || outbox.counts().unwrap().delivered == 1).await;
    outbox
        .enqueue(vec![job("two", None, Duration::from_secs(600))])
        .await
        .unwrap();
    eventually("failed", || outbox.counts().unwrap().failed == 1).await;
    worker.shutdown().await;
    // A third job nobody delivers.
    outbox
        .enqueue(vec![job("three", None, Duration::from_secs(600))])
        .await
        .unwrap();
    let text = outbox.metrics_text();
    for line in [
        "# TYPE mca_deferred_jobs gauge",
        "mca_deferred_jobs{state=\"pending\"} 1",
        "mca_deferred_jobs{state=\"delivered\"} 1",
        "mca_deferred_jobs{state=\"failed\"} 1",
        "# TYPE mca_deferred_attempts counter",
        "mca_deferred_attempts_total 3",
        "mca_deferred_delivered_total 1",
        "mca_deferred_failed_total 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    assert!(text.contains("# HELP mca_deferred_attempts "));
    let merged = outbox.append_metrics("# TYPE x counter\nx_total 1\n# EOF\n");
    assert!(merged.starts_with("# TYPE x counter\nx_total 1\n# HELP mca_deferred_jobs"));
    assert!(merged.ends_with("mca_deferred_failed_total 1\n# EOF\n"));
}

#[tokio::test]
async fn a_read_only_handle_reads_while_a_writer_has_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = store(&dir);
    let writer = Outbox::open(&path).unwrap();
    writer
        .enqueue(vec![job("one", None, Duration::from_secs(600))])
        .await
        .unwrap();
    let reader = Outbox::open_read_only(&path).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.list(None, 10).unwrap().len(), 1);
    // Later writes are seen by the open reader.
    writer
        .enqueue(vec![job("two", None, Duration::from_secs(600))])
        .await
        .unwrap();
    assert_eq!(reader.counts().unwrap().pending, 2);
    assert_eq!(
        reader.list(Some(JobState::Pending), 1).unwrap()[0].action,
        "two"
    );
    assert!(matches!(
        reader.enqueue(vec![job("x", None, Duration::ZERO)]).await,
        Err(OutboxError::ReadOnly)
    ));
    // And after the writer has closed (its WAL checkpointed and removed), a new reader too.
    drop(writer);
    drop(reader);
    let reader = Outbox::open_read_only(&path).unwrap();
    assert_eq!(reader.counts().unwrap().pending, 2);
}

#[test]
fn opening_read_only_where_there_is_no_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sqlite");
    assert!(matches!(
        Outbox::open_read_only(&missing),
        Err(OutboxError::NotFound(p)) if p == missing
    ));
    assert!(!missing.exists(), "nothing was created");
}

#[test]
fn a_file_that_is_not_a_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "not a database, just some text that is long enough .......",
    )
    .unwrap();
    let err = Outbox::open(&path).unwrap_err();
    assert!(matches!(err, OutboxError::NotAStore { .. }), "{err}");
    let err = Outbox::open_read_only(&path).unwrap_err();
    assert!(matches!(err, OutboxError::NotAStore { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "not a database, just some text that is long enough ......."
    );
}

#[test]
fn a_store_from_a_newer_mca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = store(&dir);
    drop(Outbox::open(&path).unwrap());
    set_user_version(&path, mca_runtime::outbox::SCHEMA_VERSION + 1);
    let err = Outbox::open(&path).unwrap_err();
    assert!(matches!(err, OutboxError::TooNew { .. }), "{err}");
    assert!(err.to_string().contains("newer mca"), "{err}");
    assert!(matches!(
        Outbox::open_read_only(&path),
        Err(OutboxError::TooNew { .. })
    ));
}

/// Writes `PRAGMA user_version` without rusqlite (a dev-dependency this crate does not have):
/// the SQLite header keeps it big-endian at byte offset 60.
fn set_user_version(path: &Path, version: i64) {
    let mut bytes = std::fs::read(path).unwrap();
    let v = u32::try_from(version).unwrap().to_be_bytes();
    bytes[60..64].copy_from_slice(&v);
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn shutdown_waits_for_deliveries_in_flight_and_leaves_cut_ones_pending() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&store(&dir)).unwrap();
    let hangs = Arc::new(Hangs {
        started: AtomicUsize::new(0),
    });
    let worker = outbox.start_worker_with(hangs.clone(), fast());
    outbox
        .enqueue(vec![job("book", None, Duration::from_secs(600))])
        .await
        .unwrap();
    eventually("the delivery started", || {
        hangs.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let started = Instant::now();
    worker.shutdown().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "waited the grace: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "then cut: {waited:?}");
    let jobs = outbox.list(None, 10).unwrap();
    assert_eq!(jobs[0].state, JobState::Pending);
    assert_eq!(jobs[0].attempts, 1);
}

/// Set in the child process of the SIGKILL test: the store it writes to.
const CHILD_ENV: &str = "MCA_OUTBOX_TEST_CHILD_STORE";

/// Not a test of its own: the child process of
/// `jobs_and_cut_deliveries_survive_a_sigkill_of_the_process` (does nothing otherwise).
/// Enqueues ten jobs in five transactions, starts delivering all of them with a deliverer that
/// never answers, says `ready`, and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_child_process() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let outbox = Outbox::open(Path::new(&path)).unwrap();
    for batch in 0..5 {
        let jobs = (0..2)
            .map(|i| {
                let key = format!("k{}", batch * 2 + i);
                job("book", Some(&key), Duration::from_secs(600))
            })
            .collect();
        outbox.enqueue(jobs).await.unwrap();
    }
    let hangs = Arc::new(Hangs {
        started: AtomicUsize::new(0),
    });
    let _worker = outbox.start_worker_with(hangs.clone(), fast());
    eventually("ten deliveries started", || {
        hangs.started.load(Ordering::SeqCst) == 10
    })
    .await;
    println!("ready");
    // Killed long before this ends; never outlive the parent for long.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn jobs_and_cut_deliveries_survive_a_sigkill_of_the_process() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = store(&dir);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigkill_child_process", "--nocapture"])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.trim() == "ready" {
                let _ = tx.send(());
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(60));
    child.kill().unwrap(); // SIGKILL: no destructor, no checkpoint, no clean close
    child.wait().unwrap();
    ready.expect("the child process never became ready");

    let outbox = Outbox::open(&path).unwrap();
    let jobs = outbox.list(None, 100).unwrap();
    assert_eq!(jobs.len(), 10, "every enqueued job survived");
    assert!(jobs
        .iter()
        .all(|j| j.state == JobState::Pending && j.attempts == 1));
    let deliver = Scripted::new(vec![Delivery::Delivered]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let worker = outbox.start_worker_with(deliver.clone(), fast());
        eventually("all redelivered", || {
            outbox.counts().unwrap().delivered == 10
        })
        .await;
        worker.shutdown().await;
    });
    let mut keys: Vec<String> = deliver
        .seen()
        .into_iter()
        .map(|j| j.idempotency_key)
        .collect();
    keys.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    want.sort();
    assert_eq!(keys, want, "each job redelivered once, with its own key");
}
