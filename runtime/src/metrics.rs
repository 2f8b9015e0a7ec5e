//! Prometheus metrics (OpenMetrics text, which Prometheus scrapes natively).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `mca_action_calls_total` | `action`, `outcome` | executions by outcome: `ok`, `on_status`, `fallback`, `stale`, `invalid_input`, `error` |
//! | `mca_action_duration_seconds` | `action` | histogram of the time to answer |
//! | `mca_upstream_duration_seconds` | `action` | histogram of one upstream attempt |
//! | `mca_upstream_attempts_total` | `action`, `result` | upstream attempts by result: status class (`2xx`...) or failure reason |
//! | `mca_upstream_retries_total` | `action` | retries started |
//! | `mca_cache_hits_total` / `mca_cache_misses_total` | `action` | cache lookups |
//! | `mca_breaker_state` | `host` | circuit breaker of an upstream host: 0 closed, 1 open, 2 half-open |
//! | `mca_breaker_transitions_total` | `host`, `state` | breaker changes, by the state entered |
//! | `mca_breaker_rejected_total` | `host` | calls answered with their fallback (`circuit_open`) without a request |
//! | `mca_retry_budget_exhausted_total` | `host` | retries not made because the host's retry budget was empty |
//! | `mca_shed_total` | `route` | requests refused with `503` because too many were in flight |

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    action: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    action: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabel {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostStateLabels {
    host: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

type HistogramFamily = Family<ActionLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Outcome labels of `mca_action_calls_total`, in the order of [`ActionHandles::calls`].
const OUTCOMES: [&str; 6] = [
    "ok",
    "on_status",
    "fallback",
    "stale",
    "invalid_input",
    "error",
];

/// One action's series, taken from the families the first time each is used (so `/metrics`
/// shows exactly the series that were touched) and then updated without building a label,
/// hashing it or locking the family on every call.
#[derive(Default)]
struct ActionHandles {
    calls: [OnceLock<Counter>; OUTCOMES.len()],
    duration: OnceLock<Histogram>,
    upstream_duration: OnceLock<Histogram>,
    /// Attempts answered with a status of class `Nxx`, by N (0 to 5).
    attempts_by_class: [OnceLock<Counter>; 6],
    cache_hits: OnceLock<Counter>,
    cache_misses: OnceLock<Counter>,
}

pub(crate) struct Metrics {
    /// Handles of the actions named at construction; other names use the families directly.
    actions: crate::NameMap<ActionHandles>,
    registry: Registry,
    calls: Family<OutcomeLabels, Counter>,
    duration: HistogramFamily,
    upstream_duration: HistogramFamily,
    attempts: Family<ResultLabels, Counter>,
    retries: Family<ActionLabel, Counter>,
    cache_hits: Family<ActionLabel, Counter>,
    cache_misses: Family<ActionLabel, Counter>,
    breaker_state: Family<HostLabel, Gauge>,
    breaker_transitions: Family<HostStateLabels, Counter>,
    breaker_rejected: Family<HostLabel, Counter>,
    budget_exhausted: Family<HostLabel, Counter>,
    shed: Family<RouteLabel, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mca");
        let calls = Family::<OutcomeLabels, Counter>::default();
        let duration = HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        let upstream_duration =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        let attempts = Family::<ResultLabels, Counter>::default();
        let retries = Family::<ActionLabel, Counter>::default();
        let cache_hits = Family::<ActionLabel, Counter>::default();
        let cache_misses = Family::<ActionLabel, Counter>::default();
        registry.register(
            "action_calls",
            "Action executions by outcome",
            calls.clone(),
        );
        registry.register(
            "action_duration_seconds",
            "Time to answer an action",
            duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Duration of one upstream attempt",
            upstream_duration.clone(),
        );
        registry.register(
            "upstream_attempts",
            "Upstream attempts by result",
            attempts.clone(),
        );
        registry.register("upstream_retries", "Upstream retries", retries.clone());
        registry.register("cache_hits", "Cache hits", cache_hits.clone());
        registry.register("cache_misses", "Cache misses", cache_misses.clone());
        let breaker_state = Family::<HostLabel, Gauge>::default();
        let breaker_transitions = Family::<HostStateLabels, Counter>::default();
        let breaker_rejected = Family::<HostLabel, Counter>::default();
        let budget_exhausted = Family::<HostLabel, Counter>::default();
        let shed = Family::<RouteLabel, Counter>::default();
        registry.register(
            "breaker_state",
            "Circuit breaker per upstream host: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        registry.register(
            "breaker_transitions",
            "Circuit breaker changes by the state entered",
            breaker_transitions.clone(),
        );
        registry.register(
            "breaker_rejected",
            "Calls that fell back at once because the host's circuit was open",
            breaker_rejected.clone(),
        );
        registry.register(
            "retry_budget_exhausted",
            "Retries not made because the host's retry budget was empty",
            budget_exhausted.clone(),
        );
        registry.register(
            "shed",
            "Requests refused with 503 because too many were in flight",
            shed.clone(),
        );
        Metrics {
            actions: crate::NameMap::default(),
            registry,
            calls,
            duration,
            upstream_duration,
            attempts,
            retries,
            cache_hits,
            cache_misses,
            breaker_state,
            breaker_transitions,
            breaker_rejected,
            budget_exhausted,
            shed,
        }
    }

    /// Metrics with cached series handles for these actions.
    pub(crate) fn with_actions<'a>(names: impl IntoIterator<Item = &'a str>) -> Metrics {
        Metrics {
            actions: names
                .into_iter()
                .map(|n| (n.to_string(), ActionHandles::default()))
                .collect(),
            ..Metrics::new()
        }
    }

    pub(crate) fn breaker_state(&self, host: &str, state: &'static str) {
        let value = match state {
            "open" => 1,
            "half_open" => 2,
            _ => 0,
        };
        let host = host.to_string();
        self.breaker_state
            .get_or_create(&HostLabel { host: host.clone() })
            .set(value);
        self.breaker_transitions
            .get_or_create(&HostStateLabels { host, state })
            .inc();
    }

    pub(crate) fn breaker_rejected(&self, host: &str) {
        self.breaker_rejected
            .get_or_create(&HostLabel {
                host: host.to_string(),
            })
            .inc();
    }

    pub(crate) fn retry_budget_exhausted(&self, host: &str) {
        self.budget_exhausted
            .get_or_create(&HostLabel {
                host: host.to_string(),
            })
            .inc();
    }

    pub(crate) fn shed(&self, route: &'static str) {
        self.shed.get_or_create(&RouteLabel { route }).inc();
    }

    fn label(action: &str) -> ActionLabel {
        ActionLabel {
            action: action.to_string(),
        }
    }

    pub(crate) fn call(&self, action: &str, outcome: &'static str, took: Duration) {
        let counter = || {
            self.calls
                .get_or_create(&OutcomeLabels {
                    action: action.to_string(),
                    outcome,
                })
                .clone()
        };
        let duration = || self.duration.get_or_create(&Self::label(action)).clone();
        match self.actions.get(action) {
            Some(h) => {
                match OUTCOMES.iter().position(|o| *o == outcome) {
                    Some(i) => h.calls[i].get_or_init(counter).inc(),
                    None => counter().inc(),
                };
                h.duration.get_or_init(duration).observe(took.as_secs_f64());
            }
            None => {
                counter().inc();
                duration().observe(took.as_secs_f64());
            }
        }
    }

    /// One upstream attempt: `status` when a response arrived, else the failure's reason.
    pub(crate) fn attempt(&self, action: &str, result: Result<u16, &str>, took: Duration) {
        let counter = || {
            let result = match result {
                Ok(status) => format!("{}xx", status / 100),
                Err(reason) => reason.to_string(),
            };
            self.attempts
                .get_or_create(&ResultLabels {
                    action: action.to_string(),
                    result,
                })
                .clone()
        };
        let duration = || {
            self.upstream_duration
                .get_or_create(&Self::label(action))
                .clone()
        };
        match self.actions.get(action) {
            Some(h) => {
                match result {
                    Ok(status) if status < 600 => h.attempts_by_class[status as usize / 100]
                        .get_or_init(counter)
                        .inc(),
                    _ => counter().inc(),
                };
                h.upstream_duration
                    .get_or_init(duration)
                    .observe(took.as_secs_f64());
            }
            None => {
                counter().inc();
                duration().observe(took.as_secs_f64());
            }
        }
    }

    pub(crate) fn retry(&self, action: &str) {
        self.retries.get_or_create(&Self::label(action)).inc();
    }

    pub(crate) fn cache(&self, action: &str, hit: bool) {
        let family = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        let counter = || family.get_or_create(&Self::label(action)).clone();
        match self.actions.get(action) {
            Some(h) if hit => h.cache_hits.get_or_init(counter).inc(),
            Some(h) => h.cache_misses.get_or_init(counter).inc(),
            None => counter().inc(),
        };
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Content type of [`Metrics::encode`].
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
