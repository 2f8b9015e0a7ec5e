//! Running an action's `test` blocks offline (the engine of `mca test`).
//!
//! Each test gets its own [`Runtime`] holding just the action, with every upstream request
//! (OAuth2 token requests included) routed to an in-process [`Stub`] on loopback that answers
//! the test's `upstream` replies in order (the last one repeats). Nothing reaches the network.
//! Variables the test does not set get placeholders: `env.NAME` becomes
//! `https://name.placeholder.test` where it is the origin of a URL (any host works: everything is
//! routed to the stub) and `test-name` elsewhere, and `secret.NAME` becomes `test-secret-NAME`.
//!
//! Expectations:
//! - `expect { ... }`: status `ok` (mapped outputs, a cache hit or an `on STATUS` outcome) and
//!   the listed outputs equal;
//! - `expect fallback { ... }`: the `fallback` or an `on STATUS` outcome, listed outputs equal;
//! - `expect error REASON`: the answer's reason ([`ActionResponse::reason`]);
//! - `expect request METHOD "PATH"`: the first upstream request's method and path with query
//!   (as sent, percent-encoded), and the listed headers and JSON body;
//! - `expect say "..."`: the rendered `say`.

use std::collections::HashMap;

use mca_compiler::ir::{self, ExpectationKind, Location};
use serde_json::Value;

use crate::config::Config;
use crate::execute::Runtime;
use crate::response::{ActionResponse, CallContext, Outputs, Status};
use crate::stub::{Recorded, Reply, Stub};

/// One unmet expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Where the expectation (or, for set-up problems, the test) is written.
    pub location: Location,
    pub message: String,
}

/// The result of one test block.
#[derive(Debug, Clone)]
pub struct TestReport {
    pub action: String,
    pub test: String,
    pub failures: Vec<Failure>,
    /// What the action answered (`None` when the test could not run).
    pub response: Option<ActionResponse>,
    /// The upstream requests the action made.
    pub requests: Vec<Recorded>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A placeholder for an `env` value the test does not set: a URL where the value is the origin
/// of a URL (the request's or the OAuth2 token URL), plain text elsewhere (a basic-auth user, a
/// body field), so that the placeholder itself never makes a request invalid.
fn placeholder_env(action: &ir::Action, name: &str) -> String {
    if env_is_origin(action, name) {
        format!(
            "https://{}.placeholder.test",
            name.to_ascii_lowercase().replace('_', "-")
        )
    } else {
        format!("test-{}", name.to_ascii_lowercase().replace('_', "-"))
    }
}

fn env_is_origin(action: &ir::Action, name: &str) -> bool {
    let is_env = |r: &ir::Ref| r.ns == ir::Namespace::Env && r.name == name;
    let requests = action
        .request
        .iter()
        .chain(action.steps.iter().map(|s| &s.request));
    requests.into_iter().any(|request| {
        let in_url = request.url.parts.iter().any(
            |p| matches!(p, ir::UrlPart::Ref { r#ref, at: ir::UrlContext::Origin } if is_env(r#ref)),
        );
        let in_token_url = match &request.auth {
            Some(ir::Auth::Oauth2 { token_url, .. }) => match token_url {
                ir::Expr::Ref(r) => is_env(r),
                ir::Expr::Template(t) => {
                    matches!(t.parts.first(), Some(ir::Part::Ref(r)) if is_env(r))
                }
                ir::Expr::Literal(_) => false,
            },
            _ => false,
        };
        in_url || in_token_url
    })
}

/// Runs one test block of `action`.
pub async fn run_test(action: &ir::Action, test: &ir::Test) -> TestReport {
    let mut report = TestReport {
        action: action.name.clone(),
        test: test.name.clone(),
        failures: Vec::new(),
        response: None,
        requests: Vec::new(),
    };
    let fail = |report: &mut TestReport, location: Location, message: String| {
        report.failures.push(Failure { location, message });
    };
    let replies: Vec<Reply> = test.upstream.iter().map(Reply::from).collect();
    let stub = match Stub::start(replies).await {
        Ok(s) => s,
        Err(e) => {
            fail(
                &mut report,
                test.location,
                format!("cannot start the stub upstream: {e}"),
            );
            return report;
        }
    };
    // A stub of its own for every step a test stubs or expects a request of; its answers are
    // the step's `upstream STEP ...` lines, else the test's plain `upstream` lines.
    let mut step_stubs: Vec<(String, Stub)> = Vec::new();
    let mut named: Vec<&str> = test.step_upstream.iter().map(|(n, _)| n.as_str()).collect();
    for e in &test.expectations {
        if let ExpectationKind::Request { step: Some(s), .. } = &e.kind {
            if !named.contains(&s.as_str()) {
                named.push(s);
            }
        }
    }
    for name in named {
        let stubs = test
            .step_upstream
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.as_slice())
            .unwrap_or(&test.upstream);
        let mut replies: Vec<Reply> = stubs.iter().map(Reply::from).collect();
        if replies.is_empty() {
            replies.push(Reply::json(200, serde_json::json!({})));
        }
        match Stub::start(replies).await {
            Ok(s) => step_stubs.push((name.to_string(), s)),
            Err(e) => {
                fail(
                    &mut report,
                    test.location,
                    format!("cannot start the stub upstream of step `{name}`: {e}"),
                );
                return report;
            }
        }
    }
    let mut env: HashMap<String, String> = HashMap::new();
    for name in &action.env {
        env.insert(name.clone(), placeholder_env(action, name));
    }
    for name in &action.secrets {
        env.insert(name.clone(), format!("test-secret-{name}"));
    }
    env.extend(test.env.iter().cloned());
    env.extend(test.secrets.iter().cloned());
    let config = Config {
        env: Some(env),
        step_routes: step_stubs
            .iter()
            .map(|(n, s)| (n.clone(), s.addr()))
            .collect(),
        deliver_deferred_inline: true,
        ..Config::default()
    }
    .route("*", stub.addr());
    let project = ir::Project {
        ir_version: ir::IR_VERSION,
        actions: vec![action.clone()],
    };
    let runtime = match Runtime::new(project, config) {
        Ok(r) => r,
        Err(e) => {
            fail(&mut report, test.location, e.to_string());
            return report;
        }
    };
    let call = CallContext {
        id: test.call_id.clone(),
        from: test.call_from.clone(),
    };
    let response = runtime
        .execute(&action.name, Value::Object(test.inputs.clone()), call)
        .await;
    let requests = stub.requests();
    let by_step: HashMap<String, Vec<Recorded>> = step_stubs
        .iter()
        .map(|(n, s)| (n.clone(), s.requests()))
        .collect();
    for e in &test.expectations {
        let requests = match &e.kind {
            ExpectationKind::Request { step: Some(s), .. } => {
                by_step.get(s).map(Vec::as_slice).unwrap_or_default()
            }
            _ => requests.as_slice(),
        };
        if let Err(message) = check(&e.kind, &response, requests) {
            fail(&mut report, e.location, message);
        }
    }
    report.response = Some(response);
    report.requests = requests;
    report
}

/// Tests run at the same time by [`run_all`]: each has its own stub and runtime, and most of
/// a test's time is spent waiting (timeouts, backoff), not computing.
const CONCURRENT_TESTS: usize = 8;

/// Runs every test block of every action, a few at a time; reports come in declaration order.
pub async fn run_all(project: &ir::Project) -> Vec<TestReport> {
    use futures_util::stream::{self, StreamExt};
    let tests = project
        .actions
        .iter()
        .flat_map(|a| a.tests.iter().map(move |t| (a, t)));
    // Unordered, so one long test (a timeout) does not hold back the ones behind it.
    let mut reports: Vec<(usize, TestReport)> = stream::iter(tests.enumerate())
        .map(|(i, (action, test))| async move { (i, run_test(action, test).await) })
        .buffer_unordered(CONCURRENT_TESTS)
        .collect()
        .await;
    reports.sort_by_key(|(i, _)| *i);
    reports.into_iter().map(|(_, r)| r).collect()
}

/// [`run_all`] on a runtime of its own, for callers without one.
pub fn run_all_blocking(project: &ir::Project) -> std::io::Result<Vec<TestReport>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(run_all(project)))
}

fn compare_outputs(values: &[(String, Value)], output: &Outputs) -> Result<(), String> {
    let wrong: Vec<String> = values
        .iter()
        .filter(|(name, expected)| output.get(name).unwrap_or(&Value::Null) != expected)
        .map(|(name, expected)| {
            format!(
                "`{name}` is {}, expected {expected}",
                output.get(name).unwrap_or(&Value::Null)
            )
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

fn describe(response: &ActionResponse) -> String {
    match response {
        ActionResponse::Answer(a) => match (a.status, a.reason) {
            (Status::Ok, _) if a.detail.on_status.is_some() => format!(
                "the `on {}` outcome",
                a.detail.upstream_status.unwrap_or_default()
            ),
            (Status::Ok, _) => "status ok".to_string(),
            (Status::Fallback, Some(r)) => format!(
                "a fallback ({}{})",
                r.as_str(),
                a.detail
                    .message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            (Status::Fallback, None) => "a fallback".to_string(),
        },
        ActionResponse::Error(e) => format!("error {} ({})", e.code, e.message),
    }
}

fn check(
    kind: &ExpectationKind,
    response: &ActionResponse,
    requests: &[Recorded],
) -> Result<(), String> {
    match kind {
        ExpectationKind::Outputs { values } => match response {
            ActionResponse::Answer(a) if a.status == Status::Ok => {
                compare_outputs(values, &a.output)
            }
            other => Err(format!("expected status ok, got {}", describe(other))),
        },
        ExpectationKind::Fallback { values } => match response {
            ActionResponse::Answer(a)
                if a.status == Status::Fallback || a.detail.on_status.is_some() =>
            {
                compare_outputs(values, &a.output)
            }
            other => Err(format!("expected a fallback, got {}", describe(other))),
        },
        ExpectationKind::Error { reason } => match response.reason() {
            Some(r) if r == *reason => Ok(()),
            _ => Err(format!(
                "expected error {}, got {}",
                reason.as_str(),
                describe(response)
            )),
        },
        ExpectationKind::Request {
            step,
            method,
            path,
            headers,
            body,
        } => {
            let Some(first) = requests.first() else {
                return Err(match step {
                    Some(s) => format!("expected a request of step `{s}`, none was made"),
                    None => "expected an upstream request, none was made".into(),
                });
            };
            let mut problems = Vec::new();
            if first.method != method.as_str() || &first.path != path {
                problems.push(format!(
                    "the request was {} {}, expected {} {}",
                    first.method,
                    first.path,
                    method.as_str(),
                    path
                ));
            }
            for (name, value) in headers {
                match first.header(name) {
                    Some(v) if v == value => {}
                    Some(v) => problems.push(format!("header {name} is {v:?}, expected {value:?}")),
                    None => problems.push(format!("header {name} is missing")),
                }
            }
            if let Some(expected) = body {
                match first.json() {
                    Some(actual) if &actual == expected => {}
                    Some(actual) => {
                        problems.push(format!("the body is {actual}, expected {expected}"))
                    }
                    None => problems.push("the body is not JSON".into()),
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            }
        }
        ExpectationKind::Say { text } => match response {
            ActionResponse::Answer(a) if a.say.as_deref() == Some(text.as_str()) => Ok(()),
            ActionResponse::Answer(a) => Err(format!(
                "say is {}, expected {text:?}",
                a.say
                    .as_ref()
                    .map(|s| format!("{s:?}"))
                    .unwrap_or_else(|| "null".into())
            )),
            other => Err(format!("expected a say, got {}", describe(other))),
        },
    }
}
