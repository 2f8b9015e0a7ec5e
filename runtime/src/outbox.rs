//! The store of deferred jobs ("outbox"): deferred writes of an action's steps and follow-up
//! actions, recorded durably before the caller is answered and delivered afterwards, at least
//! once, by a background [`Worker`].
//!
//! The module knows nothing about the IR: a job's `payload` is opaque JSON that the [`Deliver`]
//! implementation turns back into a request. Layout, guarantees and the retry schedule are
//! described in `docs/store.md`; in short:
//!
//! - **Store**: one SQLite file (default `.mca/store.sqlite`, or `$MCA_STORE`) in WAL mode with
//!   `synchronous=FULL`, so [`Outbox::enqueue`] has reached the disk when it returns and other
//!   processes (`mca writes`) can read while a server writes. The schema is versioned with
//!   `PRAGMA user_version`; a store written by a newer `mca` is refused, never rewritten.
//! - **Delivery**: at least once. Before each attempt the worker records it (`attempts + 1`,
//!   `next_attempt_at` moved past the attempt), so a crash during a delivery means a redelivery
//!   after restart, with the same stored idempotency key.
//! - **Retries**: capped exponential backoff with full jitter (1 s, 2 s, 4 s ... up to 5 min by
//!   default, see [`Schedule`]); a `Retry-After` wins when it is longer; a job is retried until
//!   `created_at + give_up_after` and then fails ("gave up after N attempts: ...").
//!
//! All database work of the async API runs on Tokio's blocking pool. [`Outbox::list`],
//! [`Outbox::counts`] and [`Outbox::metrics_text`] are synchronous: they use their own read
//! connection (WAL readers never wait for a writer) and take well under a millisecond on a store
//! of ordinary size.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// Version of the store's schema (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    step            TEXT,
    call_id         TEXT,
    idempotency_key TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    give_up_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state_due ON jobs (state, next_attempt_at);
";

const COLUMNS: &str = "id, kind, action, step, call_id, idempotency_key, payload, state, \
                       attempts, created_at, give_up_at, next_attempt_at, updated_at, last_error";

/// What a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A deferred write: one step of an action, run after the action has answered.
    Step,
    /// A whole action, run when a phone call ends.
    FollowUp,
}

impl JobKind {
    /// The stored (and serialised) name: `step` or `follow_up`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Step => "step",
            JobKind::FollowUp => "follow_up",
        }
    }

    fn parse(s: &str) -> Option<JobKind> {
        match s {
            "step" => Some(JobKind::Step),
            "follow_up" => Some(JobKind::FollowUp),
            _ => None,
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its (next) delivery attempt, or being delivered.
    Pending,
    /// Delivered; nothing more happens to it.
    Delivered,
    /// Given up on, or refused for good by the receiver; `last_error` says why.
    Failed,
}

impl JobState {
    /// The stored (and serialised) name: `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Delivered => "delivered",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<JobState> {
        match s {
            "pending" => Some(JobState::Pending),
            "delivered" => Some(JobState::Delivered),
            "failed" => Some(JobState::Failed),
            _ => None,
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::parse(s).ok_or_else(|| format!("unknown job state `{s}`"))
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to record with [`Outbox::enqueue`].
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub action: String,
    /// The step's name, for [`JobKind::Step`].
    pub step: Option<String>,
    pub call_id: Option<String>,
    /// Sent with every attempt so the receiver can drop duplicates. `None`: the store makes a
    /// random one (`mca-...`) and keeps it, so redeliveries after a restart carry the same key.
    pub idempotency_key: Option<String>,
    /// What the deliverer needs to re-render the request. Stored in plain text and shown by
    /// `mca writes --format json`: never put secret values here.
    pub payload: Value,
    /// The job is retried until `created_at + give_up_after`, then it fails.
    pub give_up_after: Duration,
}

/// A stored job. Times are Unix milliseconds (UTC); [`rfc3339`] formats them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: i64,
    pub kind: JobKind,
    pub action: String,
    pub step: Option<String>,
    pub call_id: Option<String>,
    /// Always present: the caller's key, or the one the store made at enqueue time.
    pub idempotency_key: String,
    pub payload: Value,
    pub state: JobState,
    /// Delivery attempts started so far (an attempt cut by a crash counts).
    pub attempts: u32,
    pub created_at: i64,
    /// `created_at + give_up_after`: a retry asked for after this fails the job.
    pub give_up_at: i64,
    /// For a pending job, when it is due next; otherwise the last value it had.
    pub next_attempt_at: i64,
    pub updated_at: i64,
    /// The reason of the last attempt that did not deliver.
    pub last_error: Option<String>,
}

/// Number of stored jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver has the job: it is done.
    Delivered,
    /// Try again later (connection error, timeout, 429, 5xx ...). `after` is the receiver's
    /// `Retry-After`, used when it is longer than the backoff (and capped like it).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The receiver refused the job for good (a 4xx other than 408/429, a payload that no longer
    /// renders ...): it fails at once.
    Failed { reason: String },
}

/// Carries out one delivery attempt of a job. Reasons end up in the store and in `mca writes`:
/// they must not contain secret values.
///
/// The worker applies [`Schedule::delivery_timeout`] around each call; a deliverer should still
/// use its own, shorter, request timeout.
pub trait Deliver: Send + Sync + 'static {
    fn deliver<'a>(
        &'a self,
        job: &'a JobRecord,
    ) -> Pin<Box<dyn Future<Output = Delivery> + Send + 'a>>;
}

/// Why the store could not be used.
#[derive(Debug)]
pub enum OutboxError {
    /// [`Outbox::open_read_only`] on a path where there is no store.
    NotFound(PathBuf),
    /// The file is not an `mca` store (or not a database at all).
    NotAStore { path: PathBuf, detail: String },
    /// The store was written by a newer `mca` (schema version `found`).
    TooNew { path: PathBuf, found: i64 },
    /// A write through a store opened with [`Outbox::open_read_only`].
    ReadOnly,
    /// Creating the store's folder failed.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Any other database error.
    Database(String),
}

impl fmt::Display for OutboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboxError::NotFound(p) => write!(f, "no store at `{}`", p.display()),
            OutboxError::NotAStore { path, detail } => {
                write!(f, "`{}` is not an mca store: {detail}", path.display())
            }
            OutboxError::TooNew { path, found } => write!(
                f,
                "the store `{}` has schema version {found}, written by a newer mca (this one \
                 knows version {SCHEMA_VERSION})",
                path.display()
            ),
            OutboxError::ReadOnly => f.write_str("the store is open read-only"),
            OutboxError::Io { path, error } => {
                write!(f, "cannot create `{}`: {error}", path.display())
            }
            OutboxError::Database(m) => write!(f, "store: {m}"),
        }
    }
}

impl std::error::Error for OutboxError {}

impl From<rusqlite::Error> for OutboxError {
    fn from(e: rusqlite::Error) -> Self {
        OutboxError::Database(e.to_string())
    }
}

/// When and how the [`Worker`] delivers. `Schedule::default()` is the production setting.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Backoff ceiling after the first attempt; it doubles with each attempt.
    pub base: Duration,
    /// Largest backoff, and largest `Retry-After` honoured.
    pub cap: Duration,
    /// Most deliveries in flight at once.
    pub concurrency: usize,
    /// One delivery attempt longer than this counts as a retry ("delivery timed out").
    pub delivery_timeout: Duration,
    /// How long [`Worker::shutdown`] waits for deliveries in flight before cutting them (a cut
    /// job stays pending and is delivered again later).
    pub shutdown_grace: Duration,
    /// Delivered jobs older than this are deleted when a worker starts.
    pub keep_delivered: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(5 * 60),
            concurrency: 16,
            delivery_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            keep_delivered: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Schedule {
    /// The backoff ceiling after attempt `attempt` (1-based): `base * 2^(attempt-1)`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(30);
        self.base
            .checked_mul(1u32 << shift)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay before the next attempt after attempt `attempt` asked for a retry: full jitter
    /// (uniform in `0..=ceiling`), or the receiver's `Retry-After` (capped) when that is longer.
    pub fn retry_delay(&self, attempt: u32, after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(attempt);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jittered = Duration::from_millis(fastrand::u64(0..=ms));
        match after {
            Some(after) => jittered.max(after.min(self.cap)),
            None => jittered,
        }
    }
}

/// The default location of the store: `$MCA_STORE` when set (and not empty), otherwise
/// `.mca/store.sqlite` in the current directory.
pub fn default_store_path() -> PathBuf {
    match std::env::var_os("MCA_STORE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(".mca").join("store.sqlite"),
    }
}

/// The durable job store. Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None` for a read-only store.
    writer: Option<Mutex<Connection>>,
    reader: Mutex<Connection>,
    /// Wakes the worker: a job was enqueued.
    notify: Notify,
    attempts: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.inner.path)
            .field("read_only", &self.inner.writer.is_none())
            .finish()
    }
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves no half-done work: SQLite rolls back an unfinished
    // transaction when its `Transaction` is dropped.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn not_a_store(path: &Path, e: &rusqlite::Error) -> OutboxError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => OutboxError::NotAStore {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => OutboxError::Database(format!("{}: {e}", path.display())),
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(())
}

/// Checks the schema version of an open store; creates the schema when `create` and the
/// database is empty.
fn check_schema(conn: &Connection, path: &Path, create: bool) -> Result<(), OutboxError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| not_a_store(path, &e))?;
    if version > SCHEMA_VERSION {
        return Err(OutboxError::TooNew {
            path: path.to_path_buf(),
            found: version,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    // Version 0: a new database, or a file that is something else.
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| not_a_store(path, &e))?;
    if tables > 0 {
        return Err(OutboxError::NotAStore {
            path: path.to_path_buf(),
            detail: "it holds other tables".into(),
        });
    }
    if !create {
        return Err(OutboxError::NotAStore {
            path: path.to_path_buf(),
            detail: "it is empty (no schema)".into(),
        });
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))?;
    Ok(())
}

impl Outbox {
    /// Opens the store at `path` for reading and writing, creating its folder and the schema
    /// when needed. Sets WAL mode and `synchronous=FULL`.
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| OutboxError::Io {
                path: parent.to_path_buf(),
                error,
            })?;
        }
        let writer = Connection::open(path).map_err(|e| not_a_store(path, &e))?;
        configure(&writer)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| not_a_store(path, &e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OutboxError::Database(format!(
                "{}: cannot switch to WAL mode (journal mode is {mode})",
                path.display()
            )));
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        check_schema(&writer, path, true)?;
        let reader = Self::reader(path)?;
        Ok(Self::from_parts(path, Some(writer), reader))
    }

    /// Opens an existing store for reading only (for `mca writes`), also while a server has it
    /// open for writing. Changes no data; when no writer has the store open, SQLite may leave
    /// an empty `-wal` and a `-shm` file beside it, which the next writer uses and removes.
    pub fn open_read_only(path: &Path) -> Result<Outbox, OutboxError> {
        if !path.is_file() {
            return Err(OutboxError::NotFound(path.to_path_buf()));
        }
        let reader = Self::reader(path)?;
        check_schema(&reader, path, false)?;
        Ok(Self::from_parts(path, None, reader))
    }

    fn reader(path: &Path) -> Result<Connection, OutboxError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| not_a_store(path, &e))?;
        configure(&conn)?;
        Ok(conn)
    }

    fn from_parts(path: &Path, writer: Option<Connection>, reader: Connection) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: writer.map(Mutex::new),
                reader: Mutex::new(reader),
                notify: Notify::new(),
                attempts: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
        }
    }

    /// Where the store is.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether this handle was opened with [`Outbox::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.writer.is_none()
    }

    /// Runs `f` on the write connection on the blocking pool.
    async fn write<T, F>(&self, f: F) -> Result<T, OutboxError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, OutboxError> + Send + 'static,
    {
        if self.inner.writer.is_none() {
            return Err(OutboxError::ReadOnly);
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || match &inner.writer {
            Some(w) => f(&mut lock(w)),
            None => Err(OutboxError::ReadOnly),
        })
        .await
        .map_err(|e| OutboxError::Database(format!("store task failed: {e}")))?
    }

    /// Records jobs in one transaction and returns their ids, in order. When it returns `Ok`
    /// the jobs are on disk (the commit is fsynced) and the worker has been woken.
    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<i64>, OutboxError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self
            .write(move |conn| {
                let now = now_ms();
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut ids = Vec::with_capacity(jobs.len());
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO jobs (kind, action, step, call_id, idempotency_key, payload, \
                         state, attempts, created_at, give_up_at, next_attempt_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?7, ?7)",
                    )?;
                    for job in jobs {
                        let key = job.idempotency_key.unwrap_or_else(|| new_key(now));
                        let payload = serde_json::to_string(&job.payload)
                            .map_err(|e| OutboxError::Database(format!("payload: {e}")))?;
                        insert.execute(params![
                            job.kind.as_str(),
                            job.action,
                            job.step,
                            job.call_id,
                            key,
                            payload,
                            now,
                            now.saturating_add(ms(job.give_up_after)),
                        ])?;
                        ids.push(tx.last_insert_rowid());
                    }
                }
                tx.commit()?;
                Ok(ids)
            })
            .await?;
        self.inner.notify.notify_one();
        Ok(ids)
    }

    /// One job by id.
    pub fn get(&self, id: i64) -> Result<Option<JobRecord>, OutboxError> {
        let conn = lock(&self.inner.reader);
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))?;
        let row = stmt.query_row([id], |r| Ok(decode(r))).optional()?;
        match row {
            None => Ok(None),
            Some(Ok(job)) => Ok(Some(job)),
            Some(Err((_, e))) => Err(OutboxError::Database(format!(
                "job {id} is unreadable: {e}"
            ))),
        }
    }

    /// Jobs newest first, all or those in one state, at most `limit`. Rows that cannot be read
    /// are logged and left out.
    pub fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, OutboxError> {
        let conn = lock(&self.inner.reader);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![state.map(JobState::as_str), limit], |r| {
            Ok(decode(r))
        })?;
        let mut out = Vec::new();
        for row in rows {
            match row? {
                Ok(job) => out.push(job),
                Err((id, e)) => tracing::warn!(id, "skipping an unreadable job: {e}"),
            }
        }
        Ok(out)
    }

    /// Number of jobs by state.
    pub fn counts(&self) -> Result<Counts, OutboxError> {
        let conn = lock(&self.inner.reader);
        let mut stmt = conn.prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state")?;
        let mut counts = Counts::default();
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (state, n) = row?;
            let n = u64::try_from(n).unwrap_or(0);
            match JobState::parse(&state) {
                Some(JobState::Pending) => counts.pending += n,
                Some(JobState::Delivered) => counts.delivered += n,
                Some(JobState::Failed) => counts.failed += n,
                None => tracing::warn!(state, n, "jobs in an unknown state"),
            }
        }
        Ok(counts)
    }

    /// Prometheus metrics in OpenMetrics text, without the closing `# EOF` (see
    /// [`Outbox::append_metrics`]): the gauge `mca_deferred_jobs{state}` read from the store,
    /// and the counters `mca_deferred_attempts_total`, `mca_deferred_delivered_total` and
    /// `mca_deferred_failed_total` of this process's worker.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        match self.counts() {
            Ok(c) => {
                out.push_str(
                    "# HELP mca_deferred_jobs Deferred jobs (writes and follow-ups) in the store, \
                     by state.\n# TYPE mca_deferred_jobs gauge\n",
                );
                for (state, n) in [
                    ("pending", c.pending),
                    ("delivered", c.delivered),
                    ("failed", c.failed),
                ] {
                    let _ = writeln!(out, "mca_deferred_jobs{{state=\"{state}\"}} {n}");
                }
            }
            Err(e) => tracing::warn!("cannot count the deferred jobs for /metrics: {e}"),
        }
        for (name, help, value) in [
            (
                "mca_deferred_attempts",
                "Delivery attempts of deferred jobs started by this process.",
                &self.inner.attempts,
            ),
            (
                "mca_deferred_delivered",
                "Deferred jobs delivered by this process.",
                &self.inner.delivered,
            ),
            (
                "mca_deferred_failed",
                "Deferred jobs that failed (refused or given up) in this process.",
                &self.inner.failed,
            ),
        ] {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {}\n",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }

    /// Adds [`Outbox::metrics_text`] to an OpenMetrics exposition, before its `# EOF` line.
    pub fn append_metrics(&self, exposition: &str) -> String {
        let ours = self.metrics_text();
        match exposition.rfind("# EOF") {
            Some(at) => format!("{}{ours}{}", &exposition[..at], &exposition[at..]),
            None => format!("{exposition}{ours}"),
        }
    }

    /// Starts the delivery worker with the default [`Schedule`]. Must be called inside a Tokio
    /// runtime.
    pub fn start_worker(&self, deliver: Arc<dyn Deliver>) -> Worker {
        self.start_worker_with(deliver, Schedule::default())
    }

    /// Starts the delivery worker with a given schedule. Must be called inside a Tokio runtime.
    ///
    /// Every pending job whose `next_attempt_at` has passed is due at once, so after a crash
    /// all pending jobs are delivered again. One worker per store: two would mostly, but not
    /// always, avoid delivering the same job at the same time.
    pub fn start_worker_with(&self, deliver: Arc<dyn Deliver>, schedule: Schedule) -> Worker {
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(run_worker(self.clone(), deliver, schedule, stopped));
        Worker {
            stop,
            handle: Some(handle),
        }
    }

    /// Deletes delivered jobs last updated before `now - keep`; returns how many.
    async fn prune(&self, keep: Duration) -> Result<usize, OutboxError> {
        self.write(move |conn| {
            let before = now_ms().saturating_sub(ms(keep));
            Ok(conn.execute(
                "DELETE FROM jobs WHERE state = 'delivered' AND updated_at < ?1",
                [before],
            )?)
        })
        .await
    }

    /// Claims up to `free` due jobs that are not in `busy`: records the attempt of each
    /// (`attempts + 1`, `next_attempt_at` past the attempt's backoff) in one transaction.
    /// Also returns when the next pending job not claimed nor busy is due.
    async fn claim(
        &self,
        free: usize,
        busy: Vec<i64>,
        schedule: &Schedule,
    ) -> Result<Claim, OutboxError> {
        let schedule = schedule.clone();
        let claim = self
            .write(move |conn| {
                let now = now_ms();
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut claim = Claim::default();
                let mut broken = Vec::new();
                {
                    let limit = i64::try_from(free + busy.len() + 1).unwrap_or(i64::MAX);
                    let mut stmt = tx.prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM jobs WHERE state = 'pending' \
                         ORDER BY next_attempt_at, id LIMIT ?1"
                    ))?;
                    let rows = stmt.query_map([limit], |r| Ok(decode(r)))?;
                    for row in rows {
                        let job = match row? {
                            Ok(job) => job,
                            Err((Some(id), e)) => {
                                broken.push((id, e));
                                continue;
                            }
                            Err((None, e)) => {
                                tracing::error!("a pending job without a readable id: {e}");
                                continue;
                            }
                        };
                        if busy.contains(&job.id) {
                            continue;
                        }
                        if job.next_attempt_at > now || claim.jobs.len() >= free {
                            claim.next_due = Some(job.next_attempt_at);
                            break;
                        }
                        claim.jobs.push(job);
                    }
                }
                {
                    let mut update = tx.prepare_cached(
                        "UPDATE jobs SET attempts = attempts + 1, next_attempt_at = ?2, \
                         updated_at = ?3 WHERE id = ?1 AND state = 'pending'",
                    )?;
                    for job in &mut claim.jobs {
                        job.attempts = job.attempts.saturating_add(1);
                        job.next_attempt_at =
                            now.saturating_add(ms(schedule.ceiling(job.attempts)));
                        job.updated_at = now;
                        update.execute(params![job.id, job.next_attempt_at, now])?;
                    }
                    let mut fail = tx.prepare_cached(
                        "UPDATE jobs SET state = 'failed', last_error = ?2, updated_at = ?3 \
                         WHERE id = ?1",
                    )?;
                    for (id, e) in &broken {
                        tracing::error!(id, "failing an unreadable job: {e}");
                        fail.execute(params![id, format!("unreadable job: {e}"), now])?;
                    }
                }
                tx.commit()?;
                claim.broken = broken.len();
                Ok(claim)
            })
            .await?;
        self.inner
            .attempts
            .fetch_add(claim.jobs.len() as u64, Ordering::Relaxed);
        self.inner
            .failed
            .fetch_add(claim.broken as u64, Ordering::Relaxed);
        Ok(claim)
    }

    /// Records what an attempt came to.
    async fn finish(
        &self,
        job: &JobRecord,
        outcome: Delivery,
        schedule: &Schedule,
    ) -> Result<(), OutboxError> {
        let now = now_ms();
        let (state, next, error) = match outcome {
            Delivery::Delivered => (JobState::Delivered, job.next_attempt_at, None),
            Delivery::Failed { reason } => (JobState::Failed, job.next_attempt_at, Some(reason)),
            Delivery::Retry { reason, after } => {
                if now >= job.give_up_at {
                    let reason = format!("gave up after {} attempts: {reason}", job.attempts);
                    (JobState::Failed, job.next_attempt_at, Some(reason))
                } else {
                    let delay = schedule.retry_delay(job.attempts, after);
                    // The last attempt happens at the give-up time, not never.
                    let next = now.saturating_add(ms(delay)).min(job.give_up_at);
                    (JobState::Pending, next, Some(reason))
                }
            }
        };
        match (&state, &error) {
            (JobState::Delivered, _) => {
                tracing::debug!(id = job.id, action = %job.action, attempts = job.attempts, "deferred job delivered");
            }
            (JobState::Failed, Some(e)) => {
                tracing::warn!(id = job.id, action = %job.action, step = ?job.step, attempts = job.attempts, "deferred job failed: {e}");
            }
            (_, e) => {
                tracing::info!(id = job.id, action = %job.action, step = ?job.step, attempts = job.attempts, retry_in_ms = next - now, "deferred job will be retried: {}", e.as_deref().unwrap_or(""));
            }
        }
        let id = job.id;
        let keep_error = error.is_none();
        self.write(move |conn| {
            conn.execute(
                "UPDATE jobs SET state = ?2, next_attempt_at = ?3, updated_at = ?4, \
                 last_error = CASE WHEN ?6 THEN last_error ELSE ?5 END \
                 WHERE id = ?1 AND state = 'pending'",
                params![id, state.as_str(), next, now, error, keep_error],
            )?;
            Ok(())
        })
        .await?;
        match state {
            JobState::Delivered => self.inner.delivered.fetch_add(1, Ordering::Relaxed),
            JobState::Failed => self.inner.failed.fetch_add(1, Ordering::Relaxed),
            JobState::Pending => 0,
        };
        Ok(())
    }
}

#[derive(Default)]
struct Claim {
    jobs: Vec<JobRecord>,
    next_due: Option<i64>,
    broken: usize,
}

/// A random idempotency key for a job enqueued without one.
fn new_key(now: i64) -> String {
    format!(
        "mca-{now:x}-{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

/// Reads one row; an error carries the row's id when that much could be read.
fn decode(r: &rusqlite::Row<'_>) -> Result<JobRecord, (Option<i64>, String)> {
    let id: i64 = r.get(0).map_err(|e| (None, e.to_string()))?;
    let fail = |e: String| (Some(id), e);
    let text = |i: usize| r.get::<_, String>(i).map_err(|e| fail(e.to_string()));
    let opt_text = |i: usize| {
        r.get::<_, Option<String>>(i)
            .map_err(|e| fail(e.to_string()))
    };
    let int = |i: usize| r.get::<_, i64>(i).map_err(|e| fail(e.to_string()));
    let kind = text(1)?;
    let kind = JobKind::parse(&kind).ok_or_else(|| fail(format!("unknown kind `{kind}`")))?;
    let state = text(7)?;
    let state = JobState::parse(&state).ok_or_else(|| fail(format!("unknown state `{state}`")))?;
    let payload = serde_json::from_str(&text(6)?).map_err(|e| fail(format!("payload: {e}")))?;
    Ok(JobRecord {
        id,
        kind,
        action: text(2)?,
        step: opt_text(3)?,
        call_id: opt_text(4)?,
        idempotency_key: text(5)?,
        payload,
        state,
        attempts: u32::try_from(int(8)?.max(0)).unwrap_or(u32::MAX),
        created_at: int(9)?,
        give_up_at: int(10)?,
        next_attempt_at: int(11)?,
        updated_at: int(12)?,
        last_error: opt_text(13)?,
    })
}

/// The running delivery worker of [`Outbox::start_worker`]. Dropping it stops the worker at
/// once, cutting deliveries in flight (their jobs stay pending); [`Worker::shutdown`] stops it
/// gracefully. Keep it for as long as jobs should be delivered.
#[must_use = "dropping the Worker stops it at once"]
pub struct Worker {
    stop: watch::Sender<bool>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Worker {
    /// Stops taking jobs, waits up to [`Schedule::shutdown_grace`] for deliveries in flight,
    /// then cuts the rest (they stay pending and are delivered again after the next start).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.handle.take() {
            if let Err(e) = handle.await {
                if e.is_panic() {
                    tracing::error!("the deferred-job worker panicked: {e}");
                }
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// How long the worker waits at most before looking at the store again on its own.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// How long the worker waits after a database error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

async fn run_worker(
    outbox: Outbox,
    deliver: Arc<dyn Deliver>,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) {
    if outbox.is_read_only() {
        tracing::error!(
            "the deferred-job worker needs a writable store; `{}` is open read-only",
            outbox.path().display()
        );
        return;
    }
    match outbox.prune(schedule.keep_delivered).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "pruned old delivered jobs"),
        Err(e) => tracing::warn!("cannot prune delivered jobs: {e}"),
    }
    let concurrency = schedule.concurrency.max(1);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut busy: HashMap<tokio::task::Id, JobRecord> = HashMap::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let free = concurrency.saturating_sub(busy.len());
        let mut wait = IDLE_POLL;
        if free > 0 {
            let ids = busy.values().map(|j| j.id).collect();
            match outbox.claim(free, ids, &schedule).await {
                Ok(claim) => {
                    for job in claim.jobs {
                        let task = deliver_one(
                            outbox.clone(),
                            Arc::clone(&deliver),
                            job.clone(),
                            schedule.clone(),
                        );
                        let handle = tasks.spawn(task);
                        busy.insert(handle.id(), job);
                    }
                    if let Some(due) = claim.next_due {
                        let until = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
                        wait = wait.min(Duration::from_millis(until));
                    }
                }
                Err(e) => {
                    tracing::error!("cannot read the due deferred jobs: {e}");
                    wait = ERROR_PAUSE;
                }
            }
        }
        let full = busy.len() >= concurrency;
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                reap(&outbox, &mut busy, done, &schedule).await;
            }
            () = outbox.inner.notify.notified(), if !full => {}
            () = tokio::time::sleep(wait), if !full => {}
        }
    }
    // Graceful: let deliveries in flight finish for a while, then cut them.
    let grace = tokio::time::sleep(schedule.shutdown_grace);
    tokio::pin!(grace);
    while !tasks.is_empty() {
        tokio::select! {
            Some(done) = tasks.join_next_with_id() => reap(&outbox, &mut busy, done, &schedule).await,
            () = &mut grace => {
                tracing::warn!(n = tasks.len(), "cutting deferred deliveries in flight; they stay pending");
                tasks.shutdown().await;
                break;
            }
        }
    }
}

/// One delivery attempt and its record.
async fn deliver_one(
    outbox: Outbox,
    deliver: Arc<dyn Deliver>,
    job: JobRecord,
    schedule: Schedule,
) {
    let outcome = match tokio::time::timeout(schedule.delivery_timeout, deliver.deliver(&job)).await
    {
        Ok(outcome) => outcome,
        Err(_) => Delivery::Retry {
            reason: format!(
                "delivery timed out after {} ms",
                schedule.delivery_timeout.as_millis()
            ),
            after: None,
        },
    };
    if let Err(e) = outbox.finish(&job, outcome, &schedule).await {
        // The job stays pending with the time set when it was claimed: delivered again later.
        tracing::error!(id = job.id, "cannot record a delivery attempt: {e}");
    }
}

/// Handles a finished delivery task; a panicking deliverer counts as a retry.
async fn reap(
    outbox: &Outbox,
    busy: &mut HashMap<tokio::task::Id, JobRecord>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    schedule: &Schedule,
) {
    let (id, panicked) = match done {
        Ok((id, ())) => (id, None),
        Err(e) => (e.id(), e.is_panic().then(|| e.to_string())),
    };
    let Some(job) = busy.remove(&id) else {
        return;
    };
    if let Some(e) = panicked {
        tracing::error!(id = job.id, "the deliverer panicked: {e}");
        let outcome = Delivery::Retry {
            reason: "the deliverer panicked".into(),
            after: None,
        };
        if let Err(e) = outbox.finish(&job, outcome, schedule).await {
            tracing::error!(id = job.id, "cannot record a delivery attempt: {e}");
        }
    }
}

/// Formats Unix milliseconds as an RFC 3339 UTC time with seconds (`2026-05-01T10:00:03Z`).
pub fn rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unix milliseconds now (the clock of the store's times).
pub fn unix_ms_now() -> i64 {
    now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn backoff_doubles_from_base_up_to_the_cap() {
        let s = Schedule::default();
        let ceilings: Vec<u64> = (1..=10).map(|a| s.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(s.ceiling(u32::MAX), s.cap);
        for attempt in 1..12 {
            assert!(s.retry_delay(attempt, None) <= s.ceiling(attempt));
        }
    }

    #[test]
    fn retry_after_wins_when_longer_but_is_capped() {
        let s = Schedule::default();
        assert!(s.retry_delay(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert_eq!(
            s.retry_delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(300)
        );
    }
}
