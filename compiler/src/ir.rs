//! The checked intermediate representation: the one serde boundary between the compiler and the
//! runtime. Everything here is plain data. The runtime reads only this.
//!
//! Invariants (established by `check`, relied upon by the runtime):
//! - every `Ref` names something declared (an input of the action, an output for `say`, a known
//!   `call` member); `env`/`secret` names are listed in `Action::env` / `Action::secrets`;
//! - a `UrlPart::Ref` in `UrlContext::Origin` is always an `env` reference;
//! - secrets appear only in `Request::auth` and `Request::headers`, never their values;
//! - every `Mapping::path` parses as an RFC 9535 JSONPath; `singular` says whether it can select
//!   at most one node;
//! - `fallback` and every `on_status` outcome assign every required output (of the action, or
//!   of the step they belong to);
//! - exactly one of `Action::request` and live `Action::steps` exists; outputs of a
//!   single-request action and of steps are `Source::Path`, outputs of an action with steps
//!   are `Source::Value`;
//! - a `step.S.X` reference names a live step `S` that declares `X`; `Step::after` lists every
//!   live step a step reads, and the steps form no cycle; deferred steps have no outputs and a
//!   non-idempotent deferred request has an idempotency key;
//! - every `Term` is type-checked: conditions are booleans, comparisons compare like types.
//!
//! Bump [`IR_VERSION`] on any change a runtime built for the old layout would misread.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the IR layout. The runtime refuses documents of another version.
pub const IR_VERSION: u32 = 2;

/// A whole compiled project: every action of every file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub ir_version: u32,
    pub actions: Vec<Action>,
}

impl Project {
    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// Where something stands in its source file (1-based line and character column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub name: String,
    /// The file the action was declared in, as given to the compiler.
    pub file: String,
    pub location: Location,
    pub description: String,
    pub inputs: Vec<Input>,
    /// The one request of a single-request action: `outputs` map its response by JSONPath.
    /// `None` in an action with steps.
    pub request: Option<Request>,
    /// Named steps in the order written: live ones run before the answer (concurrently where
    /// they do not read each other), deferred ones are recorded and delivered after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// The whole time the caller waits: the request's `timeout`, or the action's `timeout` in
    /// an action with steps.
    pub timeout_ms: u64,
    pub outputs: Vec<Output>,
    /// Spoken after a successful call: the first case whose condition holds (a case without a
    /// condition always holds). May reference `input.*`, `output.*`, `step.*`, `call.*`, `env.*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub say: Vec<Say>,
    /// Status-specific outcomes, tried in order before the fallback.
    pub on_status: Vec<StatusHandler>,
    pub fallback: Option<Outcome>,
    pub cache: Option<Cache>,
    /// Actions whose cached entries are dropped after this action succeeds.
    pub invalidates: Vec<String>,
    /// What the voice platform says while the caller waits (exported to platforms that support
    /// it; the runtime itself never speaks these).
    #[serde(default, skip_serializing_if = "Messages::is_empty")]
    pub messages: Messages,
    /// Runs when a call ends (`DELETE /calls/{id}` or the platform's end-of-call event), not
    /// as a tool of the assistant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUp>,
    pub tests: Vec<Test>,
    /// Every environment variable the action reads via `env.NAME` (sorted, unique).
    pub env: Vec<String>,
    /// Every environment variable the action reads via `secret.NAME` (sorted, unique).
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: Ty,
    /// Used when the caller omits the input. An input is required when it has no default and
    /// its type is not optional.
    pub default: Option<Value>,
    pub description: Option<String>,
}

impl Action {
    /// The requests made while the caller waits: the one request, or the live steps'.
    pub fn live_requests(&self) -> impl Iterator<Item = &Request> {
        self.request.iter().chain(
            self.steps
                .iter()
                .filter(|s| s.deferred.is_none())
                .map(|s| &s.request),
        )
    }

    /// Whether the action only reads (every live request is safe or `read_only`, and it has no
    /// deferred writes).
    pub fn reads_only(&self) -> bool {
        self.live_requests()
            .all(|r| r.read_only || r.method.is_safe())
            && self.steps.iter().all(|s| s.deferred.is_none())
    }

    /// Whether calling the action twice has the effect of calling it once.
    pub fn idempotent(&self) -> bool {
        self.live_requests()
            .chain(
                self.steps
                    .iter()
                    .filter(|s| s.deferred.is_some())
                    .map(|s| &s.request),
            )
            .all(|r| r.method.is_idempotent() || r.idempotency_key.is_some())
    }
}

impl Input {
    pub fn required(&self) -> bool {
        self.default.is_none() && !self.ty.is_optional()
    }
}

/// A named request of an action with steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    /// The step runs only when this holds; otherwise its values are null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Term>,
    /// The live steps whose values this step reads: it starts when they have finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Set for a deferred write: recorded durably before the answer, delivered after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<Deferred>,
    pub request: Request,
    /// The step's values, mapped from its response by JSONPath.
    pub outputs: Vec<Output>,
    pub on_status: Vec<StatusHandler>,
    /// Values used when the step fails; without one, a failed step fails the action.
    pub fallback: Option<Outcome>,
}

/// Deferred writes are tried for a day unless `within` says otherwise.
pub const DEFAULT_DEFERRED_WITHIN_MS: u64 = 24 * 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferred {
    /// Delivery is retried until this long after the write was recorded.
    pub within_ms: u64,
}

/// A `say` text and the condition under which it is spoken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Say {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Term>,
    pub text: Template,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    /// The follow-up runs only when this holds (it may read `input.*` and `call.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Term>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// As written in a `.mca` file.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// An expression of the condition language, type-checked by the compiler. Evaluation: null
/// equals only null (so `x != "a"` holds when `x` is null); `<`, `<=`, `>`, `>=` with null are
/// false; `and`, `or` and `not` treat null as false.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Term {
    Ref {
        r#ref: Ref,
    },
    Literal {
        value: Value,
    },
    Not {
        term: Box<Term>,
    },
    And {
        terms: Vec<Term>,
    },
    Or {
        terms: Vec<Term>,
    },
    Compare {
        op: CmpOp,
        left: Box<Term>,
        right: Box<Term>,
    },
}

impl Term {
    /// Every reference in the expression.
    pub fn refs(&self) -> Vec<&Ref> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Ref>) {
        match self {
            Term::Ref { r#ref } => out.push(r#ref),
            Term::Literal { .. } => {}
            Term::Not { term } => term.collect(out),
            Term::And { terms } | Term::Or { terms } => terms.iter().for_each(|t| t.collect(out)),
            Term::Compare { left, right, .. } => {
                left.collect(out);
                right.collect(out);
            }
        }
    }
}

/// Speech for the wait: plain text, spoken by the platform, not by the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Messages {
    /// Said when the platform starts the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Said when the action has not answered after `after_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delayed: Option<DelayedMessage>,
    /// Said when the platform cannot reach the action at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl Messages {
    pub fn is_empty(&self) -> bool {
        self.start.is_none() && self.delayed.is_none() && self.failed.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayedMessage {
    pub after_ms: u64,
    pub text: String,
}

/// A value type of the language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ty {
    String {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<Format>,
    },
    Int,
    Number,
    Bool,
    Enum {
        values: Vec<String>,
    },
    List {
        item: Box<Ty>,
    },
    Optional {
        inner: Box<Ty>,
    },
}

/// String formats checked on inputs, defaults and test values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Email,
    Phone,
    Date,
    Datetime,
    Uuid,
    Url,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Email,
        Format::Phone,
        Format::Date,
        Format::Datetime,
        Format::Uuid,
        Format::Url,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Email => "email",
            Format::Phone => "phone",
            Format::Date => "date",
            Format::Datetime => "datetime",
            Format::Uuid => "uuid",
            Format::Url => "url",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// What a valid value looks like, for error messages.
    pub fn example(self) -> &'static str {
        match self {
            Format::Email => "an email address like max@example.com",
            Format::Phone => "an E.164 phone number like +4930123456",
            Format::Date => "a date like 2026-11-24",
            Format::Datetime => "an RFC 3339 date-time like 2026-11-24T15:00:00+01:00",
            Format::Uuid => "a UUID like 123e4567-e89b-12d3-a456-426614174000",
            Format::Url => "an absolute http(s) URL",
        }
    }

    /// JSON Schema `format` keyword, where one exists.
    pub fn json_schema_format(self) -> Option<&'static str> {
        match self {
            Format::Email => Some("email"),
            Format::Phone => None,
            Format::Date => Some("date"),
            Format::Datetime => Some("date-time"),
            Format::Uuid => Some("uuid"),
            Format::Url => Some("uri"),
        }
    }

    pub fn matches(self, s: &str) -> bool {
        crate::formats::matches(self, s)
    }
}

impl Ty {
    pub fn is_optional(&self) -> bool {
        matches!(self, Ty::Optional { .. })
    }

    /// The type without its optional wrapper.
    pub fn base(&self) -> &Ty {
        match self {
            Ty::Optional { inner } => inner.base(),
            other => other,
        }
    }

    pub fn is_list(&self) -> bool {
        matches!(self.base(), Ty::List { .. })
    }

    /// How the type is written in a `.mca` file.
    pub fn display(&self) -> String {
        match self {
            Ty::String { format: None } => "string".into(),
            Ty::String { format: Some(f) } => format!("string({})", f.name()),
            Ty::Int => "int".into(),
            Ty::Number => "number".into(),
            Ty::Bool => "bool".into(),
            Ty::Enum { values } => {
                let vs: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
                format!("enum({})", vs.join(", "))
            }
            Ty::List { item } => format!("list<{}>", item.display()),
            Ty::Optional { inner } => format!("{}?", inner.display()),
        }
    }

    /// Checks a JSON value against the type. On mismatch, says where (a JSON pointer relative
    /// to the value) and what was expected.
    pub fn check(&self, value: &Value) -> Result<(), TypeMismatch> {
        self.check_at(value, String::new())
    }

    fn check_at(&self, value: &Value, at: String) -> Result<(), TypeMismatch> {
        let mismatch = |expected: String| {
            Err(TypeMismatch {
                pointer: at.clone(),
                expected,
                found: describe_value(value),
            })
        };
        match (self, value) {
            (Ty::Optional { .. }, Value::Null) => Ok(()),
            (Ty::Optional { inner }, v) => inner.check_at(v, at),
            (Ty::String { format }, Value::String(s)) => match format {
                Some(f) if !f.matches(s) => mismatch(f.example().to_string()),
                _ => Ok(()),
            },
            (Ty::Int, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
            (Ty::Int, Value::Number(n)) if n.as_f64().is_some_and(is_integral) => Ok(()),
            (Ty::Number, Value::Number(_)) => Ok(()),
            (Ty::Bool, Value::Bool(_)) => Ok(()),
            (Ty::Enum { values }, Value::String(s)) if values.iter().any(|v| v == s) => Ok(()),
            (Ty::List { item }, Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    item.check_at(v, format!("{at}/{i}"))?;
                }
                Ok(())
            }
            (Ty::Enum { values }, _) => {
                let vs: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
                mismatch(format!("one of {}", vs.join(", ")))
            }
            (ty, _) => mismatch(ty.expectation()),
        }
    }

    fn expectation(&self) -> String {
        match self {
            Ty::String { .. } => "a string".into(),
            Ty::Int => "an integer".into(),
            Ty::Number => "a number".into(),
            Ty::Bool => "true or false".into(),
            Ty::Enum { .. } => "one of the enum's values".into(),
            Ty::List { item } => format!("a list of {}", item.display()),
            Ty::Optional { inner } => format!("{} or null", inner.expectation()),
        }
    }
}

fn is_integral(f: f64) -> bool {
    f.fract() == 0.0 && f.abs() < 9.0e15
}

/// Describes a JSON value in a few words, never echoing long content.
pub fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMismatch {
    /// JSON pointer inside the checked value ("" for the value itself).
    pub pointer: String,
    pub expected: String,
    pub found: String,
}

impl std::fmt::Display for TypeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "expected {}, found {}", self.expected, self.found)
        } else {
            write!(
                f,
                "at {}: expected {}, found {}",
                self.pointer, self.expected, self.found
            )
        }
    }
}

/// What a reference points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    Input,
    Env,
    Secret,
    Call,
    Output,
    /// `step.NAME.FIELD`: the `Ref::name` is `NAME.FIELD`.
    Step,
}

impl Namespace {
    pub fn name(self) -> &'static str {
        match self {
            Namespace::Input => "input",
            Namespace::Env => "env",
            Namespace::Secret => "secret",
            Namespace::Call => "call",
            Namespace::Output => "output",
            Namespace::Step => "step",
        }
    }
}

/// `input.X`, `env.X`, `secret.X`, `call.id`, `call.from`, `output.X`, `step.S.X` (name `S.X`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ref {
    pub ns: Namespace,
    pub name: String,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.ns.name(), self.name)
    }
}

/// A string with `{expr}` holes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Text(String),
    Ref(Ref),
}

impl Template {
    pub fn refs(&self) -> impl Iterator<Item = &Ref> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Text(_) => None,
        })
    }
}

/// A value computed per call: a literal, a single reference (keeps the referenced value's
/// type) or a string template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    Literal(Value),
    Ref(Ref),
    Template(Template),
}

impl Expr {
    pub fn refs(&self) -> Vec<&Ref> {
        match self {
            Expr::Literal(_) => Vec::new(),
            Expr::Ref(r) => vec![r],
            Expr::Template(t) => t.refs().collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    GET,
    HEAD,
    POST,
    PUT,
    PATCH,
    DELETE,
    OPTIONS,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::OPTIONS => "OPTIONS",
        }
    }

    pub fn from_name(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// RFC 9110 idempotent methods.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::POST | Method::PATCH)
    }

    /// RFC 9110 safe (read-only) methods.
    pub fn is_safe(self) -> bool {
        matches!(self, Method::GET | Method::HEAD | Method::OPTIONS)
    }
}

/// Where a reference stands in the URL template; decides its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UrlContext {
    /// Scheme, host and port: only `env` references, inserted verbatim.
    Origin,
    /// A path segment: percent-encoded, a `/` never adds a segment.
    Path,
    /// The query string: query-encoded.
    Query,
    /// The fragment (after `#`): percent-encoded.
    Fragment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UrlPart {
    Text(String),
    Ref { r#ref: Ref, at: UrlContext },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlTemplate {
    pub parts: Vec<UrlPart>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub value: Expr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Auth {
    Bearer {
        token: Expr,
    },
    Basic {
        user: Expr,
        password: Expr,
    },
    Header {
        name: String,
        value: Expr,
    },
    Query {
        name: String,
        value: Expr,
    },
    /// OAuth2 client credentials grant (RFC 6749 §4.4).
    Oauth2 {
        token_url: Expr,
        client_id: Expr,
        client_secret: Expr,
        scope: Option<Expr>,
    },
}

/// A JSON body whose leaves may be references or templates; built as a JSON value per call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonTemplate {
    Literal(Value),
    Ref(Ref),
    Template(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Json { template: JsonTemplate },
    Form { fields: Vec<Param> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// Attempts after the first one.
    pub attempts: u32,
    /// Base delay of the capped exponential backoff.
    pub backoff_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub method: Method,
    pub url: UrlTemplate,
    pub query: Vec<Param>,
    pub headers: Vec<Param>,
    pub auth: Option<Auth>,
    pub body: Option<Body>,
    pub idempotency_key: Option<Expr>,
    /// The whole time the caller waits, every retry and backoff included.
    pub timeout_ms: u64,
    /// Bound on one attempt; `None` means the remaining deadline.
    pub per_try_ms: Option<u64>,
    pub retry: Retry,
    pub max_response_bytes: u64,
    /// Declared `read_only` (a POST that only reads, such as a search endpoint).
    pub read_only: bool,
}

impl Request {
    /// May this request be sent more than once for one call?
    pub fn retryable(&self) -> bool {
        self.method.is_idempotent() || self.read_only || self.idempotency_key.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingKind {
    /// The node(s) the path selects.
    Path,
    /// `exists(path)`: true when the path selects at least one node.
    Exists,
    /// `count(path)`: how many nodes the path selects.
    Count,
    /// `first(path)`: the first selected node, if any.
    First,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    pub kind: MappingKind,
    /// RFC 9535 JSONPath, parsed once by the runtime at load.
    pub path: String,
    /// The path selects at most one node (RFC 9535 singular query).
    pub singular: bool,
    /// `?? default`: used when the path selects nothing (or null).
    pub default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: Ty,
    pub source: Source,
    /// The output is null when this does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Term>,
}

impl Output {
    /// The JSONPath mapping, for an output mapped from a response.
    pub fn mapping(&self) -> Option<&Mapping> {
        match &self.source {
            Source::Path(m) => Some(m),
            Source::Value { .. } => None,
        }
    }
}

/// Where an output's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A JSONPath into the response (single-request actions and steps).
    Path(Mapping),
    /// An expression over inputs and step values (actions with steps); `default` replaces null.
    Value { term: Term, default: Option<Value> },
}

/// Output values and speech used instead of the mapping (`on STATUS`, `fallback`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Assigned outputs; unassigned optional outputs are null.
    pub values: Vec<(String, Value)>,
    pub say: Option<Template>,
}

/// An inclusive range of HTTP statuses: `404` is 404..=404, `4xx` is 400..=499.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRange {
    pub from: u16,
    pub to: u16,
}

impl StatusRange {
    pub fn contains(&self, status: u16) -> bool {
        (self.from..=self.to).contains(&status)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusHandler {
    pub statuses: Vec<StatusRange>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheScope {
    /// Entries belong to one call (`X-Call-Id`) and are dropped when it ends.
    Call,
    /// Entries are shared by all calls.
    Global,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cache {
    pub ttl_ms: u64,
    /// The inputs that make up the key (besides the action name and, for `call`, the call id).
    pub key: Vec<String>,
    pub scope: CacheScope,
    pub stale_if_error_ms: Option<u64>,
}

/// Why an action did not produce mapped outputs. Also the codes `expect error` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The inputs failed their declared types (never reaches the upstream).
    InvalidInput,
    Timeout,
    Connect,
    UpstreamStatus,
    TooLarge,
    /// The upstream answered something that is not JSON.
    InvalidResponse,
    Mapping,
    CircuitOpen,
    /// The SSRF guard or the scheme policy refused the upstream address.
    Blocked,
    /// A rendered value could not be placed (for example a header with a line break).
    InvalidRequest,
    /// A deferred write could not be recorded in the store, so the action did not promise it.
    Store,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::InvalidInput,
        Reason::Timeout,
        Reason::Connect,
        Reason::UpstreamStatus,
        Reason::TooLarge,
        Reason::InvalidResponse,
        Reason::Mapping,
        Reason::CircuitOpen,
        Reason::Blocked,
        Reason::InvalidRequest,
        Reason::Store,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidInput => "invalid_input",
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::UpstreamStatus => "upstream_status",
            Reason::TooLarge => "too_large",
            Reason::InvalidResponse => "invalid_response",
            Reason::Mapping => "mapping",
            Reason::CircuitOpen => "circuit_open",
            Reason::Blocked => "blocked",
            Reason::InvalidRequest => "invalid_request",
            Reason::Store => "store",
        }
    }

    pub fn from_name(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Test {
    pub name: String,
    pub location: Location,
    /// Inputs as given (may be invalid on purpose when the test expects `invalid_input`).
    pub inputs: serde_json::Map<String, Value>,
    /// `env NAME = "..."` and `secret NAME = "..."` set for this test; others get placeholders.
    pub env: Vec<(String, String)>,
    pub secrets: Vec<(String, String)>,
    pub call_id: Option<String>,
    pub call_from: Option<String>,
    /// Answers for successive upstream requests; the last one repeats.
    pub upstream: Vec<UpstreamStub>,
    /// Answers for the requests of one step (`upstream STEP ...`), used before `upstream`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_upstream: Vec<(String, Vec<UpstreamStub>)>,
    pub expectations: Vec<Expectation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpstreamStub {
    Respond {
        status: u16,
        body: Option<Value>,
        headers: Vec<(String, String)>,
    },
    /// Never answers.
    Timeout,
    /// Resets the connection.
    Reset,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    pub location: Location,
    #[serde(flatten)]
    pub kind: ExpectationKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExpectationKind {
    /// Status ok and the listed outputs equal.
    Outputs {
        values: Vec<(String, Value)>,
    },
    /// Status fallback (or an `on` outcome) and the listed outputs equal.
    Fallback {
        values: Vec<(String, Value)>,
    },
    Error {
        reason: Reason,
    },
    /// The (first) upstream request (of one step, when `step` is set): method, path with
    /// query, and optional headers and body.
    Request {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        method: Method,
        path: String,
        headers: Vec<(String, String)>,
        body: Option<Value>,
    },
    Say {
        text: String,
    },
}
