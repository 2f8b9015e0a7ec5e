//! Actions with steps, deferred writes and follow-ups.
//!
//! - Live steps run as a small dependency graph inside the action's deadline: every step whose
//!   `after` steps have finished starts at once, so independent steps run concurrently. A step
//!   whose `when` does not hold is skipped (its values are null). A failed step answers its own
//!   `fallback` values, or fails the action.
//! - Deferred steps are recorded in the store (one transaction, synced to disk) before the
//!   action answers, with everything needed to render them again except secrets, which are read
//!   from the environment at delivery. Their idempotency key is rendered once, when recorded, so
//!   every delivery carries the same key.
//! - Follow-ups are recorded when a call ends and run in the background like any call.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use mca_compiler::ir::{self, Reason};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::{Miss, MissKind, Runtime};
use crate::cache::Entry;
use crate::outbox::{Delivery, JobKind, JobRecord, NewJob};
use crate::prepare::Prepared;
use crate::render::{Scope, StepValues};
use crate::response::{ActionResponse, CallContext, Outputs, Status};

/// Failure of one live step.
struct StepFailure {
    reason: Reason,
    message: String,
    status: Option<u16>,
}

impl Runtime {
    /// Runs the live steps and computes the action's outputs from their values.
    pub(super) async fn run_steps(
        &self,
        prep: &Prepared,
        inputs: &Map<String, Value>,
        call: &CallContext,
        deadline: Instant,
        attempts: &AtomicU32,
    ) -> Result<Entry, Miss> {
        let steps = &prep.action.steps;
        let mut values: StepValues = HashMap::new();
        let mut waiting: Vec<usize> = (0..steps.len())
            .filter(|&i| steps[i].deferred.is_none())
            .collect();
        let mut running = FuturesUnordered::new();
        loop {
            // Start every step whose inputs are known; skip those whose condition fails.
            let mut progressed = true;
            while progressed {
                progressed = false;
                let mut i = 0;
                while i < waiting.len() {
                    let step = &steps[waiting[i]];
                    if !step.after.iter().all(|a| values.contains_key(a)) {
                        i += 1;
                        continue;
                    }
                    let at = waiting.remove(i);
                    let holds = step.when.as_ref().is_none_or(|w| {
                        Scope::public(inputs, call, &prep.env, None, Some(&values)).holds(w)
                    });
                    if holds {
                        let snapshot = values.clone();
                        running.push(async move {
                            let r = self
                                .run_step(prep, at, inputs, call, &snapshot, deadline, attempts)
                                .await;
                            (at, r)
                        });
                    } else {
                        tracing::debug!(step = %step.name, "condition does not hold; step skipped");
                        let nulls = step
                            .outputs
                            .iter()
                            .map(|o| (o.name.clone(), Value::Null))
                            .collect();
                        values.insert(step.name.clone(), nulls);
                        progressed = true;
                    }
                }
            }
            let Some((at, result)) = running.next().await else {
                break;
            };
            match result {
                Ok(map) => {
                    values.insert(steps[at].name.clone(), map);
                }
                Err(f) => {
                    return Err(Miss {
                        kind: MissKind::Failed {
                            reason: f.reason,
                            message: format!("step `{}`: {}", steps[at].name, f.message),
                        },
                        attempts: attempts.load(std::sync::atomic::Ordering::Relaxed),
                        status: f.status,
                    });
                }
            }
        }
        // The action's outputs, computed from the steps' values.
        let scope = Scope::public(inputs, call, &prep.env, None, Some(&values));
        let mut output = Map::new();
        for o in &prep.action.outputs {
            let mut value = match &o.source {
                ir::Source::Value { term, default } => match (scope.eval(term), default) {
                    (Value::Null, Some(d)) => d.clone(),
                    (v, _) => v,
                },
                ir::Source::Path(_) => Value::Null,
            };
            if o.when.as_ref().is_some_and(|w| !scope.holds(w)) {
                value = Value::Null;
            }
            if let Err(m) = o.ty.check(&value) {
                return Err(Miss {
                    kind: MissKind::Failed {
                        reason: Reason::Mapping,
                        message: format!("output `{}`: {m}", o.name),
                    },
                    attempts: attempts.load(std::sync::atomic::Ordering::Relaxed),
                    status: None,
                });
            }
            output.insert(o.name.clone(), value);
        }
        let mut entry = Entry::new(output, None);
        entry.steps = Some(Box::new(values));
        Ok(entry)
    }

    /// Runs one live step: its values, from the response, an `on STATUS` block or its
    /// `fallback`.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        prep: &Prepared,
        at: usize,
        inputs: &Map<String, Value>,
        call: &CallContext,
        steps: &StepValues,
        deadline: Instant,
        attempts: &AtomicU32,
    ) -> Result<Map<String, Value>, StepFailure> {
        let step = &prep.action.steps[at];
        let pstep = &prep.steps[at];
        let scope = Scope {
            inputs,
            call,
            env: &prep.env,
            secrets: &prep.secrets,
            outputs: None,
            steps: Some(steps),
        };
        let step_deadline =
            (Instant::now() + Duration::from_millis(step.request.timeout_ms)).min(deadline);
        let exchange = async {
            let build = || self.build(&step.request, &pstep.request, &scope, Some(&step.name));
            self.send(
                &prep.action.name,
                &step.request,
                build,
                step_deadline,
                true, // cut by the timeout below
                attempts,
            )
            .await
        };
        let received = match tokio::time::timeout_at(step_deadline, exchange).await {
            Ok(r) => r,
            Err(_) => Err(crate::outbound::Failure::new(
                Reason::Timeout,
                format!(
                    "no answer within the timeout of {} ms",
                    step.request.timeout_ms
                ),
            )),
        };
        let outcome = |o: &ir::Outcome| -> Map<String, Value> {
            let mut map: Map<String, Value> = step
                .outputs
                .iter()
                .map(|o| (o.name.clone(), Value::Null))
                .collect();
            for (k, v) in &o.values {
                map.insert(k.clone(), v.clone());
            }
            map
        };
        let failure = match received {
            Err(f) => StepFailure {
                reason: f.reason,
                message: f.message,
                status: None,
            },
            Ok(r) => {
                if let Some(h) = step
                    .on_status
                    .iter()
                    .find(|h| h.statuses.iter().any(|s| s.contains(r.status)))
                {
                    return Ok(outcome(&h.outcome));
                }
                match r.body {
                    None => StepFailure {
                        reason: Reason::UpstreamStatus,
                        message: format!("the upstream answered {}", r.status),
                        status: Some(r.status),
                    },
                    Some(body) => match pstep.mapping.parse(&body) {
                        Err(e) => StepFailure {
                            reason: Reason::InvalidResponse,
                            message: format!("the body is not JSON: {e}"),
                            status: Some(r.status),
                        },
                        Ok(json) => match pstep.mapping.map(&json) {
                            Ok(map) => return Ok(map),
                            Err(message) => StepFailure {
                                reason: Reason::Mapping,
                                message,
                                status: Some(r.status),
                            },
                        },
                    },
                }
            }
        };
        match &step.fallback {
            Some(f) => {
                tracing::warn!(action = %prep.action.name, step = %step.name, reason = failure.reason.as_str(), message = %self.redact(&failure.message), "step failed; using its fallback values");
                Ok(outcome(f))
            }
            None => Err(failure),
        }
    }

    /// The text to speak: the first `say` whose condition holds.
    pub(super) fn say(&self, prep: &Prepared, scope: &Scope<'_>) -> Option<String> {
        let case = prep
            .action
            .say
            .iter()
            .find(|s| s.when.as_ref().is_none_or(|w| scope.holds(w)))?;
        scope.template_strict(&case.text)
    }

    /// Records the deferred steps whose conditions hold, durably, before the answer is sent.
    /// In test mode they are delivered at once instead (one attempt each).
    pub(super) async fn defer(
        &self,
        prep: &Prepared,
        inputs: &Map<String, Value>,
        call: &CallContext,
        output: &Outputs,
        steps: Option<&StepValues>,
    ) -> Result<(), String> {
        let empty = HashMap::new();
        let steps = steps.unwrap_or(&empty);
        let scope = Scope {
            inputs,
            call,
            env: &prep.env,
            secrets: &prep.secrets,
            outputs: Some(output),
            steps: Some(steps),
        };
        let mut jobs = Vec::new();
        for step in &prep.action.steps {
            let Some(deferred) = &step.deferred else {
                continue;
            };
            if step.when.as_ref().is_some_and(|w| !scope.holds(w)) {
                continue;
            }
            let key = step
                .request
                .idempotency_key
                .as_ref()
                .and_then(|e| scope.expr_strict(e))
                .and_then(|v| crate::render::text(&v, ","));
            jobs.push(NewJob {
                kind: JobKind::Step,
                action: prep.action.name.clone(),
                step: Some(step.name.clone()),
                call_id: call.id.clone(),
                idempotency_key: key,
                payload: json!({
                    "inputs": inputs,
                    "call": { "id": call.id, "from": call.from },
                    "outputs": output,
                    "steps": steps,
                }),
                give_up_after: Duration::from_millis(deferred.within_ms),
            });
        }
        if jobs.is_empty() {
            return Ok(());
        }
        if self.config.deliver_deferred_inline {
            for job in jobs {
                let record = JobRecord {
                    id: 0,
                    kind: job.kind,
                    action: job.action,
                    step: job.step,
                    call_id: job.call_id,
                    idempotency_key: job.idempotency_key.unwrap_or_default(),
                    payload: job.payload,
                    state: crate::outbox::JobState::Pending,
                    attempts: 0,
                    created_at: 0,
                    give_up_at: 0,
                    next_attempt_at: 0,
                    updated_at: 0,
                    last_error: None,
                };
                let outcome = self.deliver_step(&record).await;
                tracing::debug!(?outcome, "deferred step delivered inline (test mode)");
            }
            return Ok(());
        }
        let Some(outbox) = &self.outbox else {
            return Err(
                "no store is configured for deferred writes (see `mca serve --store`)".into(),
            );
        };
        outbox
            .enqueue(jobs)
            .await
            .map(|_| ())
            .map_err(|e| format!("the deferred write could not be recorded: {e}"))
    }

    /// Records the follow-ups of a call that ended: every action with `follow_up` whose
    /// condition holds, with the inputs `details` gives by name.
    pub(super) async fn follow_ups(&self, call: &CallContext, details: &Map<String, Value>) {
        let mut jobs = Vec::new();
        for name in &self.order {
            let Some(prep) = self.actions.get(name) else {
                continue;
            };
            let Some(f) = &prep.action.follow_up else {
                continue;
            };
            let given: Map<String, Value> = prep
                .action
                .inputs
                .iter()
                .filter_map(|i| Some((i.name.clone(), details.get(&i.name)?.clone())))
                .collect();
            // Defaults apply before the condition is decided (it sees the inputs as the run
            // will); invalid inputs are judged and recorded as given, and their job fails
            // visibly at delivery (`mca writes`).
            let inputs =
                crate::input::validate(&prep.action, Value::Object(given.clone())).unwrap_or(given);
            let scope = Scope::public(&inputs, call, &prep.env, None, None);
            if f.when.as_ref().is_some_and(|w| !scope.holds(w)) {
                continue;
            }
            jobs.push(NewJob {
                kind: JobKind::FollowUp,
                action: name.clone(),
                step: None,
                call_id: call.id.clone(),
                idempotency_key: call.id.as_ref().map(|id| format!("{id}-{name}")),
                payload: json!({
                    "inputs": inputs,
                    "call": { "id": call.id, "from": call.from },
                }),
                give_up_after: Duration::from_millis(ir::DEFAULT_DEFERRED_WITHIN_MS),
            });
        }
        if jobs.is_empty() {
            return;
        }
        match &self.outbox {
            Some(outbox) => {
                if let Err(e) = outbox.enqueue(jobs).await {
                    tracing::error!(error = %e, "the follow-ups of a call could not be recorded");
                }
            }
            None => tracing::error!(
                "the project has follow-ups but no store is configured (see `mca serve --store`)"
            ),
        }
    }

    /// Delivers one recorded job: a deferred step's request, or a follow-up action.
    pub(crate) async fn deliver(&self, job: &JobRecord) -> Delivery {
        if !self.actions.contains_key(&job.action) {
            return Delivery::Failed {
                reason: format!("the project has no action `{}` any more", job.action),
            };
        };
        let (call, inputs) = recorded_call(job);
        match job.kind {
            JobKind::FollowUp => {
                match self.execute(&job.action, Value::Object(inputs), call).await {
                    ActionResponse::Answer(a) if a.status == Status::Ok => Delivery::Delivered,
                    // The API refused the request itself: running it again would not help.
                    ActionResponse::Answer(a) if refused(a.detail.upstream_status) => {
                        Delivery::Failed {
                            reason: format!(
                                "the upstream refused it with {}",
                                a.detail.upstream_status.unwrap_or_default()
                            ),
                        }
                    }
                    ActionResponse::Error(e) if refused(e.upstream_status) => {
                        Delivery::Failed { reason: e.message }
                    }
                    ActionResponse::Answer(a) => Delivery::Retry {
                        reason: format!(
                            "answered its fallback ({})",
                            a.reason.map_or("fallback", |r| r.as_str())
                        ),
                        after: None,
                    },
                    ActionResponse::Error(e)
                        if e.reason == Some(Reason::InvalidInput) || e.code == "invalid_input" =>
                    {
                        Delivery::Failed {
                            reason: format!("invalid input: {}", e.message),
                        }
                    }
                    ActionResponse::Error(e) => Delivery::Retry {
                        reason: e.message,
                        after: None,
                    },
                }
            }
            JobKind::Step => self.deliver_step(job).await,
        }
    }

    /// Delivers a recorded deferred step: its request, rendered again from the recorded values
    /// (secrets read now), with the recorded idempotency key.
    async fn deliver_step(&self, job: &JobRecord) -> Delivery {
        let Some(prep) = self.actions.get(&job.action).cloned() else {
            return Delivery::Failed {
                reason: format!("the project has no action `{}` any more", job.action),
            };
        };
        let field = |k: &str| job.payload.get(k).cloned().unwrap_or(Value::Null);
        let (call, inputs) = recorded_call(job);
        let step_name = job.step.as_deref().unwrap_or_default();
        let Some(at) = prep.action.steps.iter().position(|s| s.name == step_name) else {
            return Delivery::Failed {
                reason: format!("action `{}` has no step `{step_name}` any more", job.action),
            };
        };
        let step = &prep.action.steps[at];
        let output = Outputs::from(field("outputs").as_object().cloned().unwrap_or_default());
        let steps: StepValues = serde_json::from_value(field("steps")).unwrap_or_default();
        let scope = Scope {
            inputs: &inputs,
            call: &call,
            env: &prep.env,
            secrets: &prep.secrets,
            outputs: Some(&output),
            steps: Some(&steps),
        };
        let build = || {
            let mut built = self.build(
                &step.request,
                &prep.steps[at].request,
                &scope,
                Some(&step.name),
            )?;
            // The key recorded with the write, whatever the values say now.
            if !job.idempotency_key.is_empty() {
                if let Ok(v) = reqwest::header::HeaderValue::from_str(&job.idempotency_key) {
                    built.request.headers_mut().insert("idempotency-key", v);
                    built.retryable = true;
                }
            }
            Ok::<_, crate::outbound::Failure>(built)
        };
        // A request that cannot be rendered fails as `InvalidRequest` or `Blocked`: failed
        // for good (below).
        let attempts = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_millis(step.request.timeout_ms);
        match self
            .send(
                &prep.action.name,
                &step.request,
                build,
                deadline,
                false,
                &attempts,
            )
            .await
        {
            Ok(r) if (200..300).contains(&r.status) => Delivery::Delivered,
            Ok(r) if matches!(r.status, 408 | 425 | 429) || r.status >= 500 => Delivery::Retry {
                reason: format!("the upstream answered {}", r.status),
                after: r.retry_after,
            },
            Ok(r) => Delivery::Failed {
                reason: format!("the upstream refused the write with {}", r.status),
            },
            Err(f) if matches!(f.reason, Reason::InvalidRequest | Reason::Blocked) => {
                Delivery::Failed {
                    reason: self.redact(&f.message),
                }
            }
            Err(f) => Delivery::Retry {
                reason: self.redact(&f.message),
                after: None,
            },
        }
    }
}

/// A 4xx other than 408, 425 and 429: the API refused the request, a repeat would be refused
/// too.
fn refused(status: Option<u16>) -> bool {
    status.is_some_and(|s| (400..500).contains(&s) && !matches!(s, 408 | 425 | 429))
}

/// The call and inputs recorded with a job.
fn recorded_call(job: &JobRecord) -> (CallContext, Map<String, Value>) {
    let call = job.payload.get("call");
    let text = |k: &str| {
        call.and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let inputs = job
        .payload
        .get("inputs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    (
        CallContext {
            id: text("id"),
            from: text("from"),
        },
        inputs,
    )
}

/// Delivers the store's jobs through a runtime (held weakly: the worker never keeps a
/// stopped runtime alive).
pub(crate) struct RuntimeDeliver(pub std::sync::Weak<Runtime>);

impl crate::outbox::Deliver for RuntimeDeliver {
    fn deliver(
        &self,
        job: &JobRecord,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Delivery> + Send + '_>> {
        let runtime = self.0.upgrade();
        let job = job.clone();
        Box::pin(async move {
            match runtime {
                Some(rt) => rt.deliver(&job).await,
                None => Delivery::Retry {
                    reason: "the runtime is stopping".into(),
                    after: None,
                },
            }
        })
    }
}

impl Runtime {
    /// Starts delivering the store's jobs in the background (when there is a store).
    pub fn start_worker(self: &Arc<Self>) -> Option<crate::outbox::Worker> {
        let outbox = self.outbox.as_ref()?;
        Some(outbox.start_worker(Arc::new(RuntimeDeliver(Arc::downgrade(self)))))
    }

    /// The call has ended: drops its cache entries and tokens, and records its follow-ups.
    /// `details` gives follow-up inputs by name (summary, transcript, ...).
    pub async fn end_call_with(&self, call: &CallContext, details: &Map<String, Value>) {
        if let Some(id) = &call.id {
            self.end_call(id);
        }
        self.follow_ups(call, details).await;
    }
}
