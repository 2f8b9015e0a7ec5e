//! Start-up: everything that can be checked once is checked here, and every problem is reported
//! at once ([`StartupError`]) instead of failing on the first call.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use http::{HeaderName, HeaderValue};
use jsonpath_rust::parser::parse_json_path;
use mca_compiler::ir::{self, Action, Auth, MappingKind, Namespace, Ty, UrlPart};
use serde_json::Value;

use crate::config::Config;
use crate::mapping::{Mapping, Need, Plan};
use crate::render;

/// One thing that keeps the runtime from starting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupProblem {
    /// The IR was written for another layout.
    IrVersion { found: u32, expected: u32 },
    /// Two actions share a name.
    DuplicateAction { name: String },
    /// An `env.NAME` or `secret.NAME` variable is not set (or empty).
    MissingVariable {
        name: String,
        secret: bool,
        actions: Vec<String>,
    },
    /// An output's JSONPath does not parse.
    InvalidJsonPath {
        action: String,
        output: String,
        message: String,
    },
    /// The request URL does not form an absolute http(s) URL with the configured variables.
    InvalidUrl { action: String, message: String },
    /// A header name (or header-auth name) is not a valid HTTP header name.
    InvalidHeaderName { action: String, name: String },
    /// The outbound HTTP client could not be built.
    Client { message: String },
}

impl fmt::Display for StartupProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupProblem::IrVersion { found, expected } => write!(
                f,
                "the IR has version {found}, this runtime reads version {expected}; rebuild it with the matching compiler"
            ),
            StartupProblem::DuplicateAction { name } => {
                write!(f, "two actions are named `{name}`")
            }
            StartupProblem::MissingVariable {
                name,
                secret,
                actions,
            } => write!(
                f,
                "environment variable {name} ({}) is not set; needed by {}",
                if *secret { "secret" } else { "env" },
                actions.join(", ")
            ),
            StartupProblem::InvalidJsonPath {
                action,
                output,
                message,
            } => write!(
                f,
                "action {action}: the path of output `{output}` does not parse: {message}"
            ),
            StartupProblem::InvalidUrl { action, message } => {
                write!(f, "action {action}: {message}")
            }
            StartupProblem::InvalidHeaderName { action, name } => {
                write!(f, "action {action}: `{name}` is not a valid header name")
            }
            StartupProblem::Client { message } => {
                write!(f, "cannot build the HTTP client: {message}")
            }
        }
    }
}

/// Every problem found at start-up. `Display` lists them one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupError {
    pub problems: Vec<StartupProblem>,
}

impl StartupError {
    /// The variables that are missing, each with the actions that need it.
    pub fn missing_variables(&self) -> Vec<(&str, &[String])> {
        self.problems
            .iter()
            .filter_map(|p| match p {
                StartupProblem::MissingVariable { name, actions, .. } => {
                    Some((name.as_str(), actions.as_slice()))
                }
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "cannot start: {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StartupError {}

/// An output with its JSONPath parsed.
pub(crate) struct PreparedOutput {
    pub name: String,
    pub ty: Ty,
    pub kind: MappingKind,
    pub plan: Plan,
    /// What the path reads of a body.
    pub reads: Need,
    pub singular: bool,
    pub default: Option<Value>,
}

/// A request's header names, parsed once, and the header values that read only literals,
/// `env` and `secret` values, rendered once.
pub(crate) struct PreparedRequest {
    /// `request.headers` names, parsed (same order as the IR).
    pub header_names: Vec<HeaderName>,
    /// `request.headers` values that are the same on every call, rendered (same order as the
    /// IR; `None`: rendered per call, as are values that are null or not valid in HTTP, so
    /// those fail or are left out per call as before).
    pub header_values: Vec<Option<HeaderValue>>,
    /// The name of an `auth header` header, parsed.
    pub auth_header_name: Option<HeaderName>,
    /// The `Authorization` value of `auth bearer` with a token that is the same on every call.
    pub bearer: Option<HeaderValue>,
    /// The request's origin once placed (set by its first call).
    pub origin: crate::outbound::KnownOrigin,
}

/// A step ready to execute (same order as `Action::steps`).
pub(crate) struct PreparedStep {
    pub request: PreparedRequest,
    pub mapping: Mapping,
}

/// An action ready to execute.
pub(crate) struct Prepared {
    pub action: Action,
    /// `env.NAME` values.
    pub env: HashMap<String, String>,
    /// `secret.NAME` values.
    pub secrets: HashMap<String, String>,
    /// The JSONPath outputs of a single-request action.
    pub mapping: Mapping,
    /// The one request of a single-request action.
    pub main: Option<PreparedRequest>,
    pub steps: Vec<PreparedStep>,
    /// The names of the action's outputs, in order (shared by every answer).
    pub output_names: std::sync::Arc<[String]>,
}

/// Parses an output's JSONPath (the error is the parser's message). `None` for a computed
/// output (no JSONPath).
pub(crate) fn prepare_output(o: &ir::Output) -> Option<Result<PreparedOutput, String>> {
    let mapping = o.mapping()?;
    Some(
        parse_json_path(&mapping.path)
            .map_err(|e| e.to_string())
            .map(|query| PreparedOutput {
                name: o.name.clone(),
                ty: o.ty.clone(),
                kind: mapping.kind,
                plan: Plan::new(&query),
                reads: Need::of_path(&query, mapping.kind),
                singular: mapping.singular,
                default: mapping.default.clone(),
            }),
    )
}

/// Parses the header names of a request; every bad one is a problem.
fn prepare_request(
    action: &str,
    request: &ir::Request,
    vars: &Vars<'_>,
    problems: &mut Vec<StartupProblem>,
) -> PreparedRequest {
    let mut header_names = Vec::new();
    for h in &request.headers {
        match HeaderName::from_bytes(h.name.as_bytes()) {
            Ok(n) => header_names.push(n),
            Err(_) => problems.push(StartupProblem::InvalidHeaderName {
                action: action.to_string(),
                name: h.name.clone(),
            }),
        }
    }
    let auth_header_name = match &request.auth {
        Some(Auth::Header { name, .. }) => match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => Some(n),
            Err(_) => {
                problems.push(StartupProblem::InvalidHeaderName {
                    action: action.to_string(),
                    name: name.clone(),
                });
                None
            }
        },
        _ => None,
    };
    let header_values = request
        .headers
        .iter()
        .map(|h| {
            let mut v = vars.header(&h.value, "", ", ")?;
            v.set_sensitive(render::reads_secret(&h.value));
            Some(v)
        })
        .collect();
    let bearer = match &request.auth {
        Some(Auth::Bearer { token }) => vars.header(token, "Bearer ", ",").map(|mut v| {
            v.set_sensitive(true);
            v
        }),
        _ => None,
    };
    PreparedRequest {
        header_names,
        header_values,
        auth_header_name,
        bearer,
        origin: Default::default(),
    }
}

/// An action's `env` and `secret` values.
struct Vars<'a> {
    env: &'a HashMap<String, String>,
    secrets: &'a HashMap<String, String>,
}

impl Vars<'_> {
    /// `prefix` and the text of an expression that reads nothing but literals, `env` and
    /// `secret` values (lists joined with `list_sep`), as a header value, the way a call renders
    /// it; `None` when it reads anything else, is null or is not a valid header value.
    fn header(&self, e: &ir::Expr, prefix: &str, list_sep: &str) -> Option<HeaderValue> {
        let constant = e
            .refs()
            .iter()
            .all(|r| matches!(r.ns, Namespace::Env | Namespace::Secret));
        if !constant {
            return None;
        }
        let (inputs, call) = (
            serde_json::Map::new(),
            crate::response::CallContext::default(),
        );
        let scope = render::Scope {
            inputs: &inputs,
            call: &call,
            env: self.env,
            secrets: self.secrets,
            outputs: None,
            steps: None,
        };
        let text = render::text(&scope.expr(e), list_sep)?;
        render::header_value(&format!("{prefix}{text}")).ok()
    }
}

/// Prepares the outputs mapped by JSONPath; every path that does not parse is a problem.
fn prepare_outputs(
    action: &str,
    outputs: &[ir::Output],
    problems: &mut Vec<StartupProblem>,
) -> Mapping {
    let mut out = Vec::new();
    for o in outputs {
        match prepare_output(o) {
            None => {}
            Some(Ok(o)) => out.push(o),
            Some(Err(message)) => problems.push(StartupProblem::InvalidJsonPath {
                action: action.to_string(),
                output: o.name.clone(),
                message,
            }),
        }
    }
    Mapping::new(out)
}

/// Prepares every action; on any problem, returns them all.
pub(crate) fn prepare(
    project: ir::Project,
    config: &Config,
) -> Result<Vec<Prepared>, StartupError> {
    let mut problems = Vec::new();
    if project.ir_version != ir::IR_VERSION {
        return Err(StartupError {
            problems: vec![StartupProblem::IrVersion {
                found: project.ir_version,
                expected: ir::IR_VERSION,
            }],
        });
    }

    // Variables: one problem per missing variable, naming every action that needs it.
    let mut missing: BTreeMap<(String, bool), Vec<String>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut prepared = Vec::new();
    for action in project.actions {
        if !seen.insert(action.name.clone()) {
            problems.push(StartupProblem::DuplicateAction {
                name: action.name.clone(),
            });
            continue;
        }
        let mut env = HashMap::new();
        let mut secrets = HashMap::new();
        for (names, secret, into) in [
            (&action.env, false, &mut env),
            (&action.secrets, true, &mut secrets),
        ] {
            for name in names {
                match config.var(name) {
                    Some(v) if !v.is_empty() => {
                        into.insert(name.clone(), v);
                    }
                    _ => missing
                        .entry((name.clone(), secret))
                        .or_default()
                        .push(action.name.clone()),
                }
            }
        }

        let mapping = prepare_outputs(&action.name, &action.outputs, &mut problems);
        let vars = Vars {
            env: &env,
            secrets: &secrets,
        };
        let main = action
            .request
            .as_ref()
            .map(|r| prepare_request(&action.name, r, &vars, &mut problems));
        let steps = action
            .steps
            .iter()
            .map(|st| PreparedStep {
                request: prepare_request(&action.name, &st.request, &vars, &mut problems),
                mapping: prepare_outputs(&action.name, &st.outputs, &mut problems),
            })
            .collect();

        let all_vars_present = action.env.iter().all(|n| env.contains_key(n));
        if all_vars_present {
            for request in action
                .request
                .iter()
                .chain(action.steps.iter().map(|s| &s.request))
            {
                if let Err(message) = check_url(&action, request, &env) {
                    problems.push(StartupProblem::InvalidUrl {
                        action: action.name.clone(),
                        message,
                    });
                }
            }
        }

        prepared.push(Prepared {
            output_names: action.outputs.iter().map(|o| o.name.clone()).collect(),
            action,
            env,
            secrets,
            mapping,
            main,
            steps,
        });
    }
    for ((name, secret), actions) in missing {
        problems.push(StartupProblem::MissingVariable {
            name,
            secret,
            actions,
        });
    }
    if problems.is_empty() {
        Ok(prepared)
    } else {
        Err(StartupError { problems })
    }
}

/// Renders the URL with the real origin and a placeholder for every per-call value, and checks
/// that it is an absolute http(s) URL with a host. Catches `CRM_BASE_URL=crm.example.com`.
fn check_url(
    action: &Action,
    request: &ir::Request,
    env: &HashMap<String, String>,
) -> Result<(), String> {
    let mut url = String::new();
    for part in &request.url.parts {
        match part {
            UrlPart::Text(t) => url.push_str(t),
            UrlPart::Ref { r#ref, at } => match (r#ref.ns, at) {
                (Namespace::Env, ir::UrlContext::Origin) => {
                    let v = env.get(&r#ref.name).map(String::as_str).unwrap_or("");
                    url.push_str(v.trim_end_matches('/'));
                }
                _ => url.push('x'),
            },
        }
    }
    let describe = || {
        let vars: Vec<String> = action.env.iter().map(|n| format!("env.{n}")).collect();
        if vars.is_empty() {
            String::new()
        } else {
            format!(" (check {})", vars.join(", "))
        }
    };
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| format!("the request URL is not an absolute URL: {e}{}", describe()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "the request URL must start with http:// or https:// and name a host{}",
            describe()
        ));
    }
    Ok(())
}
