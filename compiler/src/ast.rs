//! The syntax tree of one `.mca` file. Every node keeps its byte span in the file, so every
//! diagnostic, hover and rename can point at exactly what the user wrote.

use serde_json::Number;

/// A byte range `start..end` in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    pub fn contains(self, offset: usize) -> bool {
        self.start <= offset && offset <= self.end
    }

    pub fn len(self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A string literal as written: `raw` is the text between the quotes, escapes not yet applied.
/// Whether `{...}` in it is a template hole depends on where it stands (see `check`).
#[derive(Debug, Clone, PartialEq)]
pub struct StrLit {
    pub raw: String,
    /// Including the quotes.
    pub span: Span,
}

impl StrLit {
    /// Byte offset in the file of the first character inside the quotes.
    pub fn content_start(&self) -> usize {
        self.span.start + 1
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: Ident,
    pub keyword: Span,
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Description(Description),
    Input(InputDecl),
    Request(Request),
    Outputs(Outputs),
    Say(Say),
    OnStatus(OnStatus),
    Fallback(Fallback),
    Cache(Cache),
    Invalidates(Invalidates),
    Messages(Messages),
    Step(Step),
    /// `timeout 4s` at the action level: the deadline of an action with steps.
    Timeout(Duration, Span),
    FollowUp(FollowUp),
    Test(Test),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Description(d) => d.span,
            Item::Input(i) => i.span,
            Item::Request(r) => r.span,
            Item::Outputs(o) => o.span,
            Item::Say(s) => s.span,
            Item::OnStatus(o) => o.span,
            Item::Fallback(f) => f.span,
            Item::Cache(c) => c.span,
            Item::Invalidates(i) => i.span,
            Item::Messages(m) => m.span,
            Item::Step(s) => s.span,
            Item::Timeout(_, s) => *s,
            Item::FollowUp(f) => f.span,
            Item::Test(t) => t.span,
        }
    }
}

/// `step NAME [deferred [within D]] [when COND] { request ... output { } on ... fallback { } }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub keyword: Span,
    pub name: Ident,
    pub deferred: Option<Deferred>,
    pub when: Option<When>,
    /// `request`, `output`, `on` and `fallback` items (the grammar allows no others).
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deferred {
    /// How long delivery is tried (`within 6h`).
    pub within: Option<Duration>,
    pub span: Span,
}

/// `when CONDITION`.
#[derive(Debug, Clone, PartialEq)]
pub struct When {
    pub cond: Cond,
    pub span: Span,
}

/// `follow_up [when CONDITION]`: the action runs when the call ends.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub when: Option<When>,
    pub span: Span,
}

/// Comparison operators are the IR's own (one enum, one spelling table).
pub use crate::ir::CmpOp;

/// An expression of the condition language: `or`, `and`, `not`, comparisons, operands.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Or(Vec<Cond>, Span),
    And(Vec<Cond>, Span),
    Not(Box<Cond>, Span),
    Compare {
        op: CmpOp,
        op_span: Span,
        left: Box<Cond>,
        right: Box<Cond>,
        span: Span,
    },
    /// A reference or a literal.
    Operand(Expr),
}

impl Cond {
    pub fn span(&self) -> Span {
        match self {
            Cond::Or(_, s) | Cond::And(_, s) | Cond::Not(_, s) => *s,
            Cond::Compare { span, .. } => *span,
            Cond::Operand(e) => e.span(),
        }
    }

    /// Every reference in the expression, in source order.
    pub fn refs(&self) -> Vec<&RefExpr> {
        let mut out = Vec::new();
        self.collect_refs(&mut out);
        out
    }

    fn collect_refs<'a>(&'a self, out: &mut Vec<&'a RefExpr>) {
        match self {
            Cond::Or(cs, _) | Cond::And(cs, _) => cs.iter().for_each(|c| c.collect_refs(out)),
            Cond::Not(c, _) => c.collect_refs(out),
            Cond::Compare { left, right, .. } => {
                left.collect_refs(out);
                right.collect_refs(out);
            }
            Cond::Operand(Expr::Ref(r)) => out.push(r),
            Cond::Operand(_) => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    pub text: StrLit,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    pub default: Option<Value>,
    pub doc: Option<StrLit>,
    pub span: Span,
}

/// `string`, `string(phone)`, `enum("a", "b")`, `list<T>`, `T?`, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    pub name: Ident,
    pub args: Option<Vec<TypeArg>>,
    pub args_span: Option<Span>,
    pub item: Option<Box<TypeExpr>>,
    pub optional: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeArg {
    Str(StrLit),
    Ident(Ident),
}

impl TypeArg {
    pub fn span(&self) -> Span {
        match self {
            TypeArg::Str(s) => s.span,
            TypeArg::Ident(i) => i.span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: Ident,
    pub url: StrLit,
    pub items: Vec<RequestItem>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RequestItem {
    Query(Param),
    Header(Param),
    Auth(Auth),
    Body(Value, Span),
    Form(Value, Span),
    IdempotencyKey(Expr, Span),
    Timeout(Duration, Span),
    PerTry(Duration, Span),
    Retry {
        count: IntLit,
        backoff: Option<Duration>,
        span: Span,
    },
    MaxResponse(Size, Span),
    ReadOnly(Span),
}

impl RequestItem {
    pub fn span(&self) -> Span {
        match self {
            RequestItem::Query(p) | RequestItem::Header(p) => p.span,
            RequestItem::Auth(a) => a.span,
            RequestItem::Body(_, s)
            | RequestItem::Form(_, s)
            | RequestItem::IdempotencyKey(_, s)
            | RequestItem::Timeout(_, s)
            | RequestItem::PerTry(_, s)
            | RequestItem::MaxResponse(_, s)
            | RequestItem::ReadOnly(s) => *s,
            RequestItem::Retry { span, .. } => *span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: StrLit,
    pub value: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    pub kind: AuthKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuthKind {
    Bearer(Expr),
    Basic(Expr, Expr),
    Header(StrLit, Expr),
    Query(StrLit, Expr),
    OAuth2(Vec<(Ident, Expr)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Duration {
    /// `None` when the number does not fit.
    pub ms: Option<u64>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Size {
    pub bytes: Option<u64>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntLit {
    pub value: Option<u64>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    pub fields: Vec<OutputField>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputField {
    pub name: Ident,
    pub ty: TypeExpr,
    pub mapping: Mapping,
    /// `when CONDITION`: the output is null when the condition does not hold.
    pub when: Option<When>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub source: Source,
    pub default: Option<Value>,
    pub span: Span,
}

/// Where an output's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A JSONPath into the response, optionally in `exists`, `count` or `first` (checked later).
    Path { func: Option<Ident>, path: PathLit },
    /// An expression over step values and inputs (actions with steps).
    Expr(Cond),
}

/// A JSONPath as written, starting at `$`.
#[derive(Debug, Clone, PartialEq)]
pub struct PathLit {
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Say {
    pub text: StrLit,
    pub when: Option<When>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OnStatus {
    pub statuses: Vec<StatusLit>,
    pub items: Vec<OutcomeItem>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusLit {
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub items: Vec<OutcomeItem>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutcomeItem {
    Say(Say),
    Assign(Assign),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    pub name: Ident,
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cache {
    pub items: Vec<CacheItem>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CacheItem {
    Ttl(Duration, Span),
    Key(Vec<Expr>, Span),
    Scope(Ident, Span),
    StaleIfError(Duration, Span),
}

/// What the voice platform says while the caller waits for the action.
#[derive(Debug, Clone, PartialEq)]
pub struct Messages {
    pub items: Vec<Message>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Said when the action starts.
    Start(StrLit, Span),
    /// Said when the action has not answered after the duration.
    Delayed(Duration, StrLit, Span),
    /// Said when the platform cannot reach the action at all.
    Failed(StrLit, Span),
}

impl Message {
    pub fn span(&self) -> Span {
        match self {
            Message::Start(_, s) | Message::Delayed(_, _, s) | Message::Failed(_, s) => *s,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invalidates {
    pub targets: Vec<Ident>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    pub name: StrLit,
    pub items: Vec<TestItem>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TestItem {
    Input(Value, Span),
    /// An upstream stub, for one step (`upstream contact 200 ...`) or for every request.
    Upstream(Option<Ident>, Upstream, Span),
    Env(Ident, StrLit, Span),
    Secret(Ident, StrLit, Span),
    Call(Value, Span),
    ExpectRequest {
        step: Option<Ident>,
        method: Ident,
        path: StrLit,
        headers: Vec<Param>,
        body: Option<Value>,
        span: Span,
    },
    ExpectFallback(Option<Value>, Span),
    ExpectError(Ident, Span),
    ExpectSay(StrLit, Span),
    ExpectOutputs(Value, Span),
}

impl TestItem {
    pub fn span(&self) -> Span {
        match self {
            TestItem::Input(_, s)
            | TestItem::Upstream(_, _, s)
            | TestItem::Env(_, _, s)
            | TestItem::Secret(_, _, s)
            | TestItem::Call(_, s)
            | TestItem::ExpectFallback(_, s)
            | TestItem::ExpectError(_, s)
            | TestItem::ExpectSay(_, s)
            | TestItem::ExpectOutputs(_, s) => *s,
            TestItem::ExpectRequest { span, .. } => *span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Upstream {
    Timeout,
    Reset,
    Respond {
        status: StatusLit,
        headers: Option<Value>,
        body: Option<Value>,
    },
}

/// `input.x`, `env.NAME`, `secret.NAME`, `call.id`, `output.x`: a dotted name as written.
#[derive(Debug, Clone, PartialEq)]
pub struct RefExpr {
    pub segments: Vec<Ident>,
    pub span: Span,
}

/// A scalar expression: a reference or a literal (strings are templates where allowed).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Ref(RefExpr),
    Str(StrLit),
    Number(Number, Span),
    Bool(bool, Span),
    Null(Span),
}

impl Expr {
    pub fn span(&self) -> Span {
        match self {
            Expr::Ref(r) => r.span,
            Expr::Str(s) => s.span,
            Expr::Number(_, s) | Expr::Bool(_, s) | Expr::Null(s) => *s,
        }
    }
}

/// A JSON-like value; may hold references where the context allows them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Object(Vec<Member>, Span),
    Array(Vec<Value>, Span),
    Scalar(Expr),
}

impl Value {
    pub fn span(&self) -> Span {
        match self {
            Value::Object(_, s) | Value::Array(_, s) => *s,
            Value::Scalar(e) => e.span(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub key: Key,
    pub value: Value,
    pub span: Span,
}

/// An object key: a bare name or a string.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Ident(Ident),
    Str(StrLit),
}

impl Key {
    pub fn span(&self) -> Span {
        match self {
            Key::Ident(i) => i.span,
            Key::Str(s) => s.span,
        }
    }
}
