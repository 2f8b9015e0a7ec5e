//! [`Runtime`]: the one execution path of an action.
//!
//! 1. Validate the inputs (400/422, nothing sent).
//! 2. The deadline is `timeout` from the moment the call arrived; the answer is computed when
//!    it passes, whatever the upstream is doing.
//! 3. Cached actions answer from the cache when they can; concurrent misses share one upstream
//!    call.
//! 4. The request is rendered and sent; retries follow the rules in [`Runtime::send`].
//! 5. The outcome: an `on STATUS` block that matches the final status; a 2xx mapped to outputs;
//!    otherwise (or when mapping fails) a stale cache entry if `stale_if_error` allows, else the
//!    `fallback` with its reason. Without a `fallback`, a failure is an error answer (502).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mca_compiler::ir::{self, Auth, Body, Outcome, Reason};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use serde_json::{Map, Value};
use tokio::time::{timeout_at, Instant};
use tracing::Instrument;

use crate::breaker::Breakers;
use crate::cache::{Caches, Entry};
use crate::config::Config;
use crate::input;
use crate::metrics::Metrics;
use crate::oauth::{TokenCache, TokenKey};
use crate::outbound::{Failure, Outbound, Received};
use crate::prepare::{prepare, Prepared, StartupError, StartupProblem};
use crate::redact::Redactor;
use crate::render::{self, Scope, StepValues};
use crate::response::{ActionResponse, Answer, CallContext, Detail, ErrorBody, Outputs, Status};

mod steps;

/// Statuses after which an attempt is retried.
const RETRY_STATUSES: [u16; 4] = [429, 502, 503, 504];
/// Longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A retry is only started when at least this much time is left after its backoff.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(20);

/// The compiled actions, ready to execute. Cheap to share (`Arc<Runtime>`).
pub struct Runtime {
    actions: crate::NameMap<Arc<Prepared>>,
    /// Action names in IR order.
    order: Vec<String>,
    outbound: Outbound,
    tokens: TokenCache,
    caches: Caches,
    pub(crate) metrics: Metrics,
    redactor: Redactor,
    breakers: Breakers,
    config: Config,
    /// The durable store of deferred writes and follow-ups (when the project has any).
    outbox: Option<crate::outbox::Outbox>,
}

/// Why an exchange did not produce outputs to cache (shared by coalesced callers).
#[derive(Debug)]
pub(crate) struct Miss {
    kind: MissKind,
    attempts: u32,
    status: Option<u16>,
}

#[derive(Debug)]
enum MissKind {
    /// Index of the matching `on STATUS` block.
    OnStatus(usize),
    Failed {
        reason: Reason,
        message: String,
    },
}

/// Fresh outputs: whether they came without an upstream request of this call's own, and how.
struct Fresh {
    entry: Arc<Entry>,
    cached: bool,
    detail: Detail,
}

/// A rendered request, ready to be cloned for each attempt.
struct Built {
    request: reqwest::Request,
    /// The upstream host (`host:port`, the original one for a routed request): the key of its
    /// circuit breaker and retry budget.
    host_key: String,
    retryable: bool,
    oauth: Option<(TokenKey, String)>,
}

impl Runtime {
    /// Prepares every action: JSONPaths parsed, `env`/`secret` values read (from
    /// [`Config::env`] or the process environment), URLs and header names checked. Every
    /// problem is reported at once.
    pub fn new(project: ir::Project, config: Config) -> Result<Runtime, StartupError> {
        let prepared = prepare(project, &config)?;
        let outbound = Outbound::new(&config).map_err(|message| StartupError {
            problems: vec![StartupProblem::Client { message }],
        })?;
        let redactor = Redactor::new(
            prepared
                .iter()
                .flat_map(|p| p.secrets.values().cloned())
                .chain(config.token.clone()),
        );
        let caches = Caches::new(
            prepared
                .iter()
                .filter_map(|p| Some((p.action.name.as_str(), p.action.cache.as_ref()?))),
            config.cache_capacity,
        );
        let order: Vec<String> = prepared.iter().map(|p| p.action.name.clone()).collect();
        let metrics = Metrics::with_actions(order.iter().map(String::as_str));
        let needs_store = prepared.iter().any(|p| {
            p.action.follow_up.is_some() || p.action.steps.iter().any(|s| s.deferred.is_some())
        });
        let store = config
            .store
            .clone()
            .unwrap_or_else(crate::outbox::default_store_path);
        // Test mode delivers deferred steps inline and records nothing.
        let needs_store = needs_store && !config.deliver_deferred_inline;
        let outbox = match (&store, needs_store) {
            (path, true) => Some(crate::outbox::Outbox::open(path).map_err(|e| StartupError {
                problems: vec![StartupProblem::Client {
                    message: format!("cannot open the store {}: {e}", path.display()),
                }],
            })?),
            _ => None,
        };
        Ok(Runtime {
            actions: prepared
                .into_iter()
                .map(|p| (p.action.name.clone(), Arc::new(p)))
                .collect(),
            order,
            outbound,
            tokens: TokenCache::default(),
            caches,
            metrics,
            redactor,
            breakers: Breakers::new(config.breaker.clone()),
            config,
            outbox,
        })
    }

    /// The store of deferred writes, when the project has deferred steps or follow-ups and a
    /// store is configured.
    pub fn outbox(&self) -> Option<&crate::outbox::Outbox> {
        self.outbox.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Gives the calling thread its own upstream connection pool: calls run on this thread
    /// from now on send their requests over connections that only this thread drives. For a
    /// thread that runs a single-threaded async runtime ([`Config::worker_threads`] does this
    /// for each of its threads). Fails only if the client cannot be built, which
    /// [`Runtime::new`] would have reported already.
    pub fn attach_thread(&self) -> Result<(), String> {
        self.outbound.attach_thread()
    }

    /// The actions, in the order of the IR.
    pub fn actions(&self) -> impl Iterator<Item = &ir::Action> {
        self.order
            .iter()
            .filter_map(|n| self.actions.get(n).map(|p| &p.action))
    }

    pub fn action(&self, name: &str) -> Option<&ir::Action> {
        self.actions.get(name).map(|p| &p.action)
    }

    /// The call has ended: drops every `scope call` cache entry of it.
    pub fn end_call(&self, call_id: &str) {
        tracing::debug!(call_id, "call ended; dropping its cache entries and tokens");
        self.caches.end_call(call_id);
        self.tokens.end_call(call_id);
    }

    /// Metrics in OpenMetrics text format (served by `GET /metrics`).
    pub fn metrics_text(&self) -> String {
        let text = self.metrics.encode();
        match &self.outbox {
            Some(outbox) => outbox.append_metrics(&text),
            None => text,
        }
    }

    /// Replaces every secret value in a text (for messages built outside the runtime).
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// Executes one action. Always answers, by the action's deadline plus a few milliseconds.
    pub async fn execute(&self, action: &str, inputs: Value, call: CallContext) -> ActionResponse {
        self.execute_since(action, inputs, call, std::time::Instant::now())
            .await
    }

    /// [`Runtime::execute`] for a call that arrived at `arrived`: the deadline counts from then
    /// (the server passes the moment the request came in, so reading it counts too).
    pub async fn execute_since(
        &self,
        action: &str,
        inputs: Value,
        call: CallContext,
        arrived: std::time::Instant,
    ) -> ActionResponse {
        let start = Instant::from_std(arrived);
        let Some(prep) = self.actions.get(action) else {
            return ActionResponse::Error(ErrorBody::new(
                404,
                "unknown_action",
                format!("there is no action named `{action}`"),
            ));
        };
        // Debug level: at the default level (info) a successful call logs nothing and pays
        // for no span; warnings name the action themselves.
        let span = tracing::debug_span!(
            "action",
            action = %prep.action.name,
            call_id = call.id.as_deref().unwrap_or("")
        );
        self.run(prep, inputs, call, start).instrument(span).await
    }

    async fn run(
        &self,
        prep: &Prepared,
        inputs: Value,
        call: CallContext,
        start: Instant,
    ) -> ActionResponse {
        let action = &prep.action;
        let inputs = match input::validate(action, inputs) {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(outcome = "invalid_input", field = e.field.as_deref().unwrap_or(""), message = %e.message, "refused");
                self.metrics
                    .call(&action.name, "invalid_input", start.elapsed());
                return ActionResponse::Error(e);
            }
        };
        let deadline = start + Duration::from_millis(action.timeout_ms);
        let mut step_values: Option<Box<StepValues>> = None;
        let (answer, outcome) = match self.obtain(prep, &inputs, &call, deadline).await {
            Ok(fresh) => {
                step_values = fresh.entry.steps.clone();
                if !fresh.cached {
                    for target in &action.invalidates {
                        self.caches.invalidate_action(target);
                    }
                }
                let answer = self.mapped(prep, &inputs, &call, &fresh.entry, fresh.detail);
                (
                    Answer {
                        cached: fresh.cached,
                        ..answer
                    },
                    "ok",
                )
            }
            Err(miss) => {
                let detail = Detail {
                    attempts: miss.attempts,
                    upstream_status: miss.status,
                    ..Detail::default()
                };
                match &miss.kind {
                    MissKind::OnStatus(i) => {
                        let outcome = &action.on_status[*i].outcome;
                        let (output, say) = self.outcome(prep, outcome, &inputs, &call);
                        let answer = Answer {
                            action: action.name.clone(),
                            status: Status::Ok,
                            output,
                            say,
                            cached: false,
                            duration_ms: 0,
                            reason: None,
                            stale: false,
                            detail: Detail {
                                on_status: Some(*i),
                                ..detail
                            },
                        };
                        (answer, "on_status")
                    }
                    MissKind::Failed { reason, message } => {
                        let message = self.redactor.redact(message);
                        match self.stale(prep, &inputs, &call).await {
                            Some(entry) => {
                                step_values = entry.steps.clone();
                                tracing::warn!(action = %action.name, call_id = call.id.as_deref().unwrap_or(""), reason = reason.as_str(), %message, "upstream failed; answering with a stale cache entry");
                                let detail = Detail {
                                    message: Some(message),
                                    ..detail
                                };
                                let answer = self.mapped(prep, &inputs, &call, &entry, detail);
                                (
                                    Answer {
                                        cached: true,
                                        stale: true,
                                        ..answer
                                    },
                                    "stale",
                                )
                            }
                            None => {
                                return self
                                    .failed(prep, &inputs, &call, start, *reason, message, detail)
                            }
                        }
                    }
                }
            }
        };
        if prep.action.steps.iter().any(|s| s.deferred.is_some()) {
            // Boxed: only actions with deferred steps carry this future.
            let defer = self.defer(prep, &inputs, &call, &answer.output, step_values.as_deref());
            if let Err(message) = Box::pin(defer).await {
                let detail = Detail {
                    attempts: answer.detail.attempts,
                    upstream_status: answer.detail.upstream_status,
                    ..Detail::default()
                };
                return self.failed(prep, &inputs, &call, start, Reason::Store, message, detail);
            }
        }
        let took = start.elapsed();
        let answer = Answer {
            duration_ms: took.as_millis() as u64,
            ..answer
        };
        self.metrics.call(&action.name, outcome, took);
        tracing::debug!(
            outcome,
            cached = answer.cached,
            attempts = answer.detail.attempts,
            upstream_status = answer.detail.upstream_status,
            duration_ms = answer.duration_ms,
            "answered"
        );
        ActionResponse::Answer(answer)
    }

    /// Fresh outputs from the cache or the upstream, by the deadline. Cached actions coalesce
    /// concurrent misses of one key into one upstream exchange, whose result (success or not)
    /// every waiting caller gets.
    async fn obtain(
        &self,
        prep: &Prepared,
        inputs: &Map<String, Value>,
        call: &CallContext,
        deadline: Instant,
    ) -> Result<Fresh, Arc<Miss>> {
        let action = &prep.action;
        let attempts = AtomicU32::new(0);
        let timed_out = |attempts: &AtomicU32| {
            Arc::new(Miss {
                kind: MissKind::Failed {
                    reason: Reason::Timeout,
                    message: format!("no answer within the timeout of {} ms", action.timeout_ms),
                },
                attempts: attempts.load(Ordering::Relaxed),
                status: None,
            })
        };
        let own_detail = |entry: &Entry, attempts: &AtomicU32| Detail {
            attempts: attempts.load(Ordering::Relaxed),
            upstream_status: entry.status,
            ..Detail::default()
        };
        let cache = self.caches.get(&action.name);
        // A fetch is boxed where it starts: the wrappers below (the deadline, the cache's
        // single flight) then move a pointer, not the whole future (each move of a future
        // copies all of it, and these copies cost more than the allocation).
        let (Some(cache), Some(key)) = (cache, cache.and_then(|c| c.key(inputs, call))) else {
            let fetch = Box::pin(self.fetch(prep, inputs, call, deadline, &attempts));
            return match timeout_at(deadline, fetch).await {
                Ok(Ok(entry)) => Ok(Fresh {
                    detail: own_detail(&entry, &attempts),
                    entry: Arc::new(entry),
                    cached: false,
                }),
                Ok(Err(miss)) => Err(Arc::new(miss)),
                Err(_) => Err(timed_out(&attempts)),
            };
        };
        if let Some(entry) = cache.get(&key) {
            self.metrics.cache(&action.name, true);
            return Ok(Fresh {
                entry,
                cached: true,
                detail: Detail::default(),
            });
        }
        self.metrics.cache(&action.name, false);
        let fetch = Box::pin(self.fetch(prep, inputs, call, deadline, &attempts));
        let load = async { fetch.await.map(Arc::new) };
        match timeout_at(deadline, cache.get_or_load(&key, load)).await {
            Ok(Ok((entry, true))) => Ok(Fresh {
                detail: own_detail(&entry, &attempts),
                entry,
                cached: false,
            }),
            // Another caller's exchange produced it.
            Ok(Ok((entry, false))) => Ok(Fresh {
                entry,
                cached: true,
                detail: Detail::default(),
            }),
            Ok(Err(miss)) => Err(miss),
            Err(_) => Err(timed_out(&attempts)),
        }
    }

    /// The expired entry `stale_if_error` allows, if any.
    async fn stale(
        &self,
        prep: &Prepared,
        inputs: &Map<String, Value>,
        call: &CallContext,
    ) -> Option<Arc<Entry>> {
        let cache = self.caches.get(&prep.action.name)?;
        cache.get_stale(&cache.key(inputs, call)?)
    }

    /// The `ok` answer for mapped outputs, with `say` rendered.
    fn mapped(
        &self,
        prep: &Prepared,
        inputs: &Map<String, Value>,
        call: &CallContext,
        entry: &Entry,
        detail: Detail,
    ) -> Answer {
        let mut output = entry.output(&prep.output_names);
        let steps = entry.steps.as_deref();
        if prep.action.request.is_some() {
            // Guarded outputs of a single request (those of steps are computed with them).
            for o in &prep.action.outputs {
                if let Some(w) = &o.when {
                    let scope = Scope::public(inputs, call, &prep.env, None, steps);
                    if !scope.holds(w) {
                        output.set(&o.name, Value::Null);
                    }
                }
            }
        }
        let scope = Scope::public(inputs, call, &prep.env, Some(&output), steps);
        let say = self.say(prep, &scope);
        Answer {
            action: prep.action.name.clone(),
            status: Status::Ok,
            output,
            say,
            cached: false,
            duration_ms: 0,
            reason: None,
            stale: false,
            detail,
        }
    }

    /// The fallback answer (or a 502 error when there is no fallback).
    #[allow(clippy::too_many_arguments)]
    fn failed(
        &self,
        prep: &Prepared,
        inputs: &Map<String, Value>,
        call: &CallContext,
        start: Instant,
        reason: Reason,
        message: String,
        detail: Detail,
    ) -> ActionResponse {
        let action = &prep.action;
        let took = start.elapsed();
        tracing::warn!(
            action = %action.name,
            call_id = call.id.as_deref().unwrap_or(""),
            reason = reason.as_str(),
            %message,
            attempts = detail.attempts,
            upstream_status = detail.upstream_status,
            duration_ms = took.as_millis() as u64,
            "falling back"
        );
        let Some(fallback) = &action.fallback else {
            self.metrics.call(&action.name, "error", took);
            let mut e = ErrorBody::new(502, reason.as_str(), message);
            e.reason = Some(reason);
            e.upstream_status = detail.upstream_status;
            return ActionResponse::Error(e);
        };
        let (output, say) = self.outcome(prep, fallback, inputs, call);
        self.metrics.call(&action.name, "fallback", took);
        ActionResponse::Answer(Answer {
            action: action.name.clone(),
            status: Status::Fallback,
            output,
            say,
            cached: false,
            duration_ms: took.as_millis() as u64,
            reason: Some(reason),
            stale: false,
            detail: Detail {
                message: Some(message),
                ..detail
            },
        })
    }

    /// The outputs and speech of an `on STATUS` or `fallback` outcome. Unassigned outputs are
    /// null.
    fn outcome(
        &self,
        prep: &Prepared,
        outcome: &Outcome,
        inputs: &Map<String, Value>,
        call: &CallContext,
    ) -> (Outputs, Option<String>) {
        let mut values = vec![Value::Null; prep.output_names.len()];
        for (name, value) in &outcome.values {
            if let Some(i) = prep.output_names.iter().position(|n| n == name) {
                values[i] = value.clone();
            }
        }
        let output = Outputs::new(prep.output_names.clone(), values.into());
        let scope = Scope::public(inputs, call, &prep.env, Some(&output), None);
        let say = outcome.say.as_ref().and_then(|t| scope.template_strict(t));
        (output, say)
    }

    /// Renders the request, sends it (with retries), and interprets the response: an
    /// `on STATUS` block for the final status, else outputs mapped from a 2xx body.
    async fn fetch(
        &self,
        prep: &Prepared,
        inputs: &Map<String, Value>,
        call: &CallContext,
        deadline: Instant,
        attempts: &AtomicU32,
    ) -> Result<Entry, Miss> {
        let miss = |kind: MissKind, status: Option<u16>| Miss {
            kind,
            attempts: attempts.load(Ordering::Relaxed),
            status,
        };
        let failed = |reason: Reason, message: String| MissKind::Failed { reason, message };
        let (Some(req), Some(preq)) = (&prep.action.request, &prep.main) else {
            return self.run_steps(prep, inputs, call, deadline, attempts).await;
        };
        let scope = Scope {
            inputs,
            call,
            env: &prep.env,
            secrets: &prep.secrets,
            outputs: None,
            steps: None,
        };
        let build = || self.build(req, preq, &scope, None);
        // Bounded: `obtain` cuts every fetch at the deadline.
        let received = self
            .send(&prep.action.name, req, build, deadline, true, attempts)
            .await
            .map_err(|f| miss(failed(f.reason, f.message), None))?;
        let status = received.status;
        let action = &prep.action;
        if let Some(i) = action
            .on_status
            .iter()
            .position(|h| h.statuses.iter().any(|r| r.contains(status)))
        {
            return Err(miss(MissKind::OnStatus(i), Some(status)));
        }
        let Some(body) = received.body else {
            let message = format!("the upstream answered {status}");
            return Err(miss(failed(Reason::UpstreamStatus, message), Some(status)));
        };
        let json = prep.mapping.parse(&body).map_err(|e| {
            let message =
                format!("the upstream answered {status} with a body that is not JSON: {e}");
            miss(failed(Reason::InvalidResponse, message), Some(status))
        })?;
        let output = prep
            .mapping
            .values(&json)
            .map_err(|message| miss(failed(Reason::Mapping, message), Some(status)))?;
        Ok(Entry::of_values(output, Some(status)))
    }

    /// Renders the request: URL with encoded values, query, headers, auth, idempotency key,
    /// body. Applies routes and the scheme/address policy.
    fn build(
        &self,
        req: &ir::Request,
        preq: &crate::prepare::PreparedRequest,
        scope: &Scope<'_>,
        step: Option<&str>,
    ) -> Result<Built, Failure> {
        let invalid = |e: render::PlaceError| Failure::new(Reason::InvalidRequest, e.0);

        let mut query = Vec::new();
        for p in &req.query {
            for v in render::param_values(&scope.expr(&p.value)) {
                query.push((p.name.clone(), v));
            }
        }
        if let Some(Auth::Query { name, value }) = &req.auth {
            let v = render::text(&scope.expr(value), ",").unwrap_or_default();
            query.push((name.clone(), v));
        }
        let url = render::url(scope, &req.url.parts, &query).map_err(invalid)?;
        let route = step.and_then(|s| self.config.step_routes.get(s));
        let crate::outbound::Placed {
            url,
            host,
            host_key,
        } = self.outbound.place_known(&url, route, &preq.origin)?;

        let mut headers = HeaderMap::with_capacity(req.headers.len() + 3);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for ((p, name), constant) in req
            .headers
            .iter()
            .zip(&preq.header_names)
            .zip(&preq.header_values)
        {
            if let Some(v) = constant {
                headers.insert(name.clone(), v.clone());
                continue;
            }
            let Some(s) = render::text(&scope.expr(&p.value), ", ") else {
                continue;
            };
            let mut v = render::header_value(&s).map_err(invalid)?;
            v.set_sensitive(render::reads_secret(&p.value));
            headers.insert(name.clone(), v);
        }
        if let Some(host) = host {
            headers.insert(HOST, render::header_value(&host).map_err(invalid)?);
        }
        let secret_text = |e: &ir::Expr| render::text(&scope.expr(e), ",").unwrap_or_default();
        let mut oauth = None;
        let mut basic = None;
        match &req.auth {
            None | Some(Auth::Query { .. }) => {}
            Some(Auth::Bearer { token }) => {
                let v = match &preq.bearer {
                    Some(v) => v.clone(),
                    None => {
                        let mut v = render::header_value(&format!("Bearer {}", secret_text(token)))
                            .map_err(invalid)?;
                        v.set_sensitive(true);
                        v
                    }
                };
                headers.insert(AUTHORIZATION, v);
            }
            Some(Auth::Basic { user, password }) => {
                let (u, p) = (secret_text(user), secret_text(password));
                if u.contains(':') {
                    return Err(Failure::new(
                        Reason::InvalidRequest,
                        "a basic auth user name cannot contain `:`",
                    ));
                }
                render::header_value(&u).map_err(invalid)?;
                render::header_value(&p).map_err(invalid)?;
                basic = Some((u, p));
            }
            Some(Auth::Header { value, .. }) => {
                if let Some(name) = &preq.auth_header_name {
                    let mut v = render::header_value(&secret_text(value)).map_err(invalid)?;
                    v.set_sensitive(true);
                    headers.insert(name.clone(), v);
                }
            }
            Some(Auth::Oauth2 {
                token_url,
                client_id,
                client_secret,
                scope: oauth_scope,
            }) => {
                let per_call = std::iter::once(client_id)
                    .chain(oauth_scope)
                    .flat_map(|e| e.refs())
                    .any(|r| matches!(r.ns, ir::Namespace::Call | ir::Namespace::Input));
                let key = TokenKey {
                    token_url: secret_text(token_url),
                    client_id: secret_text(client_id),
                    scope: oauth_scope
                        .as_ref()
                        .map(secret_text)
                        .filter(|s| !s.is_empty()),
                    call: if per_call {
                        scope.call.id.clone()
                    } else {
                        None
                    },
                };
                oauth = Some((key, secret_text(client_secret)));
            }
        }
        let mut key_ok = false;
        if let Some(e) = &req.idempotency_key {
            if let Some(v) = scope.expr_strict(e).and_then(|v| render::text(&v, ",")) {
                let mut v = render::header_value(&v).map_err(invalid)?;
                v.set_sensitive(render::reads_secret(e));
                headers.insert("idempotency-key", v);
                key_ok = true;
            }
        }
        let retryable = req.method.is_idempotent() || req.read_only || key_ok;

        let method = reqwest::Method::from_bytes(req.method.as_str().as_bytes())
            .map_err(|_| Failure::new(Reason::InvalidRequest, "unknown method"))?;
        let mut builder = self.outbound.client.request(method, url);
        if let Some((user, password)) = basic {
            // reqwest encodes it and marks the header sensitive.
            builder = builder.basic_auth(user, Some(password));
        }
        match &req.body {
            None => {}
            Some(Body::Json { template }) => {
                let body = serde_json::to_vec(&scope.json(template)).map_err(|e| {
                    Failure::new(
                        Reason::InvalidRequest,
                        format!("cannot build the body: {e}"),
                    )
                })?;
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                builder = builder.body(body);
            }
            Some(Body::Form { fields }) => {
                let mut pairs = Vec::new();
                for f in fields {
                    for v in render::param_values(&scope.expr(&f.value)) {
                        pairs.push((f.name.clone(), v));
                    }
                }
                builder = builder.form(&pairs);
            }
        }
        let mut request = builder
            .build()
            .map_err(|e| Failure::new(Reason::InvalidRequest, crate::outbound::error_text(&e)))?;
        // Our headers become the request's map as they are (merging them in one by one, as
        // `RequestBuilder::headers` does, rehashes each); what the builder set (basic auth, a
        // form's content type) is kept unless ours name it too.
        let set_by_builder = std::mem::replace(request.headers_mut(), headers);
        for name in set_by_builder.keys() {
            if !request.headers().contains_key(name) {
                for value in set_by_builder.get_all(name) {
                    request.headers_mut().append(name.clone(), value.clone());
                }
            }
        }
        Ok(Built {
            request,
            host_key,
            retryable,
            oauth,
        })
    }

    /// Sends the request until it succeeds or may not be retried.
    ///
    /// A request is retried only when it is retryable (idempotent method, `read_only`, or an
    /// idempotency key), only after a connection error, a reset, a per-try timeout, or a 429,
    /// 502, 503 or 504, at most `retry` times, and only when time is left after the backoff
    /// (capped exponential with jitter: between half and all of `backoff * 2^n`, at most 2 s).
    /// A `Retry-After` replaces the backoff; when it does not fit in the deadline, the last
    /// response stands. With OAuth2, a 401 drops the token and the request is sent once more
    /// with a new one (not counted as a retry).
    ///
    /// `bounded`: the caller drops this future at `deadline` (so an attempt that may run until
    /// the deadline needs no timer of its own). `build` renders the request (its failure is
    /// this call's, before any request); a retry or a resend after a 401 renders it again, so
    /// a call that needs one attempt (almost every call) never copies its request.
    async fn send(
        &self,
        action_name: &str,
        req: &ir::Request,
        build: impl Fn() -> Result<Built, Failure>,
        deadline: Instant,
        bounded: bool,
        attempts: &AtomicU32,
    ) -> Result<Received, Failure> {
        let built = build()?;
        let max_attempts = if built.retryable {
            1 + req.retry.attempts
        } else {
            1
        };
        // The host's circuit breaker: while it is open, fall back without a request.
        let Some(mut permit) = self
            .breakers
            .admit(&built.host_key, action_name, &self.metrics)
        else {
            return Err(Failure::new(
                Reason::CircuitOpen,
                format!(
                    "the circuit to {} is open after repeated failures",
                    built.host_key
                ),
            ));
        };
        let mut n = 0;
        let mut reauthorized = false;
        let mut first = true;
        let mut original = Some(built.request);
        loop {
            n += 1;
            let mut request = match original.take() {
                Some(r) => r,
                None => build()?.request,
            };
            let mut token = None;
            if let Some((key, secret)) = &built.oauth {
                let t = self.tokens.token(&self.outbound, key, secret).await?;
                let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    Failure::new(
                        Reason::InvalidResponse,
                        "the token endpoint answered an unusable token",
                    )
                })?;
                v.set_sensitive(true);
                request.headers_mut().insert(AUTHORIZATION, v);
                token = Some((key, t));
            }
            attempts.fetch_add(1, Ordering::Relaxed);
            let per_try_deadline = match req.per_try_ms {
                Some(ms) => (Instant::now() + Duration::from_millis(ms)).min(deadline),
                None => deadline,
            };
            permit.begin(std::mem::take(&mut first), per_try_deadline);
            let exchange = self.outbound.send(request, req.max_response_bytes);
            // A caller that drops this future at `deadline` bounds a full-length attempt
            // itself: one timer per exchange instead of two (each costs two locks of tokio's
            // timer wheel, contended between the workers under load).
            let result = if bounded && per_try_deadline >= deadline {
                // The permit counts the attempt as a timeout if the caller's timer cuts it.
                exchange.await
            } else {
                match timeout_at(per_try_deadline, exchange).await {
                    Ok(r) => r,
                    Err(_) if per_try_deadline < deadline => Err(Failure {
                        reason: Reason::Timeout,
                        transient: true,
                        message: format!(
                            "attempt {n} took longer than per_try ({} ms)",
                            req.per_try_ms.unwrap_or_default()
                        ),
                    }),
                    Err(_) => Err(Failure::new(
                        Reason::Timeout,
                        format!("no answer within the timeout of {} ms", req.timeout_ms),
                    )),
                }
            };
            match &result {
                Ok(r) => permit.end(r.status == 429 || r.status >= 500, Ok(r.status)),
                Err(f) => permit.end(
                    matches!(f.reason, Reason::Connect | Reason::Timeout),
                    Err(f.reason.as_str()),
                ),
            }

            let delay = match &result {
                Ok(r) if r.status == 401 && !reauthorized => {
                    if let Some((key, t)) = token {
                        reauthorized = true;
                        self.tokens.reject(key, &t).await;
                        n -= 1;
                        continue;
                    }
                    return result;
                }
                Ok(r) if RETRY_STATUSES.contains(&r.status) => r
                    .retry_after
                    .unwrap_or_else(|| backoff(req.retry.backoff_ms, n)),
                Ok(_) => return result,
                Err(f) if f.transient => backoff(req.retry.backoff_ms, n),
                Err(_) => return result,
            };
            if n >= max_attempts {
                return result;
            }
            if Instant::now() + delay + MIN_ATTEMPT_TIME > deadline {
                tracing::debug!(
                    delay_ms = delay.as_millis() as u64,
                    "no time left for a retry"
                );
                return result;
            }
            if !permit.allow_retry() {
                tracing::debug!("retry budget of the host spent; no retry");
                return result;
            }
            self.metrics.retry(action_name);
            tokio::time::sleep(delay).await;
        }
    }
}

/// Hooks for tests and fuzzing (see [`crate::hooks`]); not a stable API.
impl Runtime {
    /// Validates the inputs and renders the upstream request of `action` without sending it.
    #[doc(hidden)]
    pub fn render_request(
        &self,
        action: &str,
        inputs: Value,
        call: CallContext,
    ) -> Result<crate::hooks::RenderedRequest, String> {
        let prep = self.actions.get(action).ok_or("unknown action")?;
        let inputs = input::validate(&prep.action, inputs).map_err(|e| e.message)?;
        let scope = Scope {
            inputs: &inputs,
            call: &call,
            env: &prep.env,
            secrets: &prep.secrets,
            outputs: None,
            steps: None,
        };
        let (req, preq) = match (&prep.action.request, &prep.main) {
            (Some(r), Some(p)) => (r, p),
            _ => match (prep.action.steps.first(), prep.steps.first()) {
                (Some(s), Some(p)) => (&s.request, &p.request),
                _ => return Err("the action has no request".into()),
            },
        };
        let built = self.build(req, preq, &scope, None).map_err(|f| f.message)?;
        let r = built.request;
        Ok(crate::hooks::RenderedRequest {
            method: r.method().to_string(),
            url: r.url().to_string(),
            headers: r
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: r.body().and_then(|b| b.as_bytes()).map(<[u8]>::to_vec),
        })
    }

    /// What the runtime still holds of a call (after `DELETE /calls/{id}`: nothing).
    #[doc(hidden)]
    pub async fn call_footprint(&self, call_id: &str) -> crate::hooks::CallFootprint {
        let (held, of_call) = self.caches.footprint(call_id);
        crate::hooks::CallFootprint {
            cache_entries_held: held,
            cache_entries_of_call: of_call,
            tokens_of_call: self.tokens.of_call(call_id),
        }
    }

    /// Resolves an upstream host name through the SSRF guard, without connecting: the
    /// addresses a connection would use, or why there are none.
    #[doc(hidden)]
    pub async fn resolve_upstream(&self, host: &str) -> Result<Vec<std::net::IpAddr>, String> {
        self.outbound.resolve(host).await
    }

    /// The circuit breaker state of an upstream host (`host:port`): `closed`, `open` or
    /// `half_open`.
    #[doc(hidden)]
    pub fn breaker_state(&self, host: &str) -> &'static str {
        self.breakers.state(host)
    }
}

/// Capped exponential backoff with jitter for retry `n` (1-based): uniformly between half and
/// all of `base * 2^(n-1)`, at most [`MAX_BACKOFF`].
fn backoff(base_ms: u64, n: u32) -> Duration {
    let exp = base_ms.saturating_mul(1u64 << (n.saturating_sub(1)).min(20));
    let full = Duration::from_millis(exp).min(MAX_BACKOFF);
    let half = full / 2;
    half + full.mul_f64(fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        for n in 1..10 {
            let d = backoff(100, n);
            let full = Duration::from_millis(100 << (n - 1)).min(MAX_BACKOFF);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
        assert_eq!(backoff(0, 3), Duration::ZERO);
    }

    /// A call's futures are moved into the deadline's and the cache's wrappers, and each move
    /// copies all of it: 5 KB per call before a fetch was boxed where it starts (the rarely
    /// used deferred steps too). A larger future means a branch is held inline; box it.
    #[test]
    fn a_calls_futures_stay_small() {
        use crate::test_support::size_of_future;
        let rt = crate::test_support::lookup_customer();
        let prep = rt.actions.values().next().expect("one action");
        let (call, inputs, deadline) = (CallContext::default(), Map::new(), Instant::now());
        let run = size_of_future(|v: Value| rt.run(prep, v, call.clone(), deadline));
        assert!(run <= 1536, "a call's future is {run} bytes");
        let obtain = size_of_future(|()| rt.obtain(prep, &inputs, &call, deadline));
        assert!(
            obtain <= 1024,
            "obtaining outputs is a future of {obtain} bytes"
        );
    }
}
