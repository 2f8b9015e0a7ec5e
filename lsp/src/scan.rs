//! A tolerant reading of any text, valid or half-typed: the tokens of the compiler's lexer, each
//! classified by where it stands (keyword, input declared or referred to, type, method, ...), the
//! outline of each action, and the context at a cursor.
//!
//! The compiler's tree holds only the actions that parsed, and the action being edited usually
//! does not parse. This scanner follows the grammar statement by statement, never fails, and
//! recovers at every line start and closing brace, so every feature of the server works on what
//! the user is typing. A test checks it against the compiler's tree on every valid file.

use mca_compiler::ast::Span;
use mca_compiler::format::{lex, Token, TokenKind};

/// What a block or group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Top,
    Action,
    /// `step NAME ... { request ... output { } on ... fallback { } }`
    Step,
    Request,
    OAuth2,
    Output,
    /// `on STATUS { ... }` and `fallback { ... }`.
    Outcome,
    Cache,
    /// `messages { start "..." delayed 2s "..." failed "..." }`
    Messages,
    Test,
    ExpectRequest,
    Value(ValueRole),
    /// `string(...)` (formats) or `enum(...)` (values).
    TypeArgs {
        string: bool,
    },
    TypeItem,
    MappingArgs,
    /// `( ... )` in a condition.
    Cond,
    Other,
}

impl Frame {
    fn is_block(self) -> bool {
        matches!(
            self,
            Frame::Top
                | Frame::Action
                | Frame::Step
                | Frame::Request
                | Frame::OAuth2
                | Frame::Output
                | Frame::Outcome
                | Frame::Cache
                | Frame::Messages
                | Frame::Test
                | Frame::ExpectRequest
        )
    }
}

/// What the keys and strings of a value mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRole {
    /// `input { ... }` of a test: top-level keys are inputs.
    TestInput,
    /// `expect { ... }`, `expect fallback { ... }`: top-level keys are outputs.
    ExpectOutputs,
    /// Request bodies: strings are templates.
    Template,
    Plain,
}

impl ValueRole {
    fn nested(self) -> ValueRole {
        match self {
            ValueRole::Template => ValueRole::Template,
            _ => ValueRole::Plain,
        }
    }
}

/// Item keywords that start a statement in each block.
pub fn item_keywords(frame: Frame) -> &'static [&'static str] {
    match frame {
        Frame::Top => &["action"],
        Frame::Action => &mca_compiler::syntax::ACTION_ITEMS,
        Frame::Step => &STEP_ITEMS,
        Frame::Request => &[
            "query",
            "header",
            "auth",
            "body",
            "form",
            "idempotency_key",
            "timeout",
            "per_try",
            "retry",
            "max_response",
            "read_only",
        ],
        Frame::OAuth2 => &["token_url", "client_id", "client_secret", "scope"],
        Frame::Outcome => &["say"],
        Frame::Cache => &["ttl", "key", "scope", "stale_if_error"],
        Frame::Messages => &["start", "delayed", "failed"],
        Frame::Test => &["input", "upstream", "env", "secret", "call", "expect"],
        Frame::ExpectRequest => &["header", "body"],
        _ => &[],
    }
}

/// Item keywords inside a `step { }` block.
pub const STEP_ITEMS: [&str; 4] = ["request", "output", "on", "fallback"];

/// Words of the condition language (`when COND`).
pub const CONDITION_WORDS: &[&str] = &["and", "or", "not"];

/// Every keyword of the language (none is reserved: each may also be a name).
pub const KEYWORDS: &[&str] = &[
    "action",
    "description",
    "input",
    "request",
    "query",
    "header",
    "headers",
    "auth",
    "bearer",
    "basic",
    "oauth2",
    "token_url",
    "client_id",
    "client_secret",
    "scope",
    "body",
    "form",
    "idempotency_key",
    "timeout",
    "per_try",
    "retry",
    "backoff",
    "max_response",
    "read_only",
    "output",
    "say",
    "on",
    "fallback",
    "cache",
    "ttl",
    "key",
    "stale_if_error",
    "invalidates",
    "messages",
    "start",
    "delayed",
    "failed",
    "test",
    "upstream",
    "reset",
    "env",
    "secret",
    "call",
    "expect",
    "error",
    "step",
    "deferred",
    "within",
    "when",
    "and",
    "or",
    "not",
    "follow_up",
];

pub const NAMESPACES: &[&str] = &["input", "output", "env", "secret", "call", "step"];

/// A named thing that can be declared and referred to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sym {
    Input(String),
    Output(String),
    Action(String),
    Env(String),
    Secret(String),
    Call(String),
    /// A step of an action (`step NAME`, `step.NAME`, `upstream NAME`).
    Step(String),
    /// A value of a step (a field of its `output { }`, `step.STEP.NAME`).
    StepValue {
        step: String,
        name: String,
    },
}

impl Sym {
    pub fn name(&self) -> &str {
        match self {
            Sym::Input(n)
            | Sym::Output(n)
            | Sym::Action(n)
            | Sym::Env(n)
            | Sym::Secret(n)
            | Sym::Call(n)
            | Sym::Step(n) => n,
            Sym::StepValue { name, .. } => name,
        }
    }

    /// Inputs, outputs and steps belong to one action; the others to the project.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            Sym::Input(_) | Sym::Output(_) | Sym::Step(_) | Sym::StepValue { .. }
        )
    }
}

/// What a piece of text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Keyword,
    Comment,
    Str,
    Number,
    /// An HTTP status in `on` or `upstream`.
    Status,
    Path,
    Operator,
    TypeName,
    Format,
    EnumValue,
    Method,
    MappingFn,
    ErrorCode,
    /// `true`, `false`, `null`, cache scopes.
    Constant,
    /// `input` in `input.x`.
    Namespace,
    /// An object key that names nothing declared.
    Property,
    /// A declaration (`decl`) of, or a reference to, a symbol.
    Sym {
        sym: Sym,
        decl: bool,
    },
}

/// One classified piece of text; marks are sorted and do not overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub span: Span,
    pub kind: Kind,
    /// The action (index in [`Analysis::actions`]) the mark stands in.
    pub action: Option<usize>,
}

/// A declared input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decl {
    pub name: String,
    pub name_span: Span,
    /// The whole declaration.
    pub span: Span,
}

/// One statement of an action (for the outline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub head: String,
    pub head_span: Span,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActionInfo {
    pub name: Option<(String, Span)>,
    pub keyword: Span,
    pub span: Span,
    /// The description string, quotes included.
    pub description: Option<Span>,
    pub inputs: Vec<Decl>,
    pub outputs: Vec<Decl>,
    pub steps: Vec<StepInfo>,
    pub statements: Vec<Stmt>,
}

/// A step of an action: its name (the whole step as the declaration's span) and the fields of
/// its `output { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInfo {
    pub decl: Decl,
    /// The `step` keyword.
    pub keyword: Span,
    pub outputs: Vec<Decl>,
}

impl ActionInfo {
    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(|(n, _)| n.as_str())
    }

    pub fn step(&self, name: &str) -> Option<&StepInfo> {
        self.steps.iter().find(|s| s.decl.name == name)
    }
}

/// Everything the scanner found in one text.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    pub tokens: Vec<Token>,
    pub marks: Vec<Mark>,
    pub actions: Vec<ActionInfo>,
}

impl Analysis {
    /// The mark covering `offset` (a cursor just after a mark counts too).
    pub fn mark_at(&self, offset: usize) -> Option<&Mark> {
        let i = self.marks.partition_point(|m| m.span.end < offset);
        let here = self.marks.get(i).filter(|m| m.span.contains(offset));
        // Between two marks (`x|}`), prefer a name, then the mark starting at the cursor.
        match (here, self.marks.get(i + 1)) {
            (Some(m), Some(n)) if m.span.end == offset && n.span.start == offset => {
                let named = |k: &Kind| matches!(k, Kind::Sym { .. } | Kind::Keyword);
                if named(&m.kind) && !named(&n.kind) {
                    Some(m)
                } else {
                    Some(n)
                }
            }
            (Some(m), _) => Some(m),
            _ => None,
        }
    }

    /// The action whose text holds `offset`.
    pub fn action_at(&self, offset: usize) -> Option<usize> {
        self.actions
            .iter()
            .rposition(|a| a.span.start <= offset && offset <= a.span.end)
    }
}

/// Reads a whole text.
pub fn analyze(text: &str) -> Analysis {
    let tokens = lex(text);
    let mut s = Scanner::new(text, &tokens);
    s.run(tokens.len());
    let (marks, actions) = s.finish();
    Analysis {
        tokens,
        marks,
        actions,
    }
}

/// One element of a statement: a token, a reference, or a nested group (by its opener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub kind: UnitKind,
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Word,
    Ref,
    Str,
    Number,
    Path,
    Punct,
    /// An opened group; the frame it opened.
    Open(Frame),
    Other,
}

/// Where a cursor stands.
#[derive(Debug, Clone)]
pub struct Context {
    /// Enclosing frames, outermost first (always starts with `Top`).
    pub frames: Vec<Frame>,
    /// The statement so far in the innermost frame (before the word at the cursor).
    pub units: Vec<Unit>,
    /// The word at the cursor starts a new statement.
    pub new_statement: bool,
    /// In an object: the cursor stands where a key goes.
    pub at_key: bool,
    /// The action the cursor stands in (index in the analysis of the whole text).
    pub action: Option<usize>,
}

impl Context {
    pub fn frame(&self) -> Frame {
        self.frames.last().copied().unwrap_or(Frame::Top)
    }
}

/// The context of a cursor whose word being typed starts at `word_start` (tokens from there on
/// are not read).
pub fn context_at(text: &str, tokens: &[Token], word_start: usize) -> Context {
    let end = tokens.partition_point(|t| t.span.start < word_start);
    let mut s = Scanner::new(text, tokens);
    s.run(end);
    let gap_start = s.prev_end;
    let newline = text
        .get(gap_start..word_start)
        .is_some_and(|g| g.contains('\n'));
    let st = s.frames.last();
    let frame = st.map_or(Frame::Top, |f| f.frame);
    let new_statement = frame.is_block()
        && st.is_some_and(|f| {
            f.units.is_empty() || f.ended || (newline && !continues(f.units.last()))
        });
    let at_key = st.is_some_and(|f| f.object && f.expect_key);
    let units = if new_statement {
        Vec::new()
    } else {
        st.map(|f| f.units.clone()).unwrap_or_default()
    };
    Context {
        frames: s.frames.iter().map(|f| f.frame).collect(),
        units,
        new_statement,
        at_key,
        action: s.cur_action,
    }
}

fn continues(last: Option<&Unit>) -> bool {
    last.is_some_and(|u| match u.kind {
        UnitKind::Punct => matches!(
            u.text.as_str(),
            ":" | "=" | "," | "??" | "==" | "!=" | "<=" | ">=" | "<" | ">"
        ),
        UnitKind::Word => matches!(u.text.as_str(), "when" | "and" | "or" | "not"),
        _ => false,
    })
}

/// What the current statement of a frame declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeclAt {
    Input(usize),
    Output(usize),
    Step(usize),
    /// (step, field)
    StepOutput(usize, usize),
}

struct FrameState {
    frame: Frame,
    /// The closing bracket expected.
    close: &'static str,
    units: Vec<Unit>,
    /// The statement ended (a nested block closed).
    ended: bool,
    /// Objects: a key is expected next.
    object: bool,
    expect_key: bool,
    /// The declaration the current statement makes.
    decl: Option<DeclAt>,
    /// `Step` frames: the step (index in the action's steps).
    step: Option<usize>,
    /// The statement is in a condition (after `when`, or an output's expression).
    cond: bool,
    /// Index of the current statement in the action's outline.
    stmt: Option<usize>,
    /// Type phase of a declaration: after `:` and before `=` or the doc string.
    in_type: bool,
}

impl FrameState {
    fn new(frame: Frame, close: &'static str) -> FrameState {
        FrameState {
            frame,
            close,
            units: Vec::new(),
            ended: false,
            object: close == "}" && matches!(frame, Frame::Value(_)),
            expect_key: true,
            decl: None,
            step: None,
            cond: false,
            stmt: None,
            in_type: false,
        }
    }
}

struct Scanner<'t> {
    text: &'t str,
    tokens: &'t [Token],
    frames: Vec<FrameState>,
    marks: Vec<Mark>,
    actions: Vec<ActionInfo>,
    cur_action: Option<usize>,
    /// End of the last non-comment token read.
    prev_end: usize,
}

impl<'t> Scanner<'t> {
    fn new(text: &'t str, tokens: &'t [Token]) -> Scanner<'t> {
        Scanner {
            text,
            tokens,
            frames: vec![FrameState::new(Frame::Top, "")],
            marks: Vec::new(),
            actions: Vec::new(),
            cur_action: None,
            prev_end: 0,
        }
    }

    fn finish(mut self) -> (Vec<Mark>, Vec<ActionInfo>) {
        let end = self.prev_end;
        self.end_statement_all(end);
        if let Some(a) = self.cur_action.and_then(|i| self.actions.get_mut(i)) {
            a.span.end = a.span.end.max(end);
        }
        (self.marks, self.actions)
    }

    fn mark(&mut self, span: Span, kind: Kind) {
        if span.is_empty() {
            return;
        }
        // Keep marks sorted and disjoint whatever happens.
        if self.marks.last().is_some_and(|m| m.span.end > span.start) {
            return;
        }
        self.marks.push(Mark {
            span,
            kind,
            action: self.cur_action,
        });
    }

    fn run(&mut self, end: usize) {
        let mut i = 0;
        while i < end {
            let t = self.tokens[i];
            if t.is_comment() {
                self.mark(t.span, Kind::Comment);
                i += 1;
                continue;
            }
            // A reference: word `.` word, with no blanks between.
            if t.kind == TokenKind::Word {
                let dot = self.tokens.get(i + 1).filter(|d| {
                    i + 1 < end && d.is_punct(self.text, ".") && d.span.start == t.span.end
                });
                if let Some(dot) = dot {
                    let mut j = i + 1;
                    let mut last = dot.span.end;
                    let mut segments = vec![t.span];
                    while j < end && self.tokens[j].is_punct(self.text, ".") {
                        let dot_end = self.tokens[j].span.end;
                        let next = self.tokens.get(j + 1).filter(|w| {
                            j + 1 < end && w.kind == TokenKind::Word && w.span.start == dot_end
                        });
                        match next {
                            Some(w) => {
                                segments.push(w.span);
                                last = w.span.end;
                                j += 2;
                                if !self
                                    .tokens
                                    .get(j)
                                    .is_some_and(|d| d.span.start == last && j < end)
                                {
                                    break;
                                }
                            }
                            None => {
                                last = dot_end;
                                j += 1;
                                break;
                            }
                        }
                    }
                    self.reference(Span::new(t.span.start, last.max(dot.span.end)), &segments);
                    i = j;
                    continue;
                }
            }
            self.token(i);
            i += 1;
        }
    }

    fn text_of(&self, span: Span) -> &'t str {
        self.text.get(span.start..span.end).unwrap_or("")
    }

    fn reference(&mut self, span: Span, segments: &[Span]) {
        self.before_unit(span, UnitKind::Ref, "");
        if let Some((&ns, members)) = segments.split_first() {
            self.ref_marks(ns, members);
        }
        let text = self.text_of(span).to_string();
        self.push_unit(UnitKind::Ref, text, span);
        self.value_done();
    }

    /// Marks of `ns.member` and `step.NAME.VALUE` (also inside templates).
    fn ref_marks(&mut self, ns: Span, members: &[Span]) {
        let ns_text = self.text_of(ns);
        if !NAMESPACES.contains(&ns_text) {
            return;
        }
        self.mark(ns, Kind::Namespace);
        if let Some(&m) = members.first() {
            let name = self.text_of(m).to_string();
            let sym = match ns_text {
                "input" => Sym::Input(name),
                "output" => Sym::Output(name),
                "env" => Sym::Env(name),
                "secret" => Sym::Secret(name),
                "step" => Sym::Step(name),
                _ => Sym::Call(name),
            };
            self.mark(m, Kind::Sym { sym, decl: false });
            if let (Some(&v), "step") = (members.get(1), ns_text) {
                let sym = Sym::StepValue {
                    step: self.text_of(m).to_string(),
                    name: self.text_of(v).to_string(),
                };
                self.mark(v, Kind::Sym { sym, decl: false });
            }
        }
    }

    /// Statement bookkeeping before a unit is added to the innermost frame.
    fn before_unit(&mut self, span: Span, kind: UnitKind, text: &str) {
        let gap = self.text.get(self.prev_end..span.start).unwrap_or("");
        let newline = gap.contains('\n');
        let Some(f) = self.frames.last() else {
            return;
        };
        if f.frame.is_block() {
            let prev_keyword = f
                .units
                .last()
                .is_some_and(|u| u.kind == UnitKind::Word && KEYWORDS.contains(&u.text.as_str()));
            let starts = f.units.is_empty()
                || f.ended
                || (newline && !continues(f.units.last()))
                || (kind == UnitKind::Word
                    && item_keywords(f.frame).contains(&text)
                    && !prev_keyword
                    && !continues(f.units.last()));
            if starts && !f.units.is_empty() {
                self.end_statement(self.prev_end);
            }
        }
    }

    fn push_unit(&mut self, kind: UnitKind, text: String, span: Span) {
        self.prev_end = span.end;
        if let Some(f) = self.frames.last_mut() {
            f.units.push(Unit { kind, text, span });
        }
        self.extend_statement(span.end);
    }

    /// Grows the current statement (and its declaration) of every enclosing block to `end`.
    fn extend_statement(&mut self, end: usize) {
        let Some(a) = self.cur_action else {
            return;
        };
        for f in &self.frames {
            if let Some(action) = self.actions.get_mut(a) {
                if let Some(s) = f.stmt.and_then(|s| action.statements.get_mut(s)) {
                    s.span.end = s.span.end.max(end);
                }
                let d = match f.decl {
                    Some(DeclAt::Input(i)) => action.inputs.get_mut(i),
                    Some(DeclAt::Output(i)) => action.outputs.get_mut(i),
                    Some(DeclAt::Step(i)) => action.steps.get_mut(i).map(|s| &mut s.decl),
                    Some(DeclAt::StepOutput(s, i)) => {
                        action.steps.get_mut(s).and_then(|s| s.outputs.get_mut(i))
                    }
                    None => None,
                };
                if let Some(d) = d {
                    d.span.end = d.span.end.max(end);
                }
            }
        }
    }

    fn end_statement(&mut self, _end: usize) {
        if let Some(f) = self.frames.last_mut() {
            f.units.clear();
            f.ended = false;
            f.decl = None;
            f.cond = false;
            f.stmt = None;
            f.in_type = false;
        }
    }

    fn end_statement_all(&mut self, end: usize) {
        while self.frames.len() > 1 {
            self.close_frame(end);
        }
    }

    /// After a value in an object: the next thing is `,` or `}`.
    fn value_done(&mut self) {
        if let Some(f) = self.frames.last_mut() {
            if f.object {
                f.expect_key = false;
            }
        }
    }

    fn close_frame(&mut self, end: usize) {
        let Some(f) = self.frames.pop() else {
            return;
        };
        if f.frame == Frame::Action {
            if let Some(a) = self.cur_action.and_then(|i| self.actions.get_mut(i)) {
                a.span.end = end;
            }
        }
        if let Some(parent) = self.frames.last_mut() {
            if f.frame.is_block() {
                parent.ended = true;
            }
        }
        self.extend_statement(end);
        self.value_done();
    }

    fn token(&mut self, i: usize) {
        let t = self.tokens[i];
        let text = t.text(self.text);
        // `<` and `>` compare in a condition.
        let compares = t.kind == TokenKind::Punct
            && matches!(text, "<" | ">")
            && self
                .frames
                .last()
                .is_some_and(|f| (f.cond || f.frame == Frame::Cond) && !f.in_type);
        // Closers.
        if t.kind == TokenKind::Punct && matches!(text, "}" | "]" | ")" | ">") && !compares {
            if let Some(pos) = self.frames.iter().rposition(|f| f.close == text) {
                while self.frames.len() > pos + 1 {
                    self.close_frame(t.span.start);
                }
                self.prev_end = t.span.end;
                self.close_frame(t.span.end);
            } else {
                self.prev_end = t.span.end;
            }
            return;
        }
        // An `action` in the first column starts a new action whatever came before, as in the
        // compiler (an action missing its `}` does not swallow the next).
        if t.kind == TokenKind::Word
            && text == "action"
            && self.frames.len() > 1
            && (t.span.start == 0 || self.text.as_bytes().get(t.span.start - 1) == Some(&b'\n'))
        {
            let end = self.prev_end;
            while self.frames.len() > 1 {
                self.close_frame(end);
            }
            if let Some(f) = self.frames.last_mut() {
                f.units.clear();
                f.ended = false;
            }
        }
        let kind = match t.kind {
            TokenKind::Word => UnitKind::Word,
            TokenKind::Str => UnitKind::Str,
            TokenKind::Number => UnitKind::Number,
            TokenKind::Path => UnitKind::Path,
            TokenKind::Punct | TokenKind::Op => UnitKind::Punct,
            _ => UnitKind::Other,
        };
        self.before_unit(t.span, kind, text);
        // Object bookkeeping.
        let (is_key, frame) = {
            let Some(f) = self.frames.last_mut() else {
                return;
            };
            let mut is_key = false;
            if f.object {
                match text {
                    "," if t.kind == TokenKind::Punct => f.expect_key = true,
                    ":" if t.kind == TokenKind::Punct => f.expect_key = false,
                    _ if f.expect_key && matches!(kind, UnitKind::Word | UnitKind::Str) => {
                        is_key = true;
                    }
                    _ => {}
                }
            }
            (is_key, f.frame)
        };
        let units_before = self.frames.last().map_or(0, |f| f.units.len());
        // `<` brackets a list's item type only in a type.
        let type_bracket = self.frames.last().is_some_and(|f| f.in_type)
            || matches!(frame, Frame::TypeItem | Frame::TypeArgs { .. });
        let opens = t.kind == TokenKind::Punct
            && matches!(text, "{" | "[" | "(" | "<")
            && (text != "<" || type_bracket)
            && !compares;
        if opens {
            let new = self.opened_frame(frame, text);
            self.push_unit(UnitKind::Open(new), text.to_string(), t.span);
            let close = match text {
                "{" => "}",
                "[" => "]",
                "(" => ")",
                _ => ">",
            };
            let step = match self.frames.last().and_then(|f| f.decl) {
                Some(DeclAt::Step(s)) if new == Frame::Step => Some(s),
                _ => None,
            };
            let mut st = FrameState::new(new, close);
            st.step = step;
            self.frames.push(st);
            return;
        }
        if is_key {
            self.key(t, frame);
        } else {
            self.classify(t, frame, units_before);
        }
        self.push_unit(kind, text.to_string(), t.span);
        if !is_key && matches!(kind, UnitKind::Str | UnitKind::Number | UnitKind::Word) {
            self.value_done();
        }
    }

    /// The kind of group a bracket opens, from the statement it stands in.
    fn opened_frame(&self, frame: Frame, bracket: &str) -> Frame {
        let units = self
            .frames
            .last()
            .map(|f| f.units.as_slice())
            .unwrap_or(&[]);
        let head = units.first().map(|u| u.text.as_str()).unwrap_or("");
        let word = |k: usize| units.get(k).map(|u| u.text.as_str()).unwrap_or("");
        let last = units.last().map(|u| u.text.as_str()).unwrap_or("");
        match bracket {
            "(" => {
                let cond = self.frames.last().is_some_and(|f| f.cond) || frame == Frame::Cond;
                let call = units
                    .last()
                    .is_some_and(|u| u.kind == UnitKind::Word && !CONDITION_WORDS.contains(&last));
                return match (frame, self.frames.last().is_some_and(|f| f.in_type)) {
                    (_, true) | (Frame::TypeItem, _) => Frame::TypeArgs {
                        string: last == "string",
                    },
                    (Frame::Output, false) if call => Frame::MappingArgs,
                    _ if cond => Frame::Cond,
                    (Frame::Output, false) => Frame::MappingArgs,
                    _ => Frame::Other,
                };
            }
            "<" => return Frame::TypeItem,
            "[" => {
                return match frame {
                    Frame::Value(r) => Frame::Value(r.nested()),
                    Frame::Request | Frame::OAuth2 => Frame::Value(ValueRole::Template),
                    _ => Frame::Value(ValueRole::Plain),
                };
            }
            _ => {}
        }
        match frame {
            Frame::Top if head == "action" => Frame::Action,
            Frame::Action | Frame::Step => match head {
                "request" => Frame::Request,
                "output" => Frame::Output,
                "on" | "fallback" => Frame::Outcome,
                "step" if frame == Frame::Action => Frame::Step,
                _ if frame == Frame::Step => Frame::Other,
                "cache" => Frame::Cache,
                "messages" => Frame::Messages,
                "test" => Frame::Test,
                "input" => Frame::Value(ValueRole::Plain),
                _ => Frame::Other,
            },
            Frame::Request if head == "auth" && last == "oauth2" => Frame::OAuth2,
            Frame::Request | Frame::OAuth2 => Frame::Value(ValueRole::Template),
            Frame::Test => match (head, word(1)) {
                ("input", _) => Frame::Value(ValueRole::TestInput),
                ("expect", "request") => Frame::ExpectRequest,
                ("expect", "fallback") => Frame::Value(ValueRole::ExpectOutputs),
                ("expect", _) if units.len() == 1 => Frame::Value(ValueRole::ExpectOutputs),
                _ => Frame::Value(ValueRole::Plain),
            },
            Frame::Value(r) => Frame::Value(r.nested()),
            Frame::Top | Frame::Other => Frame::Other,
            _ => Frame::Value(ValueRole::Plain),
        }
    }

    /// An object key.
    fn key(&mut self, t: Token, frame: Frame) {
        let role = match frame {
            Frame::Value(r) => r,
            _ => ValueRole::Plain,
        };
        // Only the top-level keys of `input {}` and `expect {}` name inputs and outputs.
        let top_level = self.frames.len() >= 2
            && matches!(self.frames[self.frames.len() - 2].frame, Frame::Test);
        let (span, name) = match t.kind {
            TokenKind::Str => {
                let inner = Span::new(
                    (t.span.start + 1).min(t.span.end),
                    t.span.end.saturating_sub(1).max(t.span.start + 1),
                );
                (inner, self.text_of(inner).to_string())
            }
            _ => (t.span, self.text_of(t.span).to_string()),
        };
        let sym = match role {
            ValueRole::TestInput if top_level => Some(Sym::Input(name)),
            ValueRole::ExpectOutputs if top_level => Some(Sym::Output(name)),
            _ => None,
        };
        match sym {
            Some(sym) if is_name(sym.name()) => {
                if t.kind == TokenKind::Str {
                    self.mark(Span::new(t.span.start, span.start), Kind::Str);
                    self.mark(span, Kind::Sym { sym, decl: false });
                    self.mark(Span::new(span.end, t.span.end), Kind::Str);
                } else {
                    self.mark(span, Kind::Sym { sym, decl: false });
                }
            }
            _ => self.mark(t.span, Kind::Property),
        }
    }

    /// Classifies one token by the statement it stands in.
    fn classify(&mut self, t: Token, frame: Frame, n: usize) {
        let text = t.text(self.text);
        let (head, u1, last, u1_word) = {
            let units = self
                .frames
                .last()
                .map(|f| f.units.as_slice())
                .unwrap_or(&[]);
            (
                units.first().map(|u| u.text.clone()).unwrap_or_default(),
                units.get(1).map(|u| u.text.clone()).unwrap_or_default(),
                units.last().map(|u| u.text.clone()).unwrap_or_default(),
                units.get(1).is_some_and(|u| u.kind == UnitKind::Word),
            )
        };
        let word = t.kind == TokenKind::Word;
        let is_str = t.kind == TokenKind::Str;
        let in_type = self.frames.last().is_some_and(|f| f.in_type);
        let in_cond =
            !in_type && self.frames.last().is_some_and(|f| f.cond) || frame == Frame::Cond;
        // Generic marks first; specific ones below replace them.
        let generic = match t.kind {
            TokenKind::Str => Some(Kind::Str),
            TokenKind::Number => Some(Kind::Number),
            TokenKind::Path => Some(Kind::Path),
            TokenKind::Word if matches!(text, "true" | "false" | "null") => Some(Kind::Constant),
            TokenKind::Punct if matches!(text, "=" | "??" | "?") => Some(Kind::Operator),
            TokenKind::Punct if in_cond && matches!(text, "<" | ">") => Some(Kind::Operator),
            TokenKind::Op => Some(Kind::Operator),
            _ => None,
        };
        // Statement heads.
        if n == 0 && word && frame.is_block() {
            if item_keywords(frame).contains(&text) {
                self.mark(t.span, Kind::Keyword);
                if frame == Frame::Top {
                    self.begin_action(t);
                } else {
                    self.begin_statement(t, frame);
                }
                return;
            }
            match frame {
                Frame::Output => {
                    self.declare(t, true);
                    return;
                }
                Frame::Outcome => {
                    // In a step's `on` and `fallback`, names are the step's values.
                    let sym = match self.current_step() {
                        Some(step) => Sym::StepValue {
                            step,
                            name: text.to_string(),
                        },
                        None => Sym::Output(text.to_string()),
                    };
                    self.mark(t.span, Kind::Sym { sym, decl: false });
                    return;
                }
                _ => {}
            }
        }
        // The condition language: `and`, `or`, `not`.
        if in_cond && word && CONDITION_WORDS.contains(&text) {
            self.mark(t.span, Kind::Keyword);
            return;
        }
        // Types: after `:` in a declaration, until `=` or the doc string.
        if in_type || matches!(frame, Frame::TypeItem | Frame::TypeArgs { .. }) {
            if let Frame::TypeArgs { string } = frame {
                if word && string {
                    self.mark(t.span, Kind::Format);
                    return;
                }
                if is_str {
                    self.mark(t.span, Kind::EnumValue);
                    return;
                }
            }
            if word {
                self.mark(t.span, Kind::TypeName);
                return;
            }
            if text == "=" || is_str {
                if let Some(f) = self.frames.last_mut() {
                    f.in_type = false;
                }
            } else if t.kind == TokenKind::Punct {
                if text == "?" {
                    self.mark(t.span, Kind::Operator);
                }
                return;
            }
        }
        let template = |s: &mut Self| {
            if is_str {
                s.template(t.span);
                true
            } else {
                false
            }
        };
        match frame {
            Frame::Top if head == "action" && n == 1 && word => {
                self.declare_action(t);
                return;
            }
            Frame::Action | Frame::Step => match head.as_str() {
                "input" if n == 1 && word && frame == Frame::Action => {
                    self.declare(t, false);
                    return;
                }
                "step" if n == 1 && word && frame == Frame::Action => {
                    self.declare_step(t);
                    return;
                }
                "step" if word && n >= 2 && matches!(text, "deferred" | "within" | "when") => {
                    self.mark(t.span, Kind::Keyword);
                    self.start_condition(text);
                    return;
                }
                "say" | "follow_up" if word && text == "when" && n >= 1 => {
                    self.mark(t.span, Kind::Keyword);
                    self.start_condition(text);
                    return;
                }
                "input" if text == ":" && n == 2 && frame == Frame::Action => {
                    if let Some(f) = self.frames.last_mut() {
                        f.in_type = true;
                    }
                    return;
                }
                "request" if n == 1 && word => {
                    self.mark(t.span, Kind::Method);
                    return;
                }
                "request" | "say" if template(self) => return,
                "on" if t.kind == TokenKind::Number => {
                    self.mark(t.span, Kind::Status);
                    return;
                }
                "invalidates" if word && n >= 1 => {
                    self.mark(
                        t.span,
                        Kind::Sym {
                            sym: Sym::Action(text.to_string()),
                            decl: false,
                        },
                    );
                    return;
                }
                "description" if is_str && n == 1 => {
                    if let Some(a) = self.cur_action.and_then(|a| self.actions.get_mut(a)) {
                        a.description.get_or_insert(t.span);
                    }
                }
                _ => {}
            },
            Frame::Request => match head.as_str() {
                "query" | "header" if n == 1 && is_str => {}
                "auth" if n == 1 && word => {
                    self.mark(t.span, Kind::Keyword);
                    return;
                }
                "auth" if n == 2 && is_str && matches!(u1.as_str(), "header" | "query") => {}
                "retry" if word && text == "backoff" => {
                    self.mark(t.span, Kind::Keyword);
                    return;
                }
                _ if template(self) => return,
                _ => {}
            },
            Frame::OAuth2 if template(self) => return,
            Frame::Output => {
                if text == ":" && n == 1 {
                    if let Some(f) = self.frames.last_mut() {
                        f.in_type = true;
                    }
                    return;
                }
                // After `=`: a JSONPath or (with steps) an expression; then `when COND`.
                if text == "=" {
                    self.start_condition("=");
                }
                if word && text == "when" && last != "=" {
                    self.mark(t.span, Kind::Keyword);
                    return;
                }
                if word && !matches!(text, "true" | "false" | "null") && last == "=" {
                    self.mark(t.span, Kind::MappingFn);
                    return;
                }
            }
            Frame::MappingArgs => {}
            Frame::Outcome if head == "say" && template(self) => return,
            Frame::Cache if head == "scope" && word && n == 1 => {
                self.mark(t.span, Kind::Constant);
                return;
            }
            Frame::Test => match head.as_str() {
                "upstream" if word && matches!(text, "timeout" | "reset" | "headers") => {
                    self.mark(t.span, Kind::Keyword);
                    return;
                }
                "upstream" if t.kind == TokenKind::Number && (n == 1 || (n == 2 && u1_word)) => {
                    self.mark(t.span, Kind::Status);
                    return;
                }
                // `upstream STEP ...`
                "upstream" if word && n == 1 => {
                    self.mark_step_ref(t);
                    return;
                }
                "env" | "secret" if word && n == 1 => {
                    let sym = if head == "env" {
                        Sym::Env(text.to_string())
                    } else {
                        Sym::Secret(text.to_string())
                    };
                    self.mark(t.span, Kind::Sym { sym, decl: false });
                    return;
                }
                "expect" if word && n == 1 => {
                    if matches!(text, "request" | "fallback" | "error" | "say") {
                        self.mark(t.span, Kind::Keyword);
                        return;
                    }
                }
                // `expect request [STEP] METHOD "PATH"`
                "expect" if word && n == 2 && u1 == "request" && !is_method(text) => {
                    self.mark_step_ref(t);
                    return;
                }
                "expect" if word && (n == 2 || n == 3) && u1 == "request" => {
                    self.mark(t.span, Kind::Method);
                    return;
                }
                "expect" if word && n == 2 && u1 == "error" => {
                    self.mark(t.span, Kind::ErrorCode);
                    return;
                }
                _ => {}
            },
            Frame::Value(ValueRole::Template) if template(self) => return,
            _ => {}
        }
        if let Some(kind) = generic {
            self.mark(t.span, kind);
        }
    }

    fn begin_statement(&mut self, t: Token, frame: Frame) {
        if frame != Frame::Action {
            return;
        }
        let Some(a) = self.cur_action else {
            return;
        };
        let Some(action) = self.actions.get_mut(a) else {
            return;
        };
        action.statements.push(Stmt {
            head: t.text(self.text).to_string(),
            head_span: t.span,
            span: t.span,
        });
        let idx = action.statements.len() - 1;
        if let Some(f) = self.frames.last_mut() {
            f.stmt = Some(idx);
        }
    }

    fn begin_action(&mut self, t: Token) {
        self.actions.push(ActionInfo {
            name: None,
            keyword: t.span,
            span: t.span,
            ..ActionInfo::default()
        });
        self.cur_action = Some(self.actions.len() - 1);
    }

    fn declare_action(&mut self, t: Token) {
        let name = t.text(self.text).to_string();
        if let Some(a) = self.cur_action.and_then(|i| self.actions.get_mut(i)) {
            a.name = Some((name.clone(), t.span));
        }
        self.mark(
            t.span,
            Kind::Sym {
                sym: Sym::Action(name),
                decl: true,
            },
        );
    }

    fn declare(&mut self, t: Token, output: bool) {
        let name = t.text(self.text).to_string();
        if output {
            if let Some(step) = self.current_step_index() {
                self.declare_step_output(t, step);
                return;
            }
            if self.frames.iter().any(|f| f.frame == Frame::Step) {
                // A step without a name: its values belong to nothing.
                self.mark(t.span, Kind::Property);
                return;
            }
        }
        let sym = if output {
            Sym::Output(name.clone())
        } else {
            Sym::Input(name.clone())
        };
        self.mark(t.span, Kind::Sym { sym, decl: true });
        let Some(a) = self.cur_action else {
            return;
        };
        let Some(action) = self.actions.get_mut(a) else {
            return;
        };
        let start = if output {
            t.span.start
        } else {
            action
                .statements
                .last()
                .map_or(t.span.start, |s| s.span.start)
        };
        let decl = Decl {
            name,
            name_span: t.span,
            span: Span::new(start, t.span.end),
        };
        let list = if output {
            &mut action.outputs
        } else {
            &mut action.inputs
        };
        list.push(decl);
        let idx = list.len() - 1;
        if let Some(f) = self.frames.last_mut() {
            f.decl = Some(if output {
                DeclAt::Output(idx)
            } else {
                DeclAt::Input(idx)
            });
        }
    }

    /// `step NAME`.
    fn declare_step(&mut self, t: Token) {
        let name = t.text(self.text).to_string();
        self.mark(
            t.span,
            Kind::Sym {
                sym: Sym::Step(name.clone()),
                decl: true,
            },
        );
        let Some(action) = self.cur_action.and_then(|a| self.actions.get_mut(a)) else {
            return;
        };
        let keyword = action.statements.last().map_or(t.span, |s| s.head_span);
        action.steps.push(StepInfo {
            decl: Decl {
                name,
                name_span: t.span,
                span: Span::new(keyword.start, t.span.end),
            },
            keyword,
            outputs: Vec::new(),
        });
        let idx = action.steps.len() - 1;
        if let Some(f) = self.frames.last_mut() {
            f.decl = Some(DeclAt::Step(idx));
        }
    }

    /// A field of a step's `output { }`.
    fn declare_step_output(&mut self, t: Token, step: usize) {
        let name = t.text(self.text).to_string();
        let Some(s) = self
            .cur_action
            .and_then(|a| self.actions.get_mut(a))
            .and_then(|a| a.steps.get_mut(step))
        else {
            return;
        };
        let sym = Sym::StepValue {
            step: s.decl.name.clone(),
            name: name.clone(),
        };
        s.outputs.push(Decl {
            name,
            name_span: t.span,
            span: t.span,
        });
        let idx = s.outputs.len() - 1;
        self.mark(t.span, Kind::Sym { sym, decl: true });
        if let Some(f) = self.frames.last_mut() {
            f.decl = Some(DeclAt::StepOutput(step, idx));
        }
    }

    /// The step whose block encloses the current frame (index in the action's steps).
    fn current_step_index(&self) -> Option<usize> {
        self.frames
            .iter()
            .rev()
            .find(|f| f.frame == Frame::Step)
            .and_then(|f| f.step)
    }

    /// The name of the step whose block encloses the current frame.
    fn current_step(&self) -> Option<String> {
        let i = self.current_step_index()?;
        let a = self.actions.get(self.cur_action?)?;
        Some(a.steps.get(i)?.decl.name.clone())
    }

    /// `step.NAME` written as a bare name (`upstream NAME`, `expect request NAME`).
    fn mark_step_ref(&mut self, t: Token) {
        let sym = Sym::Step(t.text(self.text).to_string());
        self.mark(t.span, Kind::Sym { sym, decl: false });
    }

    /// A condition starts after `when` (or an output's `=`).
    fn start_condition(&mut self, word: &str) {
        if matches!(word, "when" | "=") {
            if let Some(f) = self.frames.last_mut() {
                f.cond = true;
            }
        }
    }

    /// Marks a template string: text parts, and `{ns.member}` holes as references.
    fn template(&mut self, span: Span) {
        let raw = self.text_of(span);
        let bytes = raw.as_bytes();
        let mut text_start = 0;
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'{' => {
                    let close = raw[i..].find('}').map(|k| i + k);
                    let Some(close) = close else {
                        break;
                    };
                    let inner = &raw[i + 1..close];
                    let lead = inner.len() - inner.trim_start().len();
                    let trimmed = inner.trim();
                    let segs: Vec<&str> = trimmed.split('.').collect();
                    let shape = segs.len() == 2 || (segs.len() == 3 && segs[0] == "step");
                    if shape && segs.iter().all(|s| is_name(s)) {
                        let ns_start = span.start + i + 1 + lead;
                        let ns = Span::new(ns_start, ns_start + segs[0].len());
                        let mut members = Vec::new();
                        let mut at = ns.end;
                        for seg in &segs[1..] {
                            members.push(Span::new(at + 1, at + 1 + seg.len()));
                            at += 1 + seg.len();
                        }
                        self.mark(
                            Span::new(span.start + text_start, span.start + i),
                            Kind::Str,
                        );
                        self.mark(
                            Span::new(span.start + i, span.start + i + 1),
                            Kind::Operator,
                        );
                        self.ref_marks(ns, &members);
                        self.mark(
                            Span::new(span.start + close, span.start + close + 1),
                            Kind::Operator,
                        );
                        text_start = close + 1;
                    }
                    i = close + 1;
                }
                _ => i += 1,
            }
        }
        self.mark(Span::new(span.start + text_start, span.end), Kind::Str);
    }
}

/// Whether `s` is an HTTP method of the language (`GET`, ...).
pub fn is_method(s: &str) -> bool {
    mca_compiler::ir::Method::ALL
        .iter()
        .any(|m| m.as_str() == s)
}

/// Whether `s` is a name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Template holes of a string token: `(namespace, member)` spans, for completion inside strings.
/// Returns the text between the last unclosed `{` before `offset` and `offset`, if any.
pub fn open_hole(text: &str, string: Span, offset: usize) -> Option<(usize, &str)> {
    let before = text.get(string.start + 1..offset)?;
    let bytes = before.as_bytes();
    let mut open = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => open = Some(i),
            b'}' => open = None,
            _ => {}
        }
        i += 1;
    }
    let o = open?;
    Some((string.start + 1 + o + 1, before.get(o + 1..)?))
}

/// The parts of a declaration as written: its type, its value (an input's default, an output's
/// mapping) and an input's description string (quotes included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeclParts {
    pub ty: Option<Span>,
    pub value: Option<Span>,
    pub doc: Option<Span>,
}

pub fn decl_parts(text: &str, tokens: &[Token], decl: &Decl) -> DeclParts {
    let first = tokens.partition_point(|t| t.span.start < decl.name_span.end);
    let mut parts = DeclParts::default();
    let mut depth = 0usize;
    // 0: before `:`, 1: type, 2: value, 3: after the value
    let mut phase = 0;
    let code: Vec<&Token> = tokens[first..]
        .iter()
        .take_while(|t| t.span.start < decl.span.end)
        .filter(|t| !t.is_comment())
        .collect();
    for (k, t) in code.iter().enumerate() {
        // Parts of a reference (`input.x`) touch each other.
        let joined = code.get(k + 1).is_some_and(|n| {
            n.span.start == t.span.end && (n.is_punct(text, ".") || t.is_punct(text, "."))
        });
        let s = t.text(text);
        let punct = t.kind == TokenKind::Punct;
        let grow = |p: &mut Option<Span>| *p = Some(p.map_or(t.span, |x| x.to(t.span)));
        match phase {
            0 if punct && s == ":" => phase = 1,
            1 if depth == 0 && punct && s == "=" => phase = 2,
            1 if depth == 0 && t.kind == TokenKind::Str => {
                parts.doc = Some(t.span);
                phase = 3;
            }
            1 => grow(&mut parts.ty),
            // An output's `when CONDITION` is not part of its mapping.
            2 if depth == 0
                && t.kind == TokenKind::Word
                && s == "when"
                && parts.value.is_some() =>
            {
                phase = 3
            }
            2 => {
                grow(&mut parts.value);
                // An input's default is one value; an output's mapping runs to the end.
                let opens = punct && matches!(s, "{" | "[" | "(");
                if depth == 0 && !opens && !joined && tokens_are_input(decl, text) {
                    phase = 3;
                }
            }
            3 if depth == 0 && t.kind == TokenKind::Str => parts.doc = Some(t.span),
            _ => {}
        }
        if punct {
            match s {
                "{" | "[" | "(" | "<" => depth += 1,
                "}" | "]" | ")" | ">" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && phase == 2 && tokens_are_input(decl, text) {
                        phase = 3;
                    }
                }
                _ => {}
            }
        }
    }
    parts
}

/// Input declarations start with the `input` keyword; output fields with their name.
fn tokens_are_input(decl: &Decl, text: &str) -> bool {
    text.get(decl.span.start..decl.name_span.start)
        .is_some_and(|s| s.trim_start().starts_with("input"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mca_compiler::ast;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    fn mca_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                mca_files(&e, out);
            } else if e.extension().is_some_and(|x| x == "mca") {
                out.push(e);
            }
        }
    }

    fn all_files() -> Vec<(PathBuf, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        mca_files(&root.join("examples"), &mut files);
        mca_files(&root.join("tests/ui"), &mut files);
        files
            .into_iter()
            .map(|f| {
                let t = std::fs::read_to_string(&f).unwrap_or_default();
                (f, t)
            })
            .collect()
    }

    type Facts = BTreeSet<(usize, usize, String)>;

    /// What the compiler's tree says: declarations and references, as (start, end, what).
    #[derive(Default)]
    struct Tree {
        facts: Facts,
    }

    impl Tree {
        fn add(&mut self, span: ast::Span, what: String) {
            self.facts.insert((span.start, span.end, what));
        }

        fn expr(&mut self, e: &ast::Expr) {
            if let ast::Expr::Ref(r) = e {
                self.reference(r);
            }
        }

        fn reference(&mut self, r: &ast::RefExpr) {
            if let (Some(ns), Some(m)) = (r.segments.first(), r.segments.get(1)) {
                if NAMESPACES.contains(&ns.name.as_str()) {
                    self.add(m.span, format!("{}.{}", ns.name, m.name));
                }
                if let (Some(v), "step") = (r.segments.get(2), ns.name.as_str()) {
                    self.add(v.span, format!("step.{}.{}", m.name, v.name));
                }
            }
        }

        fn cond(&mut self, c: &ast::Cond) {
            c.refs().into_iter().for_each(|r| self.reference(r));
        }

        fn when(&mut self, w: &Option<ast::When>) {
            if let Some(w) = w {
                self.cond(&w.cond);
            }
        }

        fn value(&mut self, v: &ast::Value) {
            match v {
                ast::Value::Object(ms, _) => ms.iter().for_each(|m| self.value(&m.value)),
                ast::Value::Array(vs, _) => vs.iter().for_each(|v| self.value(v)),
                ast::Value::Scalar(e) => self.expr(e),
            }
        }

        fn keys(&mut self, v: &ast::Value, ns: &str) {
            if let ast::Value::Object(ms, _) = v {
                for m in ms {
                    let (span, name) = match &m.key {
                        ast::Key::Ident(i) => (i.span, i.name.clone()),
                        ast::Key::Str(s) => (
                            ast::Span::new(s.span.start + 1, s.span.end - 1),
                            s.raw.clone(),
                        ),
                    };
                    if is_name(&name) {
                        self.add(span, format!("{ns}.{name}"));
                    }
                    self.value(&m.value);
                }
            }
        }

        fn file(&mut self, f: &ast::File) {
            for a in &f.actions {
                self.add(a.name.span, format!("action {}", a.name.name));
                for item in &a.items {
                    self.item(item, None);
                }
            }
        }

        /// An item of an action, or of step `step`.
        fn item(&mut self, item: &ast::Item, step: Option<&str>) {
            match item {
                ast::Item::Step(s) => {
                    self.add(s.name.span, format!("step {}", s.name.name));
                    self.when(&s.when);
                    for i in &s.items {
                        self.item(i, Some(&s.name.name));
                    }
                }
                ast::Item::Say(s) => self.when(&s.when),
                ast::Item::FollowUp(f) => self.when(&f.when),
                ast::Item::Input(i) => {
                    self.add(i.name.span, format!("input {}", i.name.name));
                    if let Some(v) = &i.default {
                        self.value(v);
                    }
                }
                ast::Item::Outputs(o) => {
                    for f in &o.fields {
                        match step {
                            Some(s) => {
                                self.add(f.name.span, format!("stepvalue {s}.{}", f.name.name))
                            }
                            None => self.add(f.name.span, format!("output {}", f.name.name)),
                        }
                        if let ast::Source::Expr(c) = &f.mapping.source {
                            self.cond(c);
                        }
                        if let Some(v) = &f.mapping.default {
                            self.value(v);
                        }
                        self.when(&f.when);
                    }
                }
                ast::Item::Request(r) => {
                    for ri in &r.items {
                        match ri {
                            ast::RequestItem::Query(p) | ast::RequestItem::Header(p) => {
                                self.expr(&p.value)
                            }
                            ast::RequestItem::Auth(a) => match &a.kind {
                                ast::AuthKind::Bearer(e)
                                | ast::AuthKind::Header(_, e)
                                | ast::AuthKind::Query(_, e) => self.expr(e),
                                ast::AuthKind::Basic(u, p) => {
                                    self.expr(u);
                                    self.expr(p);
                                }
                                ast::AuthKind::OAuth2(items) => {
                                    items.iter().for_each(|(_, e)| self.expr(e))
                                }
                            },
                            ast::RequestItem::Body(v, _) | ast::RequestItem::Form(v, _) => {
                                self.value(v)
                            }
                            ast::RequestItem::IdempotencyKey(e, _) => self.expr(e),
                            _ => {}
                        }
                    }
                }
                ast::Item::OnStatus(ast::OnStatus { items, .. })
                | ast::Item::Fallback(ast::Fallback { items, .. }) => {
                    for i in items {
                        if let ast::OutcomeItem::Assign(a) = i {
                            let what = match step {
                                Some(s) => format!("step.{s}.{}", a.name.name),
                                None => format!("output.{}", a.name.name),
                            };
                            self.add(a.name.span, what);
                            self.value(&a.value);
                        }
                    }
                }
                ast::Item::Cache(c) => {
                    for i in &c.items {
                        if let ast::CacheItem::Key(es, _) = i {
                            es.iter().for_each(|e| self.expr(e));
                        }
                    }
                }
                ast::Item::Invalidates(i) => {
                    for t in &i.targets {
                        self.add(t.span, format!("action.{}", t.name));
                    }
                }
                ast::Item::Test(t) => {
                    for ti in &t.items {
                        match ti {
                            ast::TestItem::Input(v, _) => self.keys(v, "input"),
                            ast::TestItem::ExpectOutputs(v, _)
                            | ast::TestItem::ExpectFallback(Some(v), _) => self.keys(v, "output"),
                            ast::TestItem::Env(n, _, _) => {
                                self.add(n.span, format!("env.{}", n.name))
                            }
                            ast::TestItem::Secret(n, _, _) => {
                                self.add(n.span, format!("secret.{}", n.name))
                            }
                            ast::TestItem::Upstream(Some(s), _, _)
                            | ast::TestItem::ExpectRequest { step: Some(s), .. } => {
                                self.add(s.span, format!("step.{}", s.name))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The same facts from the scanner (references inside strings left out: the tree keeps
    /// strings raw).
    fn scanned(text: &str, a: &Analysis) -> Facts {
        let mut facts = Facts::new();
        let in_string = |span: Span| {
            a.tokens.iter().any(|t| {
                t.kind == TokenKind::Str && t.span.start < span.start && span.end < t.span.end
            })
        };
        for m in &a.marks {
            if let Kind::Sym { sym, decl } = &m.kind {
                if in_string(m.span)
                    && !matches!(text.get(m.span.start - 1..m.span.start), Some("\""))
                {
                    continue;
                }
                let what = match (sym, decl) {
                    (Sym::Action(n), true) => format!("action {n}"),
                    (Sym::Input(n), true) => format!("input {n}"),
                    (Sym::Output(n), true) => format!("output {n}"),
                    (Sym::Action(n), false) => format!("action.{n}"),
                    (Sym::Input(n), false) => format!("input.{n}"),
                    (Sym::Output(n), false) => format!("output.{n}"),
                    (Sym::Env(n), _) => format!("env.{n}"),
                    (Sym::Secret(n), _) => format!("secret.{n}"),
                    (Sym::Call(n), _) => format!("call.{n}"),
                    (Sym::Step(n), true) => format!("step {n}"),
                    (Sym::Step(n), false) => format!("step.{n}"),
                    (Sym::StepValue { step, name }, true) => format!("stepvalue {step}.{name}"),
                    (Sym::StepValue { step, name }, false) => format!("step.{step}.{name}"),
                };
                facts.insert((m.span.start, m.span.end, what));
            }
        }
        facts
    }

    #[test]
    fn scanner_agrees_with_the_compiler_on_valid_files() {
        let mut checked = 0;
        for (path, text) in all_files() {
            let (file, diags) = mca_compiler::syntax::parse(0, &text);
            if !diags.is_empty() {
                continue;
            }
            checked += 1;
            let mut tree = Tree::default();
            tree.file(&file);
            let a = analyze(&text);
            let got = scanned(&text, &a);
            let missing: Vec<_> = tree.facts.difference(&got).collect();
            let extra: Vec<_> = got.difference(&tree.facts).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{}: missing {missing:?}\nextra {extra:?}",
                path.display()
            );
            // Action extents and declarations.
            assert_eq!(a.actions.len(), file.actions.len(), "{}", path.display());
            for (x, y) in a.actions.iter().zip(&file.actions) {
                assert_eq!(x.span, y.span, "{}", path.display());
                for i in &x.inputs {
                    let decl = y.items.iter().find_map(|it| match it {
                        ast::Item::Input(d) if d.name.span == i.name_span => Some(d),
                        _ => None,
                    });
                    let Some(decl) = decl else {
                        panic!("{}: no input {}", path.display(), i.name);
                    };
                    assert_eq!(i.span, decl.span, "{}: {}", path.display(), i.name);
                    let parts = decl_parts(&text, &a.tokens, i);
                    assert_eq!(
                        parts.ty,
                        Some(decl.ty.span),
                        "{}: {}",
                        path.display(),
                        i.name
                    );
                    assert_eq!(parts.doc, decl.doc.as_ref().map(|d| d.span));
                    assert_eq!(parts.value, decl.default.as_ref().map(|d| d.span()));
                }
                for o in &x.outputs {
                    let decl = y.items.iter().find_map(|it| match it {
                        ast::Item::Outputs(os) => {
                            os.fields.iter().find(|f| f.name.span == o.name_span)
                        }
                        _ => None,
                    });
                    let Some(decl) = decl else {
                        panic!("{}: no output {}", path.display(), o.name);
                    };
                    assert_eq!(o.span, decl.span, "{}: {}", path.display(), o.name);
                    let parts = decl_parts(&text, &a.tokens, o);
                    assert_eq!(parts.ty, Some(decl.ty.span));
                    assert_eq!(parts.value, Some(decl.mapping.span));
                }
                let steps: Vec<&ast::Step> = y
                    .items
                    .iter()
                    .filter_map(|i| match i {
                        ast::Item::Step(s) => Some(s),
                        _ => None,
                    })
                    .collect();
                assert_eq!(x.steps.len(), steps.len(), "{}", path.display());
                for (xs, ys) in x.steps.iter().zip(&steps) {
                    assert_eq!(xs.decl.span, ys.span, "{}", path.display());
                    assert_eq!(xs.keyword, ys.keyword, "{}", path.display());
                    let fields: Vec<&ast::OutputField> = ys
                        .items
                        .iter()
                        .filter_map(|i| match i {
                            ast::Item::Outputs(o) => Some(o.fields.iter()),
                            _ => None,
                        })
                        .flatten()
                        .collect();
                    assert_eq!(xs.outputs.len(), fields.len(), "{}", path.display());
                    for (o, f) in xs.outputs.iter().zip(fields) {
                        assert_eq!(o.span, f.span, "{}: {}", path.display(), o.name);
                        let parts = decl_parts(&text, &a.tokens, o);
                        assert_eq!(parts.ty, Some(f.ty.span));
                        assert_eq!(parts.value, Some(f.mapping.span));
                    }
                }
                let items: Vec<ast::Span> = y.items.iter().map(|i| i.span()).collect();
                let stmts: Vec<ast::Span> = x.statements.iter().map(|s| s.span).collect();
                assert_eq!(stmts, items, "{}", path.display());
            }
        }
        assert!(checked > 10, "only {checked} valid files");
    }

    #[test]
    fn templates_holes_are_references() {
        let text = "action a {\n  input x: string\n  request GET \"https://h/{input.x}/\\{no}\" {\n    header \"A\" = \"{ env.K }\"\n  }\n  say \"{output.y}\"\n  description \"{input.x}\"\n}\n";
        let a = analyze(text);
        let refs: Vec<(&str, &Kind)> = a
            .marks
            .iter()
            .filter(|m| matches!(m.kind, Kind::Sym { decl: false, .. } | Kind::Namespace))
            .map(|m| (&text[m.span.start..m.span.end], &m.kind))
            .collect();
        let names: Vec<&str> = refs.iter().map(|r| r.0).collect();
        assert_eq!(names, ["input", "x", "env", "K", "output", "y"]);
    }

    #[test]
    fn half_typed_text_still_has_an_outline() {
        let text = "action a {\n  input phone: string(phone)\n  input n: int = 3 \"how many\"\n  request GET \"u/{input.\" {\n    query \"p\" = input.\n\naction b {\n  invalidates a,\n";
        let a = analyze(text);
        assert_eq!(a.actions.len(), 2);
        assert_eq!(a.actions[0].name(), Some("a"));
        let inputs: Vec<&str> = a.actions[0]
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(inputs, ["phone", "n"]);
        let parts = decl_parts(text, &a.tokens, &a.actions[0].inputs[1]);
        assert_eq!(parts.ty.map(|s| &text[s.start..s.end]), Some("int"));
        assert_eq!(parts.value.map(|s| &text[s.start..s.end]), Some("3"));
        assert_eq!(
            parts.doc.map(|s| &text[s.start..s.end]),
            Some("\"how many\"")
        );
        assert_eq!(a.actions[1].name(), Some("b"));
        // Contexts.
        let at = |needle: &str| text.find(needle).map(|i| i + needle.len()).unwrap_or(0);
        let c = context_at(text, &a.tokens, at("query \"p\" = "));
        assert_eq!(c.frame(), Frame::Request);
        assert!(!c.new_statement);
        let c = context_at(text, &a.tokens, at("invalidates a,"));
        assert_eq!(c.frame(), Frame::Action);
        assert_eq!(
            c.units.first().map(|u| u.text.as_str()),
            Some("invalidates")
        );
        assert_eq!(c.action, Some(1));
    }
}

#[cfg(test)]
mod cursor_tests {
    use super::*;

    #[test]
    fn a_cursor_just_after_a_name_finds_the_name() {
        let text = "action a {\n  say \"{output.x}\"\n}\n";
        let a = analyze(text);
        let end = text.find("x}").map_or(0, |i| i + 1);
        let m = a.mark_at(end);
        assert!(
            matches!(m.map(|m| &m.kind), Some(Kind::Sym { .. })),
            "{m:?}"
        );
        // Between a keyword and a name, the name after the cursor wins.
        let m = a.mark_at(text.find(" a").map_or(0, |i| i + 1));
        assert!(
            matches!(m.map(|m| &m.kind), Some(Kind::Sym { .. })),
            "{m:?}"
        );
    }
}

#[cfg(test)]
mod messages_tests {
    use super::*;

    #[test]
    fn messages_block_keywords_and_plain_strings() {
        let text = "action a {\n  messages {\n    start \"One moment {input.x}\"\n    delayed 2s \"Still looking.\"\n  }\n}\n";
        let a = analyze(text);
        let kinds: Vec<(&str, &Kind)> = a
            .marks
            .iter()
            .map(|m| (&text[m.span.start..m.span.end], &m.kind))
            .collect();
        assert!(kinds.contains(&("messages", &Kind::Keyword)));
        assert!(kinds.contains(&("start", &Kind::Keyword)));
        assert!(kinds.contains(&("delayed", &Kind::Keyword)));
        assert!(kinds.contains(&("2s", &Kind::Number)));
        // Waiting messages are fixed text: no references in them.
        assert!(kinds.contains(&("\"One moment {input.x}\"", &Kind::Str)));
        let at = text.find("delayed").unwrap_or(0);
        let c = context_at(text, &a.tokens, at);
        assert_eq!(c.frame(), Frame::Messages);
        assert!(c.new_statement);
    }
}
