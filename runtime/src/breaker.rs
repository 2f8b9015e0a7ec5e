//! Protection of failing upstreams: a circuit breaker and a retry budget per upstream host.
//!
//! **Circuit breaker.** Every upstream attempt ends as a success or a failure. Failures are
//! connection errors, resets, timeouts (an attempt cut by the call's deadline counts too), and
//! the statuses 429 and 5xx; anything else, 4xx included, is a success: the host answered.
//! After [`BreakerConfig::failure_threshold`] failures in a row the host's breaker *opens*:
//! for [`BreakerConfig::open_for`] every call to that host goes straight to its fallback
//! (reason `circuit_open`) without a connection. Then it is *half-open*: the next call is let
//! through as a probe while the others still fall back; the probe's success closes the breaker,
//! its failure opens it again for another `open_for`.
//!
//! **Retry budget** (token bucket, after Finagle's `RetryBudget`): every call that reaches the
//! upstream deposits [`BreakerConfig::retry_ratio`] of a token into its host's bucket (capped
//! at [`BreakerConfig::retry_cap`]); every retry takes a whole token, and a retry with no token
//! left is not made (the last answer stands). The bucket starts with
//! [`BreakerConfig::retry_reserve`] tokens so that a lone call keeps its retries. Over `n`
//! calls a host therefore sees at most `n * (1 + retry_ratio) + retry_reserve` attempts:
//! with the defaults, at most 1.15 attempts per call (plus 3) however many retries actions ask
//! for.
//!
//! Hosts are keyed by the request's authority (`host:port`; the original host for a routed
//! request). The table of hosts is bounded by the number of distinct upstream origins, which
//! are fixed by the actions and their `env`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mca_compiler::ir::Reason;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Settings of the breaker and the retry budget ([`crate::Config::breaker`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open a host's breaker; `0` turns the breaker off.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets one probe through.
    pub open_for: Duration,
    /// Tokens each call deposits into its host's retry budget; `None` turns the budget off.
    pub retry_ratio: Option<f64>,
    /// Tokens a host's budget starts with.
    pub retry_reserve: f64,
    /// Most tokens a budget holds.
    pub retry_cap: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
            retry_ratio: Some(0.15),
            retry_reserve: 3.0,
            retry_cap: 10.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// A probe is on its way; everyone else falls back.
    HalfOpen,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half_open",
        }
    }
}

struct Host {
    state: State,
    /// Consecutive failed attempts.
    failures: u32,
    /// Retry tokens.
    budget: f64,
}

/// The breakers and budgets of every upstream host.
pub(crate) struct Breakers {
    config: BreakerConfig,
    hosts: Mutex<crate::NameMap<Arc<Mutex<Host>>>>,
}

/// Admission of one call to a host; its attempts are reported through it, to the breaker and
/// to the action's attempt metrics.
pub(crate) struct Permit<'a> {
    breakers: &'a Breakers,
    metrics: &'a Metrics,
    key: &'a str,
    /// The action whose call this is (the label of its attempt metrics).
    action: &'a str,
    host: Arc<Mutex<Host>>,
    /// This call is the half-open probe.
    probe: bool,
    /// Attempts begun.
    attempts: u32,
    /// The attempt in flight, if one is: its deadline and when it began. Dropped after the
    /// deadline, the attempt was cut by it (a timeout, a failure); dropped before it, the
    /// caller went away (not counted).
    pending: Option<(Instant, Instant)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Breakers {
    pub(crate) fn new(config: BreakerConfig) -> Breakers {
        Breakers {
            config,
            hosts: Mutex::new(crate::NameMap::default()),
        }
    }

    fn host(&self, key: &str) -> Arc<Mutex<Host>> {
        let mut hosts = lock(&self.hosts);
        if let Some(h) = hosts.get(key) {
            return h.clone();
        }
        let h = Arc::new(Mutex::new(Host {
            state: State::Closed,
            failures: 0,
            budget: self.config.retry_reserve,
        }));
        hosts.insert(key.to_string(), h.clone());
        h
    }

    /// Lets a call of `action` to `key` through, or refuses it (`None`) while the host's
    /// breaker is open.
    pub(crate) fn admit<'a>(
        &'a self,
        key: &'a str,
        action: &'a str,
        metrics: &'a Metrics,
    ) -> Option<Permit<'a>> {
        let host = self.host(key);
        let mut probe = false;
        {
            let mut h = lock(&host);
            match h.state {
                State::Closed => {}
                State::Open { until } if Instant::now() >= until => {
                    h.state = State::HalfOpen;
                    probe = true;
                    metrics.breaker_state(key, "half_open");
                    tracing::info!(host = key, "circuit half-open: probing");
                }
                State::Open { .. } | State::HalfOpen => {
                    drop(h);
                    metrics.breaker_rejected(key);
                    return None;
                }
            }
        }
        Some(Permit {
            breakers: self,
            metrics,
            key,
            action,
            host,
            probe,
            attempts: 0,
            pending: None,
        })
    }

    /// The state of a host's breaker (`closed`, `open`, `half_open`), for tests and metrics.
    pub(crate) fn state(&self, key: &str) -> &'static str {
        lock(&self.hosts)
            .get(key)
            .map(|h| lock(h).state.name())
            .unwrap_or("closed")
    }
}

impl Permit<'_> {
    /// A retry is about to be scheduled: takes a token from the host's budget. `false` (no
    /// token, or the breaker opened meanwhile) means the retry must not be made.
    pub(crate) fn allow_retry(&mut self) -> bool {
        let config = &self.breakers.config;
        let mut h = lock(&self.host);
        if matches!(h.state, State::Open { .. }) {
            return false;
        }
        if config.retry_ratio.is_some() {
            if h.budget < 1.0 {
                drop(h);
                self.metrics.retry_budget_exhausted(self.key);
                return false;
            }
            h.budget -= 1.0;
        }
        true
    }

    /// An attempt with this deadline starts; the call's first one deposits into the host's
    /// retry budget.
    pub(crate) fn begin(&mut self, first: bool, deadline: Instant) {
        let config = &self.breakers.config;
        if first {
            if let Some(ratio) = config.retry_ratio {
                let mut h = lock(&self.host);
                h.budget = (h.budget + ratio).min(config.retry_cap.max(config.retry_reserve));
            }
        }
        self.attempts += 1;
        self.pending = Some((deadline, Instant::now()));
    }

    /// The attempt ended with `result` (a status, or the failure's reason); `failed` for
    /// connection errors, timeouts, 429 and 5xx.
    pub(crate) fn end(&mut self, failed: bool, result: Result<u16, &str>) {
        if let Some((_, started)) = self.pending.take() {
            let took = started.elapsed();
            tracing::debug!(attempt = self.attempts, result = %match result {
                Ok(status) => format!("{}xx", status / 100),
                Err(reason) => reason.to_string(),
            }, took_ms = took.as_millis() as u64, "upstream attempt");
            self.metrics.attempt(self.action, result, took);
        }
        let config = &self.breakers.config;
        let mut h = lock(&self.host);
        let before = h.state;
        if failed {
            h.failures = h.failures.saturating_add(1);
            let trips = config.failure_threshold > 0
                && (self.probe || h.failures >= config.failure_threshold);
            if trips && !matches!(h.state, State::Open { .. }) {
                h.state = State::Open {
                    until: Instant::now() + config.open_for,
                };
            }
        } else {
            h.failures = 0;
            // Any answer closes it: the probe's, or one that was in flight when it opened.
            if self.probe || h.state != State::HalfOpen {
                h.state = State::Closed;
            }
        }
        self.probe = false;
        let after = h.state;
        drop(h);
        if before.name() != after.name() {
            self.metrics.breaker_state(self.key, after.name());
            match after {
                State::Open { .. } => {
                    tracing::warn!(host = %self.key, "circuit open: calls fall back without a request")
                }
                _ => tracing::info!(host = %self.key, "circuit {}", after.name()),
            }
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        match self.pending {
            // Cut by the deadline: the upstream did not answer in time.
            Some((deadline, _)) if Instant::now() >= deadline => {
                return self.end(true, Err(Reason::Timeout.as_str()))
            }
            // The caller went away first: nothing is known of the host.
            Some(_) => self.pending = None,
            None => {}
        }
        if self.probe {
            // The probe never finished an attempt (its request could not be built, or its
            // caller went away): let the next call probe.
            let mut h = lock(&self.host);
            if h.state == State::HalfOpen {
                h.state = State::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(threshold: u32, open_ms: u64) -> Breakers {
        Breakers::new(BreakerConfig {
            failure_threshold: threshold,
            open_for: Duration::from_millis(open_ms),
            ..BreakerConfig::default()
        })
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn fail_call(b: &Breakers, m: &Metrics) {
        let mut p = b.admit("h", "a", m).expect("admitted");
        p.begin(true, later());
        p.end(true, Err("connect"));
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_probe_closes_it() {
        let m = Metrics::new();
        let b = breakers(3, 50);
        fail_call(&b, &m);
        fail_call(&b, &m);
        // A success resets the count.
        let mut p = b.admit("h", "a", &m).unwrap();
        p.begin(true, later());
        p.end(false, Ok(200));
        drop(p);
        for _ in 0..3 {
            fail_call(&b, &m);
        }
        assert_eq!(b.state("h"), "open");
        assert!(b.admit("h", "a", &m).is_none());
        std::thread::sleep(Duration::from_millis(60));
        let mut probe = b.admit("h", "a", &m).expect("probe");
        assert_eq!(b.state("h"), "half_open");
        assert!(b.admit("h", "a", &m).is_none(), "one probe at a time");
        probe.begin(true, later());
        probe.end(false, Ok(200));
        assert_eq!(b.state("h"), "closed");
        assert!(b.admit("h", "a", &m).is_some());
    }

    #[test]
    fn failed_or_abandoned_probe_opens_it_again() {
        let m = Metrics::new();
        let b = breakers(1, 50);
        fail_call(&b, &m);
        std::thread::sleep(Duration::from_millis(60));
        fail_call(&b, &m);
        assert_eq!(b.state("h"), "open");
        std::thread::sleep(Duration::from_millis(60));
        let mut probe = b.admit("h", "a", &m).unwrap();
        probe.begin(true, Instant::now());
        drop(probe); // cut by its deadline
        assert_eq!(b.state("h"), "open");
    }

    #[test]
    fn attempts_abandoned_by_their_caller_before_the_deadline_count_for_nothing() {
        let m = Metrics::new();
        let b = breakers(3, 50);
        // Many callers hang up while their attempts are in flight (a load generator stopping,
        // a platform giving up on its webhook): the host did nothing wrong.
        for _ in 0..10 {
            let mut p = b.admit("h", "a", &m).unwrap();
            p.begin(true, later());
            drop(p);
        }
        assert_eq!(b.state("h"), "closed");
        // Nor do they break a run of real failures.
        fail_call(&b, &m);
        fail_call(&b, &m);
        let mut p = b.admit("h", "a", &m).unwrap();
        p.begin(true, later());
        drop(p);
        fail_call(&b, &m);
        assert_eq!(b.state("h"), "open");
        // An abandoned probe lets the next call probe.
        std::thread::sleep(Duration::from_millis(60));
        let mut probe = b.admit("h", "a", &m).expect("probe");
        probe.begin(true, later());
        drop(probe);
        let mut next = b.admit("h", "a", &m).expect("the next call probes");
        next.begin(true, later());
        next.end(false, Ok(200));
        assert_eq!(b.state("h"), "closed");
    }

    #[test]
    fn budget_bounds_retries_to_a_share_of_calls() {
        let m = Metrics::new();
        let b = breakers(0, 1000);
        let (mut attempts, calls) = (0u32, 1000u32);
        for _ in 0..calls {
            let mut p = b.admit("h", "a", &m).unwrap();
            // Every call wants 3 retries of a failing host.
            for n in 0..4 {
                if n > 0 && !p.allow_retry() {
                    break;
                }
                p.begin(n == 0, later());
                attempts += 1;
                p.end(true, Err("connect"));
            }
        }
        let per_call = f64::from(attempts) / f64::from(calls);
        assert!(per_call <= 1.2, "{per_call}");
        assert!(per_call > 1.1, "{per_call}");
    }
}
