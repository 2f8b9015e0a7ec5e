//! `mca writes`: lists the deferred writes and follow-ups of a store, newest first, also while
//! `mca serve` has the store open (the store is read through a read-only connection).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use mca_runtime::outbox::{self, Counts, JobRecord, JobState, Outbox, OutboxError};

use crate::{Format, EXIT_ERRORS, EXIT_USAGE};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Pending,
    Delivered,
    Failed,
}

impl From<StateArg> for JobState {
    fn from(s: StateArg) -> JobState {
        match s {
            StateArg::Pending => JobState::Pending,
            StateArg::Delivered => JobState::Delivered,
            StateArg::Failed => JobState::Failed,
        }
    }
}

pub struct WritesArgs {
    pub store: Option<PathBuf>,
    pub state: Option<StateArg>,
    pub limit: usize,
    pub format: Format,
}

pub fn writes(args: WritesArgs) -> ExitCode {
    let path = args.store.unwrap_or_else(outbox::default_store_path);
    let store = match Outbox::open_read_only(&path) {
        Ok(s) => s,
        Err(e @ OutboxError::NotFound(_)) => {
            eprintln!(
                "error: {e} (`mca serve` creates it; choose another with --store or MCA_STORE)"
            );
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e @ OutboxError::NotAStore { .. }) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERRORS);
        }
    };
    let listed = store
        .list(args.state.map(JobState::from), args.limit)
        .and_then(|jobs| Ok((jobs, store.counts()?)));
    let (jobs, counts) = match listed {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", path.display());
            return ExitCode::from(EXIT_ERRORS);
        }
    };
    match args.format {
        Format::Json => {
            let doc = serde_json::json!({
                "store": path.display().to_string(),
                "jobs": jobs,
                "counts": counts,
            });
            match serde_json::to_string_pretty(&doc) {
                Ok(text) => println!("{text}"),
                Err(e) => {
                    eprintln!("error: cannot serialise the jobs: {e}");
                    return ExitCode::from(EXIT_ERRORS);
                }
            }
        }
        Format::Human => print!(
            "{}",
            human(&jobs, counts, args.state, outbox::unix_ms_now())
        ),
    }
    ExitCode::SUCCESS
}

/// The human listing: a block per job (no payload values), then the counts of the whole store.
fn human(jobs: &[JobRecord], counts: Counts, state: Option<StateArg>, now: i64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if jobs.is_empty() {
        match state {
            Some(s) => {
                let _ = writeln!(out, "no {} jobs", JobState::from(s));
            }
            None => out.push_str("no jobs\n"),
        }
    }
    for job in jobs {
        let target = match &job.step {
            Some(step) => format!("{} › {step}", job.action),
            None => job.action.clone(),
        };
        let when = match job.state {
            JobState::Pending => format!(
                "next {} ({})",
                outbox::rfc3339(job.next_attempt_at),
                relative(job.next_attempt_at - now)
            ),
            JobState::Delivered => format!("delivered {}", outbox::rfc3339(job.updated_at)),
            JobState::Failed => format!("failed {}", outbox::rfc3339(job.updated_at)),
        };
        let _ = writeln!(
            out,
            "#{:<5} {:<9} {:<9} {target}  attempts {}  {when}",
            job.id,
            job.state.as_str(),
            job.kind.as_str(),
            job.attempts,
        );
        let _ = write!(out, "       key {}", one_line(&job.idempotency_key, 100));
        if let Some(call) = &job.call_id {
            let _ = write!(out, "  call {}", one_line(call, 60));
        }
        let _ = writeln!(
            out,
            "  created {}  payload {}",
            outbox::rfc3339(job.created_at),
            payload_summary(&job.payload)
        );
        if let Some(e) = &job.last_error {
            let _ = writeln!(out, "       last error: {}", one_line(e, 200));
        }
    }
    let _ = writeln!(
        out,
        "{} pending, {} delivered, {} failed",
        counts.pending, counts.delivered, counts.failed
    );
    out
}

/// "in 4s", "in 3m", "due" ...
fn relative(ms: i64) -> String {
    if ms <= 0 {
        return "due".into();
    }
    let s = (ms + 999) / 1000;
    match s {
        0..=99 => format!("in {s}s"),
        100..=5999 => format!("in {}m", s / 60),
        6000..=172_799 => format!("in {}h", s / 3600),
        _ => format!("in {}d", s / 86_400),
    }
}

/// The payload's shape without its values: the number of members or items.
fn payload_summary(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => plural(m.len(), "field"),
        serde_json::Value::Array(a) => plural(a.len(), "item"),
        serde_json::Value::Null => "null".into(),
        _ => "(scalar)".into(),
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Control characters become spaces and long text is cut, so one job's text cannot break the
/// listing.
fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(-5), "due");
        assert_eq!(relative(1), "in 1s");
        assert_eq!(relative(4_000), "in 4s");
        assert_eq!(relative(180_000), "in 3m");
        assert_eq!(relative(7_200_000), "in 2h");
        assert_eq!(relative(3 * 86_400_000), "in 3d");
    }

    #[test]
    fn one_line_removes_newlines_and_cuts() {
        assert_eq!(one_line("a\nb\tc", 10), "a b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
