//! Semantic checks of one action, producing the IR when the action has no errors.
//!
//! Every check reports and carries on: one mistake never hides another. The IR is built in the
//! same walk, so resolution logic exists once.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value as Json;

use crate::ast::{self, Span};
use crate::diagnostic::{Code, Diagnostic, FileId};
use crate::ir;
use crate::lines::LineIndex;
use crate::suggest::{closest, did_you_mean};
use crate::template::{self, TPart};

mod steps;

/// Live-call budgets.
pub const TIMEOUT_ERROR_MS: u64 = 10_000;
pub const TIMEOUT_WARN_MS: u64 = 5_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const MAX_RESPONSE_ERROR: u64 = 5 * 1024 * 1024;
pub const MAX_RESPONSE_WARN: u64 = 2 * 1024 * 1024;
pub const DEFAULT_MAX_RESPONSE: u64 = 2 * 1024 * 1024;
pub const DEFAULT_BACKOFF_MS: u64 = 100;

const MAPPING_FUNCTIONS: [&str; 3] = ["exists", "count", "first"];
const TYPE_NAMES: [&str; 6] = ["string", "int", "number", "bool", "enum", "list"];
const CALL_MEMBERS: [&str; 2] = ["id", "from"];

/// What the checker knows about the rest of the project.
pub struct ProjectNames<'a> {
    pub actions: &'a HashSet<String>,
}

pub struct Ctx<'a> {
    pub file: FileId,
    pub file_name: &'a str,
    pub text: &'a str,
    pub lines: &'a LineIndex,
    pub project: &'a ProjectNames<'a>,
    pub diags: &'a mut Vec<Diagnostic>,
}

/// Where a reference stands, which decides what it may name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// URL, query, body, form, idempotency key, cache key.
    Request,
    /// `auth` and `header`: the only places secrets may go.
    Credential,
    /// `say` text: may read outputs; never secrets.
    Say,
    /// Conditions and computed outputs: inputs, step values, call, env (and outputs where
    /// they are known).
    Value,
}

struct Declared<'s> {
    inputs: Vec<(&'s ast::InputDecl, Option<ir::Ty>)>,
    outputs: Vec<(&'s ast::OutputField, Option<ir::Ty>)>,
}

pub fn check_action(cx: &mut Ctx, action: &ast::Action) -> Option<ir::Action> {
    let errors_before = cx.diags.iter().filter(|d| d.is_error()).count();
    let mut ck = Checker {
        file: cx.file,
        text: cx.text,
        lines: cx.lines,
        project: cx.project,
        diags: Vec::new(),
        used_inputs: HashSet::new(),
        env: BTreeSet::new(),
        secrets: BTreeSet::new(),
        input_names: Vec::new(),
        output_names: Vec::new(),
        site: "the request",
        query_name: String::new(),
        in_request: false,
        request_inputs: Vec::new(),
        steps: Vec::new(),
        current_step: None,
        step_reads: Vec::new(),
        step_edges: HashMap::new(),
        outputs_known: false,
        deferred_request: false,
        input_types: HashMap::new(),
        output_types: HashMap::new(),
    };
    let ir = ck.action(cx.file_name, action);
    cx.diags.append(&mut ck.diags);
    let errors_after = cx.diags.iter().filter(|d| d.is_error()).count();
    if errors_after == errors_before {
        ir
    } else {
        None
    }
}

struct Checker<'a> {
    file: FileId,
    text: &'a str,
    lines: &'a LineIndex,
    project: &'a ProjectNames<'a>,
    diags: Vec<Diagnostic>,
    used_inputs: HashSet<String>,
    env: BTreeSet<String>,
    secrets: BTreeSet<String>,
    input_names: Vec<String>,
    output_names: Vec<String>,
    /// Where the request expression being checked stands, in words ("the URL", "the body").
    site: &'static str,
    /// The name of the query parameter being checked, for hints.
    query_name: String,
    /// While checking the request: the inputs it sends (a cache key must hold them all).
    in_request: bool,
    request_inputs: Vec<(String, Span)>,
    /// The steps of the action, declared before any use.
    steps: Vec<steps::StepDecl>,
    /// While checking a step: its name, and the steps it reads (with where).
    current_step: Option<String>,
    step_reads: Vec<(String, Span)>,
    /// Every live step's reads, for the cycle check.
    step_edges: HashMap<String, Vec<(String, Span)>>,
    /// `output.*` may be read (in a deferred step, which runs after the answer).
    outputs_known: bool,
    /// The request being checked is a deferred write (nobody waits for it).
    deferred_request: bool,
    input_types: HashMap<String, ir::Ty>,
    output_types: HashMap<String, ir::Ty>,
}

impl Checker<'_> {
    fn err(&mut self, code: Code, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        let span = self.trim(span);
        self.diags
            .push(Diagnostic::new(code, self.file, span, message));
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn diag(&self, code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(code, self.file, self.trim(span), message)
    }

    /// A span without the blanks the parser keeps after an item (`retry 1` followed by a line
    /// break must not underline the next line).
    fn trim(&self, span: Span) -> Span {
        match self.text.get(span.start..span.end) {
            Some(t) if !t.trim_end().is_empty() => {
                Span::new(span.start, span.start + t.trim_end().len())
            }
            _ => span,
        }
    }

    fn location(&self, span: Span) -> ir::Location {
        let (line, column) = self.lines.line_col(self.text, span.start);
        ir::Location { line, column }
    }

    fn keyword_span(span: Span, keyword: &str) -> Span {
        Span::new(span.start, span.start + keyword.len())
    }

    // ---- the action ---------------------------------------------------------------------------

    fn action(&mut self, file_name: &str, action: &ast::Action) -> Option<ir::Action> {
        use ast::Item;
        let mut description: Option<&ast::Description> = None;
        let mut request: Option<&ast::Request> = None;
        let mut outputs: Option<&ast::Outputs> = None;
        let mut says: Vec<&ast::Say> = Vec::new();
        let mut fallback: Option<&ast::Fallback> = None;
        let mut cache: Option<&ast::Cache> = None;
        let mut messages: Option<&ast::Messages> = None;
        let mut follow_up: Option<&ast::FollowUp> = None;
        let mut action_timeout: Option<(&ast::Duration, Span)> = None;
        let mut inputs = Vec::new();
        let mut on_status = Vec::new();
        let mut invalidates = Vec::new();
        let mut tests = Vec::new();
        let mut steps = Vec::new();

        for item in &action.items {
            match item {
                Item::Description(d) => self.single(&mut description, d, d.span, "description"),
                Item::Request(r) => self.single(&mut request, r, r.span, "request"),
                Item::Outputs(o) => self.single(&mut outputs, o, o.span, "output"),
                Item::Say(s) => says.push(s),
                Item::Fallback(f) => self.single(&mut fallback, f, f.span, "fallback"),
                Item::Cache(c) => self.single(&mut cache, c, c.span, "cache"),
                Item::Input(i) => inputs.push(i),
                Item::OnStatus(o) => on_status.push(o),
                Item::Invalidates(i) => invalidates.push(i),
                Item::Messages(m) => self.single(&mut messages, m, m.span, "messages"),
                Item::FollowUp(f) => self.single(&mut follow_up, f, f.span, "follow_up"),
                Item::Timeout(d, span) => match action_timeout {
                    Some((_, first)) => {
                        let d = self
                            .diag(
                                Code::DuplicateItem,
                                Self::keyword_span(*span, "timeout"),
                                "`timeout` is given twice in this action",
                            )
                            .label("second one")
                            .secondary(
                                self.file,
                                Self::keyword_span(first, "timeout"),
                                "first one here",
                            )
                            .hint("an action has at most one `timeout`");
                        self.push(d);
                    }
                    None => action_timeout = Some((d, *span)),
                },
                Item::Step(s) => steps.push(s),
                Item::Test(t) => tests.push(t),
            }
        }
        let live_steps: Vec<&ast::Step> = steps
            .iter()
            .copied()
            .filter(|s| s.deferred.is_none())
            .collect();
        // The action's form: one request, or steps (an action of deferred steps alone computes
        // its outputs like one with live steps).
        let with_steps = !live_steps.is_empty() || (request.is_none() && !steps.is_empty());

        let description_text = match description {
            Some(d) => {
                let text = self.plain_string(&d.text);
                if text.as_ref().is_some_and(|t| t.trim().is_empty()) {
                    let d = self
                        .diag(
                            Code::MissingDescription,
                            d.text.span,
                            format!("action `{}` has an empty description", action.name.name),
                        )
                        .label("empty")
                        .hint("assistants choose tools by their description: say what the action does and when to use it");
                    self.push(d);
                }
                text
            }
            None => {
                self.push(
                    self.diag(
                        Code::MissingDescription,
                        action.name.span,
                        format!("action `{}` has no description", action.name.name),
                    )
                    .label("no `description`")
                    .hint(
                        "assistants choose tools by their description: add `description \"...\"`",
                    ),
                );
                Some(String::new())
            }
        };

        // Declarations first, so that every use can be resolved whatever the order of items.
        let declared = self.declare(&inputs, outputs);
        self.declare_steps(&steps);
        for (i, ty) in &declared.inputs {
            if let Some(ty) = ty {
                self.input_types.insert(i.name.name.clone(), ty.clone());
            }
        }
        for (o, ty) in &declared.outputs {
            if let Some(ty) = ty {
                self.output_types.insert(o.name.name.clone(), ty.clone());
            }
        }

        let mut form_ok = true;
        if let (Some(r), Some(first)) = (request, live_steps.first()) {
            let d = self
                .diag(
                    Code::StepForm,
                    Self::keyword_span(r.span, "request"),
                    "an action with steps cannot also have a `request` of its own",
                )
                .label("which response would `output` map?")
                .secondary(self.file, first.keyword, "a step")
                .hint("make this request a step: `step NAME { request ... output { ... } }`, and compute the action's outputs from `step.NAME.VALUE`");
            self.push(d);
            form_ok = false;
        }
        if with_steps {
            for o in &on_status {
                let d = self
                    .diag(
                        Code::StepForm,
                        Self::keyword_span(o.span, "on"),
                        "`on` belongs in a step in an action with steps",
                    )
                    .label("which request's status?")
                    .hint("move it into the step whose status it handles, assigning the step's values");
                self.push(d);
                form_ok = false;
            }
        } else if let Some((_, span)) = action_timeout {
            let d = self
                .diag(
                    Code::StepForm,
                    Self::keyword_span(span, "timeout"),
                    "the timeout of a single-request action is the request's `timeout`",
                )
                .label("not used here")
                .hint("move it into the request: `request ... { timeout 3s }`");
            self.push(d);
            form_ok = false;
        }

        let request_ir = match request {
            Some(r) => {
                self.in_request = true;
                let ir = self.request(r);
                self.in_request = false;
                ir
            }
            None if steps.is_empty() => {
                self.push(
                    self.diag(
                        Code::MissingItem,
                        action.name.span,
                        format!("action `{}` has no `request`", action.name.name),
                    )
                    .label("this action never calls anything")
                    .hint("add `request GET \"https://...\" { }`, or steps: `step NAME { request ... }`"),
                );
                None
            }
            None => None,
        };
        let mut steps_ok = true;
        let mut steps_ir = Vec::new();
        for s in &steps {
            match self.step(s) {
                Some(st) => steps_ir.push(st),
                None => steps_ok = false,
            }
        }
        self.step_cycles();

        let timeout_ms = match (&request_ir, action_timeout) {
            (Some(r), _) => Some(r.timeout_ms),
            (None, Some((d, span))) => self.duration(d, "timeout").inspect(|ms| {
                self.timeout_limits(*ms, span);
            }),
            (None, None) => Some(DEFAULT_TIMEOUT_MS),
        };

        let inputs_ir = self.inputs(&declared);
        let outputs_ir = self.outputs(&declared, with_steps, request.is_some() || steps.is_empty());

        let mut say_ir = Vec::new();
        let mut says_ok = true;
        let mut unconditional: Option<Span> = None;
        for s in &says {
            if let Some(first) = unconditional {
                let d = self
                    .diag(
                        Code::DuplicateItem,
                        Self::keyword_span(s.span, "say"),
                        "this `say` is never spoken",
                    )
                    .label("an earlier `say` has no `when`")
                    .secondary(self.file, Self::keyword_span(first, "say"), "always spoken")
                    .hint("`say` lines are tried in order: give the earlier one a `when`, or put the one without `when` last");
                self.push(d);
                says_ok = false;
            }
            if s.when.is_none() {
                unconditional.get_or_insert(s.span);
            }
            let when = match &s.when {
                Some(w) => match self.when(w, Place::Say) {
                    Some(t) => Some(t),
                    None => {
                        says_ok = false;
                        None
                    }
                },
                None => None,
            };
            match self.template(&s.text, Place::Say) {
                Some(text) => say_ir.push(ir::Say { when, text }),
                None => says_ok = false,
            }
        }

        let required: Vec<&str> = declared
            .outputs
            .iter()
            .filter(|(_, ty)| ty.as_ref().is_some_and(|t| !t.is_optional()))
            .map(|(o, _)| o.name.name.as_str())
            .collect();
        let mut on_ir = Vec::new();
        let mut handled: Vec<(ir::StatusRange, Span)> = Vec::new();
        for o in on_status.iter().filter(|_| !with_steps) {
            let statuses = self.statuses(&o.statuses);
            // A status an earlier `on` already handles never reaches this block.
            for (range, lit) in statuses.iter().flatten().zip(&o.statuses) {
                let earlier = handled
                    .iter()
                    .find(|(h, _)| h.from <= range.from && range.to <= h.to)
                    .map(|(_, span)| *span);
                if let Some(earlier) = earlier {
                    let d = self
                        .diag(
                            Code::DuplicateItem,
                            lit.span,
                            format!("status `{}` is already handled by an earlier `on`", lit.text),
                        )
                        .label("never reaches this block")
                        .secondary(self.file, earlier, "handled here first")
                        .hint("`on` blocks are tried in order: put specific statuses like `on 404` before classes like `on 4xx`, and handle each status once");
                    self.push(d);
                }
                handled.push((*range, lit.span));
            }
            let outcome = self.outcome(&o.items, &declared, &required, o.span, "on");
            if let (Some(statuses), Some(outcome)) = (statuses, outcome) {
                on_ir.push(ir::StatusHandler { statuses, outcome });
            }
        }
        let fallback_ir =
            fallback.and_then(|f| self.outcome(&f.items, &declared, &required, f.span, "fallback"));

        let live_requests: Vec<&ast::Request> = request
            .into_iter()
            .chain(live_steps.iter().flat_map(|s| {
                s.items.iter().filter_map(|i| match i {
                    Item::Request(r) => Some(r),
                    _ => None,
                })
            }))
            .collect();
        // Deferred writes count as writes: a cache hit would skip (or repeat) them.
        let written: Vec<&ast::Request> = live_requests
            .iter()
            .copied()
            .chain(steps.iter().filter(|s| s.deferred.is_some()).flat_map(|s| {
                s.items.iter().filter_map(|i| match i {
                    Item::Request(r) => Some(r),
                    _ => None,
                })
            }))
            .collect();
        let cache_ir = cache.and_then(|c| self.cache(c, &written));

        let mut invalidates_ir = Vec::new();
        for inv in &invalidates {
            for t in &inv.targets {
                if self.project.actions.contains(&t.name) {
                    invalidates_ir.push(t.name.clone());
                } else {
                    let hint =
                        did_you_mean(&t.name, self.project.actions.iter().map(String::as_str));
                    let d = self
                        .diag(
                            Code::UnknownAction,
                            t.span,
                            format!("unknown action `{}`", t.name),
                        )
                        .label("no action of this name in the project")
                        .hint_opt(hint);
                    self.push(d);
                }
            }
        }

        let follow_up_ir = match follow_up {
            None => Some(None),
            Some(f) => match &f.when {
                None => Some(Some(ir::FollowUp { when: None })),
                Some(w) => {
                    let reads_later = w.cond.refs().into_iter().find(|r| {
                        r.segments
                            .first()
                            .is_some_and(|s| s.name == "step" || s.name == "output")
                    });
                    match reads_later {
                        Some(r) => {
                            let d = self
                                .diag(
                                    Code::ReferenceNotAllowed,
                                    r.span,
                                    format!("a follow-up's condition cannot read `{}`", ref_text(r)),
                                )
                                .label("decided before the follow-up runs")
                                .hint("a follow-up's `when` reads the inputs the end of the call gives and `call.*`; test values of steps inside the action instead");
                            self.push(d);
                            None
                        }
                        None => self
                            .when(w, Place::Value)
                            .map(|t| Some(ir::FollowUp { when: Some(t) })),
                    }
                }
            },
        };

        let mut test_names: HashMap<String, Span> = HashMap::new();
        let mut tests_ir = Vec::new();
        for t in &tests {
            let name = self.plain_string(&t.name).unwrap_or_default();
            if let Some(first) = test_names.get(&name) {
                let d = self
                    .diag(
                        Code::DuplicateTest,
                        t.name.span,
                        format!("a test named {name:?} already exists in this action"),
                    )
                    .label("second test of this name")
                    .secondary(self.file, *first, "first declared here")
                    .hint("test names say what each test proves: rename one");
                self.push(d);
            } else {
                test_names.insert(name.clone(), t.name.span);
            }
            if let Some(ti) = self.test(t, name, &declared, request, &steps) {
                tests_ir.push(ti);
            }
        }

        // Unused inputs: only meaningful when the requests parsed.
        if request.is_some() || !steps.is_empty() {
            for (i, _) in &declared.inputs {
                if !self.used_inputs.contains(&i.name.name) {
                    let d = self
                        .diag(
                            Code::UnusedInput,
                            i.name.span,
                            format!("input `{}` is never used", i.name.name),
                        )
                        .label("not used by the request, the cache key or `say`")
                        .hint("the assistant will still ask for it: use it, or remove it");
                    self.push(d);
                }
            }
        }

        let messages_ir = match messages {
            Some(m) => self.messages(m, timeout_ms),
            None => Some(ir::Messages::default()),
        };

        if !(form_ok && steps_ok && says_ok) {
            return None;
        }
        if request_ir.is_none() && steps_ir.is_empty() {
            return None;
        }
        Some(ir::Action {
            name: action.name.name.clone(),
            file: file_name.to_string(),
            location: self.location(action.name.span),
            description: description_text?,
            inputs: inputs_ir?,
            request: request_ir,
            steps: steps_ir,
            timeout_ms: timeout_ms?,
            outputs: outputs_ir?,
            say: say_ir,
            on_status: on_ir,
            fallback: fallback_ir,
            cache: cache_ir,
            invalidates: invalidates_ir,
            messages: messages_ir?,
            follow_up: follow_up_ir?,
            tests: tests_ir,
            env: std::mem::take(&mut self.env).into_iter().collect(),
            secrets: std::mem::take(&mut self.secrets).into_iter().collect(),
        })
    }

    /// Speech for the wait: plain text (the platform speaks it before any value is known).
    fn messages(&mut self, m: &ast::Messages, timeout_ms: Option<u64>) -> Option<ir::Messages> {
        let mut out = ir::Messages::default();
        let mut ok = true;
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        for item in &m.items {
            let (word, text) = match item {
                ast::Message::Start(t, _) => ("start", t),
                ast::Message::Delayed(_, t, _) => ("delayed", t),
                ast::Message::Failed(t, _) => ("failed", t),
            };
            if let Some(first) = seen.get(word) {
                let d = self
                    .diag(
                        Code::DuplicateItem,
                        Self::keyword_span(item.span(), word),
                        format!("`{word}` is given twice in `messages`"),
                    )
                    .label("second one")
                    .secondary(
                        self.file,
                        Self::keyword_span(*first, word),
                        "first one here",
                    )
                    .hint("each message is spoken once: keep one");
                self.push(d);
                ok = false;
                continue;
            }
            seen.insert(word, item.span());
            let Some(parts) = self.template_parts(text) else {
                ok = false;
                continue;
            };
            let mut plain = String::new();
            for p in parts {
                match p {
                    TPart::Text(t) => plain.push_str(&t),
                    TPart::Ref(r) => {
                        let d = self
                            .diag(Code::ReferenceNotAllowed, r.span, format!("a waiting message cannot say `{}`", ref_text(&r)))
                            .label("spoken by the platform before the action has any value")
                            .hint("keep waiting messages fixed, like \"One moment, I'm checking.\"; put values in `say`");
                        self.push(d);
                        ok = false;
                    }
                }
            }
            if plain.trim().is_empty() {
                let d = self
                    .diag(
                        Code::MissingDescription,
                        text.span,
                        format!("the `{word}` message is empty"),
                    )
                    .label("nothing to say")
                    .hint("write what the caller should hear, or remove the line");
                self.push(d);
                continue;
            }
            match item {
                ast::Message::Start(..) => out.start = Some(plain),
                ast::Message::Failed(..) => out.failed = Some(plain),
                ast::Message::Delayed(d, _, _) => {
                    let Some(after_ms) = self.duration(d, "delayed") else {
                        ok = false;
                        continue;
                    };
                    if let Some(t) = timeout_ms.filter(|t| after_ms >= *t) {
                        let diag = self
                            .diag(Code::MessageNeverSpoken, d.span, format!("the delayed message waits {}, but the action answers within its timeout of {}", fmt_ms(after_ms), fmt_ms(t)))
                            .label("never spoken")
                            .hint("use a delay shorter than the request's `timeout`, for example half of it");
                        self.push(diag);
                    }
                    out.delayed = Some(ir::DelayedMessage {
                        after_ms,
                        text: plain,
                    });
                }
            }
        }
        ok.then_some(out)
    }

    fn single<'s, T>(&mut self, slot: &mut Option<&'s T>, item: &'s T, span: Span, keyword: &str)
    where
        T: HasSpan,
    {
        match slot {
            Some(first) => {
                let d = self
                    .diag(
                        Code::DuplicateItem,
                        Self::keyword_span(span, keyword),
                        format!("`{keyword}` is given twice in this action"),
                    )
                    .label("second one")
                    .secondary(
                        self.file,
                        Self::keyword_span(first.span(), keyword),
                        "first one here",
                    )
                    .hint(format!("an action has at most one `{keyword}`"));
                self.push(d);
            }
            None => *slot = Some(item),
        }
    }

    // ---- declarations -------------------------------------------------------------------------

    fn declare<'s>(
        &mut self,
        inputs: &[&'s ast::InputDecl],
        outputs: Option<&'s ast::Outputs>,
    ) -> Declared<'s> {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut ins = Vec::new();
        for i in inputs {
            if let Some(first) = seen.get(i.name.name.as_str()) {
                let d = self
                    .diag(
                        Code::DuplicateInput,
                        i.name.span,
                        format!("input `{}` is declared twice", i.name.name),
                    )
                    .label("second declaration")
                    .secondary(self.file, *first, "first declared here")
                    .hint("remove one, or give it another name");
                self.push(d);
                continue;
            }
            seen.insert(&i.name.name, i.name.span);
            let ty = self.ty(&i.ty);
            ins.push((*i, ty));
            self.input_names.push(i.name.name.clone());
        }
        let mut outs = Vec::new();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for o in outputs.map(|o| o.fields.as_slice()).unwrap_or_default() {
            if let Some(first) = seen.get(o.name.name.as_str()) {
                let d = self
                    .diag(
                        Code::DuplicateOutput,
                        o.name.span,
                        format!("output `{}` is declared twice", o.name.name),
                    )
                    .label("second declaration")
                    .secondary(self.file, *first, "first declared here")
                    .hint("remove one, or give it another name");
                self.push(d);
                continue;
            }
            seen.insert(&o.name.name, o.name.span);
            let ty = self.ty(&o.ty);
            outs.push((o, ty));
            self.output_names.push(o.name.name.clone());
        }
        Declared {
            inputs: ins,
            outputs: outs,
        }
    }

    fn ty(&mut self, t: &ast::TypeExpr) -> Option<ir::Ty> {
        let name = t.name.name.as_str();
        let args = t.args.as_deref();
        let base = match name {
            "string" => {
                self.no_item(t);
                match args {
                    None => Some(ir::Ty::String { format: None }),
                    Some([ast::TypeArg::Ident(f)]) => match ir::Format::from_name(&f.name) {
                        Some(format) => Some(ir::Ty::String {
                            format: Some(format),
                        }),
                        None => {
                            let hint =
                                did_you_mean(&f.name, ir::Format::ALL.iter().map(|f| f.name()));
                            let d = self
                                .diag(
                                    Code::UnknownFormat,
                                    f.span,
                                    format!("unknown string format `{}`", f.name),
                                )
                                .label("not a format")
                                .hint(hint.unwrap_or_else(|| {
                                    "formats: email, phone, date, datetime, uuid, url".into()
                                }));
                            self.push(d);
                            None
                        }
                    },
                    Some(_) => {
                        let span = t.args_span.unwrap_or(t.span);
                        self.err(
                            Code::UnknownFormat,
                            span,
                            "`string(...)` takes one format name",
                        )
                        .primary
                        .message = "expected one of email, phone, date, datetime, uuid, url".into();
                        None
                    }
                }
            }
            "int" | "number" | "bool" => {
                self.no_item(t);
                if let Some(span) = t.args_span {
                    self.err(
                        Code::UnknownType,
                        span,
                        format!("`{name}` takes no arguments"),
                    )
                    .primary
                    .message = "remove this".into();
                    return None;
                }
                Some(match name {
                    "int" => ir::Ty::Int,
                    "number" => ir::Ty::Number,
                    _ => ir::Ty::Bool,
                })
            }
            "enum" => {
                self.no_item(t);
                let mut values = Vec::new();
                let mut ok = true;
                for a in args.unwrap_or_default() {
                    match a {
                        ast::TypeArg::Str(s) => {
                            let v = self.plain_string(s)?;
                            if values.contains(&v) {
                                let d = self
                                    .diag(
                                        Code::InvalidEnum,
                                        s.span,
                                        format!("enum value {v:?} is listed twice"),
                                    )
                                    .label("listed twice")
                                    .hint("remove the second one");
                                self.push(d);
                                ok = false;
                            } else if v.is_empty() {
                                self.err(
                                    Code::InvalidEnum,
                                    s.span,
                                    "enum values cannot be empty",
                                )
                                .primary
                                .message = "empty".into();
                                ok = false;
                            }
                            values.push(v);
                        }
                        ast::TypeArg::Ident(_) => ok = false,
                    }
                }
                // Unquoted values: one diagnostic for the whole list, with the fix written out.
                let bare: Vec<&ast::Ident> = args
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|a| match a {
                        ast::TypeArg::Ident(i) => Some(i),
                        ast::TypeArg::Str(_) => None,
                    })
                    .collect();
                if let (Some(first), Some(last)) = (bare.first(), bare.last()) {
                    let fixed = args
                        .unwrap_or_default()
                        .iter()
                        .map(|a| match a {
                            ast::TypeArg::Ident(i) => format!("\"{}\"", i.name),
                            ast::TypeArg::Str(s) => format!("\"{}\"", s.raw),
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    let d = self
                        .diag(
                            Code::InvalidEnum,
                            first.span.to(last.span),
                            "enum values are strings in double quotes",
                        )
                        .label("not in quotes")
                        .hint(format!("write `enum({fixed})`"));
                    self.push(d);
                }
                if values.is_empty() && ok {
                    let d = self
                        .diag(
                            Code::InvalidEnum,
                            t.span,
                            "an enum needs at least one value",
                        )
                        .label("no values")
                        .hint("write `enum(\"low\", \"normal\", \"urgent\")`");
                    self.push(d);
                    ok = false;
                }
                ok.then_some(ir::Ty::Enum { values })
            }
            "list" => match &t.item {
                Some(item) => self.ty(item).map(|item| ir::Ty::List {
                    item: Box::new(item),
                }),
                None => {
                    let d = self
                        .diag(Code::UnknownType, t.span, "`list` needs an item type")
                        .label("missing `<...>`")
                        .hint("write `list<string>`");
                    self.push(d);
                    None
                }
            },
            other => {
                let hint = did_you_mean(other, TYPE_NAMES.iter().copied());
                let d = self
                    .diag(Code::UnknownType, t.name.span, format!("unknown type `{other}`"))
                    .label("not a type")
                    .hint(hint.unwrap_or_else(|| {
                        "types: string, int, number, bool, enum(...), list<...>, and T? for optional".into()
                    }));
                self.push(d);
                None
            }
        }?;
        Some(if t.optional {
            ir::Ty::Optional {
                inner: Box::new(base),
            }
        } else {
            base
        })
    }

    fn no_item(&mut self, t: &ast::TypeExpr) {
        if let Some(item) = &t.item {
            let d = self
                .diag(
                    Code::UnknownType,
                    item.span,
                    format!("`{}` takes no item type", t.name.name),
                )
                .label("only `list<...>` has an item type");
            self.push(d);
        }
    }

    fn inputs(&mut self, declared: &Declared) -> Option<Vec<ir::Input>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, ty) in &declared.inputs {
            let default = match &i.default {
                Some(v) => {
                    let json = self.literal(v, "a default");
                    if let (Some(json), Some(ty)) = (&json, ty) {
                        self.check_value(ty, json, v, &format!("the default of `{}`", i.name.name));
                    }
                    json
                }
                None => None,
            };
            let description = i.doc.as_ref().and_then(|d| self.plain_string(d));
            match ty {
                Some(ty) => out.push(ir::Input {
                    name: i.name.name.clone(),
                    ty: ty.clone(),
                    default,
                    description,
                }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    // ---- values ---------------------------------------------------------------------------------

    fn plain_string(&mut self, s: &ast::StrLit) -> Option<String> {
        match template::unescape(self.file, s) {
            Ok(t) => Some(t),
            Err(d) => {
                self.push(*d);
                None
            }
        }
    }

    /// A literal JSON value (no references), as used by defaults, outcomes and tests.
    fn literal(&mut self, v: &ast::Value, what: &str) -> Option<Json> {
        match v {
            ast::Value::Object(members, _) => {
                let mut map = serde_json::Map::new();
                let mut ok = true;
                for m in members {
                    let key = self.key(&m.key);
                    let val = self.literal(&m.value, what);
                    match (key, val) {
                        (Some(k), Some(v)) => {
                            map.insert(k, v);
                        }
                        _ => ok = false,
                    }
                }
                ok.then_some(Json::Object(map))
            }
            ast::Value::Array(items, _) => {
                let vals: Vec<Option<Json>> = items.iter().map(|i| self.literal(i, what)).collect();
                vals.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(Json::Array)
            }
            ast::Value::Scalar(e) => match e {
                ast::Expr::Str(s) => self.plain_string(s).map(Json::String),
                ast::Expr::Number(n, _) => Some(Json::Number(n.clone())),
                ast::Expr::Bool(b, _) => Some(Json::Bool(*b)),
                ast::Expr::Null(_) => Some(Json::Null),
                ast::Expr::Ref(r) if r.segments.first().is_some_and(|s| s.name == "secret") => {
                    // A secret as an output value would be handed to the assistant and spoken.
                    let d = self
                        .diag(
                            Code::SecretMisplaced,
                            r.span,
                            format!("secret `{}` is used in {what}", ref_text_n(r, 2).trim_start_matches("secret.")),
                        )
                        .label("secrets may only be sent in `auth` or `header`")
                        .hint("outputs and defaults reach the assistant and the caller: a secret must never be one");
                    self.push(d);
                    None
                }
                ast::Expr::Ref(r) => {
                    let d = self
                        .diag(
                            Code::ReferenceNotAllowed,
                            r.span,
                            format!("{what} cannot refer to `{}`", ref_text(r)),
                        )
                        .label("only literal values are allowed here")
                        .hint("write the value itself, like \"text\", 42, true or null");
                    self.push(d);
                    None
                }
            },
        }
    }

    fn key(&mut self, k: &ast::Key) -> Option<String> {
        match k {
            ast::Key::Ident(i) => Some(i.name.clone()),
            ast::Key::Str(s) => self.plain_string(s),
        }
    }

    /// Type-checks a literal against a type, pointing at the offending part of the value.
    fn check_value(&mut self, ty: &ir::Ty, json: &Json, v: &ast::Value, what: &str) -> bool {
        match ty.check(json) {
            Ok(()) => true,
            Err(m) => {
                let span = span_at_pointer(v, &m.pointer);
                let d = self
                    .diag(
                        Code::TypeMismatch,
                        span,
                        format!(
                            "{what} has the wrong type: expected {}, found {}",
                            m.expected, m.found
                        ),
                    )
                    .label(format!("expected {}", m.expected))
                    .hint(format!("the declared type is `{}`", ty.display()));
                self.push(d);
                false
            }
        }
    }

    // ---- references and templates -------------------------------------------------------------

    fn reference(&mut self, r: &ast::RefExpr, place: Place) -> Option<ir::Ref> {
        let ns_ident = r.segments.first()?;
        let ns = match ns_ident.name.as_str() {
            "input" => ir::Namespace::Input,
            "env" => ir::Namespace::Env,
            "secret" => ir::Namespace::Secret,
            "call" => ir::Namespace::Call,
            "output" => ir::Namespace::Output,
            "step" => return self.step_reference(r),
            other => {
                let namespaces = ["input", "env", "secret", "call", "output", "step"];
                if closest(other, namespaces.into_iter()) == Some("input") {
                    // `inptu.phone` means `input.phone`: it is not an unused input.
                    if let Some(m) = r.segments.get(1) {
                        self.used_inputs.insert(m.name.clone());
                    }
                }
                let hint = did_you_mean(other, namespaces.into_iter());
                let d = self
                    .diag(
                        Code::UnknownReference,
                        ns_ident.span,
                        format!("unknown reference `{}`", ref_text(r)),
                    )
                    .label("not a namespace")
                    .hint(hint.unwrap_or_else(|| {
                        "references start with input., env., secret., call., output. or step."
                            .into()
                    }));
                self.push(d);
                return None;
            }
        };
        let member = r.segments.get(1)?;
        if let Some(extra) = r.segments.get(2) {
            if ns == ir::Namespace::Input {
                self.used_inputs.insert(member.name.clone());
            }
            let d = self
                .diag(
                    Code::UnknownReference,
                    Span::new(extra.span.start.saturating_sub(1), r.span.end),
                    format!("`{}` has no fields", ref_text_n(r, 2)),
                )
                .label("remove this")
                .hint("map nested response data to outputs with a JSONPath instead");
            self.push(d);
            return None;
        }
        let name = member.name.clone();
        match ns {
            ir::Namespace::Input => {
                if !self.input_names.contains(&name) {
                    let near = closest(&name, self.input_names.iter().map(String::as_str))
                        .map(str::to_string);
                    let hint = near.as_ref().map(|n| format!("did you mean `{n}`?"));
                    if let Some(n) = near {
                        // A misspelt use is still a use: no "unused input" on top.
                        self.used_inputs.insert(n);
                    }
                    let d = self
                        .diag(
                            Code::UnknownInput,
                            member.span,
                            format!("unknown input `{name}`"),
                        )
                        .label("no input of this name in this action")
                        .hint_opt(hint.or_else(|| {
                            Some(format!("declare it: `input {name}: string \"...\"`"))
                        }));
                    self.push(d);
                    return None;
                }
                self.used_inputs.insert(name.clone());
                if self.in_request && !self.request_inputs.iter().any(|(n, _)| *n == name) {
                    self.request_inputs.push((name.clone(), member.span));
                }
            }
            ir::Namespace::Step => return None,
            ir::Namespace::Output => {
                if place != Place::Say && !self.outputs_known {
                    let d = self
                        .diag(
                            Code::ReferenceNotAllowed,
                            r.span,
                            format!("`{}` is not known yet here", ref_text(r)),
                        )
                        .label("outputs exist only after the response")
                        .hint("outputs can be used in `say` texts and deferred steps; read a step's values with `step.NAME.VALUE`");
                    self.push(d);
                    return None;
                }
                if !self.output_names.contains(&name) {
                    let hint = name_hint(
                        &name,
                        self.output_names.iter().map(String::as_str),
                        "outputs",
                    );
                    let d = self
                        .diag(
                            Code::UnknownOutput,
                            member.span,
                            format!("unknown output `{name}`"),
                        )
                        .label("no output of this name in this action")
                        .hint(hint);
                    self.push(d);
                    return None;
                }
            }
            ir::Namespace::Call => {
                if !CALL_MEMBERS.contains(&name.as_str()) {
                    let hint = did_you_mean(&name, CALL_MEMBERS.iter().copied());
                    let d = self
                        .diag(
                            Code::UnknownReference,
                            member.span,
                            format!("`call` has no member `{name}`"),
                        )
                        .label("unknown")
                        .hint(hint.unwrap_or_else(|| "use call.id or call.from".into()));
                    self.push(d);
                    return None;
                }
            }
            ir::Namespace::Env => {
                self.env.insert(name.clone());
            }
            ir::Namespace::Secret => {
                self.secrets.insert(name.clone());
                if place != Place::Credential {
                    let (where_, hint) = match place {
                        Place::Say => (
                            "spoken text",
                            "a secret must never be read out to the caller; remove it from the text".to_string(),
                        ),
                        _ if self.site == "a query parameter" => (
                            self.site,
                            format!("an API key in the query is a credential: write `auth query \"{}\" secret.{name}` so it is redacted from logs", self.query_name),
                        ),
                        _ => (
                            self.site,
                            format!("send it with `auth` or `header \"NAME\" = secret.{name}`; use `env.{name}` for a value that is not secret"),
                        ),
                    };
                    let d = self
                        .diag(
                            Code::SecretMisplaced,
                            r.span,
                            format!("secret `{name}` is used in {where_}"),
                        )
                        .label("secrets may only be sent in `auth` or `header`")
                        .hint(hint);
                    self.push(d);
                    return None;
                }
            }
        }
        Some(ir::Ref { ns, name })
    }

    fn template_parts(&mut self, s: &ast::StrLit) -> Option<Vec<TPart>> {
        match template::parse(self.file, s) {
            Ok(p) => Some(p),
            Err(d) => {
                self.push(*d);
                None
            }
        }
    }

    fn template(&mut self, s: &ast::StrLit, place: Place) -> Option<ir::Template> {
        let parts = self.template_parts(s)?;
        let mut out = Vec::new();
        let mut ok = true;
        for p in parts {
            match p {
                TPart::Text(t) => out.push(ir::Part::Text(t)),
                TPart::Ref(r) => match self.reference(&r, place) {
                    Some(r) => out.push(ir::Part::Ref(r)),
                    None => ok = false,
                },
            }
        }
        ok.then_some(ir::Template { parts: out })
    }

    fn expr(&mut self, e: &ast::Expr, place: Place) -> Option<ir::Expr> {
        Some(match e {
            ast::Expr::Ref(r) => ir::Expr::Ref(self.reference(r, place)?),
            ast::Expr::Str(s) => {
                let t = self.template(s, place)?;
                match t.parts.as_slice() {
                    [ir::Part::Text(text)] => ir::Expr::Literal(Json::String(text.clone())),
                    _ => ir::Expr::Template(t),
                }
            }
            ast::Expr::Number(n, _) => ir::Expr::Literal(Json::Number(n.clone())),
            ast::Expr::Bool(b, _) => ir::Expr::Literal(Json::Bool(*b)),
            ast::Expr::Null(_) => ir::Expr::Literal(Json::Null),
        })
    }

    fn json_template(&mut self, v: &ast::Value) -> Option<ir::JsonTemplate> {
        Some(match v {
            ast::Value::Object(members, _) => {
                let mut out = Vec::new();
                let mut ok = true;
                let mut seen: HashMap<String, Span> = HashMap::new();
                for m in members {
                    let key = self.key(&m.key);
                    if let Some(k) = &key {
                        if let Some(first) = seen.get(k) {
                            let d = self
                                .diag(
                                    Code::DuplicateItem,
                                    m.key.span(),
                                    format!("key {k:?} is given twice"),
                                )
                                .label("second one")
                                .secondary(self.file, *first, "first one here")
                                .hint("a JSON object has each key once: remove one");
                            self.push(d);
                            ok = false;
                        }
                        seen.insert(k.clone(), m.key.span());
                    }
                    let val = self.json_template(&m.value);
                    match (key, val) {
                        (Some(k), Some(v)) => out.push((k, v)),
                        _ => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                ir::JsonTemplate::Object(out)
            }
            ast::Value::Array(items, _) => {
                let vals: Vec<Option<ir::JsonTemplate>> =
                    items.iter().map(|i| self.json_template(i)).collect();
                ir::JsonTemplate::Array(vals.into_iter().collect::<Option<Vec<_>>>()?)
            }
            ast::Value::Scalar(e) => match self.expr(e, Place::Request)? {
                ir::Expr::Literal(v) => ir::JsonTemplate::Literal(v),
                ir::Expr::Ref(r) => ir::JsonTemplate::Ref(r),
                ir::Expr::Template(t) => ir::JsonTemplate::Template(t),
            },
        })
    }

    // ---- request --------------------------------------------------------------------------------

    fn request(&mut self, r: &ast::Request) -> Option<ir::Request> {
        use ast::RequestItem as RI;
        let method = match ir::Method::from_name(&r.method.name) {
            Some(m) => Some(m),
            None => {
                let upper = r.method.name.to_ascii_uppercase();
                let hint = if ir::Method::from_name(&upper).is_some() {
                    Some(format!("methods are written in capitals: `{upper}`"))
                } else {
                    did_you_mean(&upper, ir::Method::ALL.iter().map(|m| m.as_str()))
                };
                let d = self
                    .diag(
                        Code::UnknownMethod,
                        r.method.span,
                        format!("unknown HTTP method `{}`", r.method.name),
                    )
                    .label("not a method")
                    .hint(hint.unwrap_or_else(|| {
                        let all: Vec<&str> = ir::Method::ALL.iter().map(|m| m.as_str()).collect();
                        format!("methods: {}", all.join(", "))
                    }));
                self.push(d);
                None
            }
        };
        let url = self.url(&r.url);

        let mut ok = true;
        let mut query = Vec::new();
        let mut headers = Vec::new();
        let mut auth = None;
        let mut body: Option<(ir::Body, Span)> = None;
        let mut idempotency_key = None;
        // Given, even if broken: a broken key is reported once, not again as a missing one.
        let mut idempotency_given = false;
        let mut timeout: Option<(u64, Span)> = None;
        let mut per_try: Option<(u64, Span)> = None;
        let mut retry: Option<(ir::Retry, Span)> = None;
        let mut max_response: Option<(u64, Span)> = None;
        let mut read_only = false;
        let mut seen: HashMap<&'static str, Span> = HashMap::new();

        for item in &r.items {
            let key = match item {
                RI::Query(_) | RI::Header(_) => None,
                RI::Auth(_) => Some("auth"),
                RI::Body(..) | RI::Form(..) => Some("body"),
                RI::IdempotencyKey(..) => Some("idempotency_key"),
                RI::Timeout(..) => Some("timeout"),
                RI::PerTry(..) => Some("per_try"),
                RI::Retry { .. } => Some("retry"),
                RI::MaxResponse(..) => Some("max_response"),
                RI::ReadOnly(_) => Some("read_only"),
            };
            if let Some(key) = key {
                let keyword = match item {
                    RI::Form(..) => "form",
                    _ => key,
                };
                let span = Self::keyword_span(item.span(), keyword);
                if let Some(first) = seen.get(key) {
                    let (message, hint) = if key == "body" {
                        (
                            "this request has two bodies".to_string(),
                            "a request sends one body: keep one `body { ... }` or `form { ... }`"
                                .to_string(),
                        )
                    } else {
                        (
                            format!("`{key}` is given twice in this request"),
                            format!("keep one `{key}`"),
                        )
                    };
                    let d = self
                        .diag(Code::DuplicateItem, span, message)
                        .label("second one")
                        .secondary(self.file, *first, "first one here")
                        .hint(hint);
                    self.push(d);
                    ok = false;
                    continue;
                }
                seen.insert(key, span);
            }
            self.site = match item {
                RI::Query(p) => {
                    self.query_name = p.name.raw.clone();
                    "a query parameter"
                }
                RI::Body(..) => "the body",
                RI::Form(..) => "the form body",
                RI::IdempotencyKey(..) => "the idempotency key",
                _ => "the request",
            };
            match item {
                RI::Query(p) => match self.param(p, Place::Request) {
                    Some(p) => query.push(p),
                    None => ok = false,
                },
                RI::Header(p) => match self.header(p) {
                    Some(p) => headers.push(p),
                    None => ok = false,
                },
                RI::Auth(a) => {
                    auth = self.auth(a);
                    ok &= auth.is_some();
                }
                RI::Body(v, span) => match self.json_template(v) {
                    Some(t) => body = Some((ir::Body::Json { template: t }, *span)),
                    None => ok = false,
                },
                RI::Form(v, span) => match self.form(v) {
                    Some(fields) => body = Some((ir::Body::Form { fields }, *span)),
                    None => ok = false,
                },
                RI::IdempotencyKey(e, _) => {
                    idempotency_given = true;
                    idempotency_key = self.expr(e, Place::Request);
                    ok &= idempotency_key.is_some();
                }
                RI::Timeout(d, span) => timeout = self.duration(d, "timeout").map(|ms| (ms, *span)),
                RI::PerTry(d, span) => per_try = self.duration(d, "per_try").map(|ms| (ms, *span)),
                RI::Retry {
                    count,
                    backoff,
                    span,
                } => {
                    let backoff_ms = match backoff {
                        Some(b) => self.duration(b, "backoff"),
                        None => Some(DEFAULT_BACKOFF_MS),
                    };
                    match (count.value, backoff_ms) {
                        (Some(n), Some(b)) if n <= 10 => {
                            retry = Some((
                                ir::Retry {
                                    attempts: n as u32,
                                    backoff_ms: b,
                                },
                                *span,
                            ))
                        }
                        (Some(_), Some(_)) => {
                            let d = self
                                .diag(Code::NumberOutOfRange, count.span, "at most 10 retries")
                                .label("too many retries")
                                .hint("a caller is waiting: one or two retries are usually right");
                            self.push(d);
                            ok = false;
                        }
                        _ => ok = false,
                    }
                }
                RI::MaxResponse(s, span) => match s.bytes {
                    Some(0) => {
                        self.err(Code::ZeroDuration, *span, "max_response of zero bytes")
                            .primary
                            .message = "no response could fit".into();
                        ok = false;
                    }
                    Some(b) => max_response = Some((b, *span)),
                    None => ok = false,
                },
                RI::ReadOnly(_) => read_only = true,
            }
        }

        let timeout_ms = timeout.map_or(DEFAULT_TIMEOUT_MS, |t| t.0);
        if let Some((ms, span)) = timeout.filter(|_| !self.deferred_request) {
            self.timeout_limits(ms, span);
        }
        if let Some((ms, span)) = per_try {
            if ms > timeout_ms {
                let d = self
                    .diag(Code::PerTryOverTimeout, span, format!("per_try of {} is longer than the timeout of {}", fmt_ms(ms), fmt_ms(timeout_ms)))
                    .label("can never be reached")
                    .hint("`timeout` bounds the whole call, every retry included; `per_try` bounds one attempt");
                self.push(d);
            }
        }
        let max_response_bytes = max_response.map_or(DEFAULT_MAX_RESPONSE, |m| m.0);
        if let Some((bytes, span)) = max_response {
            if bytes > MAX_RESPONSE_ERROR {
                let d = self
                    .diag(
                        Code::ResponseTooLarge,
                        span,
                        format!("max_response of {} is over the 5MB limit", fmt_bytes(bytes)),
                    )
                    .label("too large for a live call")
                    .hint("ask the API for less (fields, page size); 2MB or less is recommended");
                self.push(d);
            } else if bytes > MAX_RESPONSE_WARN {
                let d = self
                    .diag(
                        Code::ResponseLarge,
                        span,
                        format!(
                            "max_response of {} is over the recommended 2MB",
                            fmt_bytes(bytes)
                        ),
                    )
                    .label("large responses slow the answer")
                    .hint("ask the API for less (fields, page size)");
                self.push(d);
            }
        }
        if let (Some(m), Some((rt, span))) = (method, &retry) {
            if rt.attempts > 0 && !m.is_idempotent() && !idempotency_given && !read_only {
                let d = self
                    .diag(
                        Code::RetryWithoutIdempotencyKey,
                        *span,
                        format!("a {} is retried without an idempotency key", m.as_str()),
                    )
                    .label("a retry could perform the write twice")
                    .secondary(self.file, r.method.span, "not idempotent")
                    .hint("add `idempotency_key \"{call.id}-...\"`, mark a read-only endpoint `read_only`, or remove the retry");
                self.push(d);
            }
            if rt.attempts > 0 && rt.backoff_ms >= timeout_ms {
                let d = self
                    .diag(
                        Code::RetryNeverRuns,
                        *span,
                        "the backoff is as long as the whole timeout: no retry can ever run",
                    )
                    .label("never runs")
                    .hint("`timeout` bounds the whole call, every retry and backoff included");
                self.push(d);
            }
        }
        if let (Some(m), Some((b, span))) = (method, &body) {
            if matches!(m, ir::Method::GET | ir::Method::HEAD) {
                let keyword = match b {
                    ir::Body::Form { .. } => "form",
                    _ => "body",
                };
                let d = self
                    .diag(
                        Code::BodyOnRead,
                        Self::keyword_span(*span, keyword),
                        format!("a {} request cannot carry a body", m.as_str()),
                    )
                    .label(format!("{} requests have no body", m.as_str()))
                    .secondary(self.file, r.method.span, "the method")
                    .hint("send the values as `query \"name\" = input.x`, or use POST if the API expects a body");
                self.push(d);
                ok = false;
            }
        }

        Some(ir::Request {
            method: method?,
            url: url?,
            query,
            headers,
            auth,
            body: body.map(|b| b.0),
            idempotency_key,
            timeout_ms,
            per_try_ms: per_try.map(|p| p.0),
            retry: retry.map(|r| r.0).unwrap_or(ir::Retry {
                attempts: 0,
                backoff_ms: DEFAULT_BACKOFF_MS,
            }),
            max_response_bytes,
            read_only,
        })
        .filter(|_| ok)
    }

    /// The live-call limits of a timeout: an error over 10 s, a warning over 5 s.
    fn timeout_limits(&mut self, ms: u64, span: Span) {
        if ms > TIMEOUT_ERROR_MS {
            let d = self
                .diag(
                    Code::TimeoutTooLong,
                    span,
                    format!(
                        "timeout of {} is over the 10 s limit of a live call",
                        fmt_ms(ms)
                    ),
                )
                .label("too long for a caller waiting in silence")
                .hint("use 5s or less; give the caller a fallback instead of a long wait");
            self.push(d);
        } else if ms > TIMEOUT_WARN_MS {
            let d = self
                .diag(
                    Code::TimeoutLong,
                    span,
                    format!("timeout of {} is over the recommended 5 s", fmt_ms(ms)),
                )
                .label("the caller waits in silence this long")
                .hint("5s or less is recommended for a live call");
            self.push(d);
        }
    }

    /// A duration; zero is refused. `what` names it ("timeout", "backoff", ...).
    fn duration(&mut self, d: &ast::Duration, what: &str) -> Option<u64> {
        match d.ms {
            Some(0) => {
                let hint = match what {
                    "timeout" => "remove `timeout` to use the default of 5s, or give the time the caller can wait, like `3s`",
                    "backoff" => "write `backoff 100ms`, or leave `backoff` out for the default of 100ms",
                    "ttl" => "to not cache, remove the `cache` block",
                    _ => "give a duration longer than zero, like `200ms` or `2s`",
                };
                let d = self
                    .diag(Code::ZeroDuration, d.span, format!("a {what} of zero"))
                    .label("must be longer than zero")
                    .hint(hint);
                self.push(d);
                None
            }
            other => other,
        }
    }

    fn param(&mut self, p: &ast::Param, place: Place) -> Option<ir::Param> {
        let name = self.plain_string(&p.name)?;
        let value = self.expr(&p.value, place)?;
        Some(ir::Param { name, value })
    }

    fn header(&mut self, p: &ast::Param) -> Option<ir::Param> {
        let param = self.param(p, Place::Credential)?;
        if !valid_header_name(&param.name) {
            let d = self
                .diag(
                    Code::InvalidHeader,
                    p.name.span,
                    format!("{:?} is not a valid header name", param.name),
                )
                .label("header names are letters, digits and -")
                .hint("for example \"X-Api-Key\"");
            self.push(d);
            return None;
        }
        if let ir::Expr::Literal(Json::String(v)) = &param.value {
            if v.contains(['\r', '\n', '\0']) {
                let d = self
                    .diag(
                        Code::InvalidHeader,
                        p.value.span(),
                        "a header value cannot contain a line break",
                    )
                    .label("would split the header");
                self.push(d);
                return None;
            }
        }
        Some(param)
    }

    fn form(&mut self, v: &ast::Value) -> Option<Vec<ir::Param>> {
        let ast::Value::Object(members, _) = v else {
            return None;
        };
        let mut fields = Vec::new();
        let mut ok = true;
        for m in members {
            let name = self.key(&m.key);
            let value = match &m.value {
                ast::Value::Scalar(e) => self.expr(e, Place::Request),
                other => {
                    let d = self
                        .diag(
                            Code::TypeMismatch,
                            other.span(),
                            "form fields hold single values",
                        )
                        .label("a list or object cannot be form-encoded")
                        .hint("use `body { ... }` to send JSON");
                    self.push(d);
                    None
                }
            };
            match (name, value) {
                (Some(name), Some(value)) => fields.push(ir::Param { name, value }),
                _ => ok = false,
            }
        }
        ok.then_some(fields)
    }

    fn auth(&mut self, a: &ast::Auth) -> Option<ir::Auth> {
        use ast::AuthKind as K;
        Some(match &a.kind {
            K::Bearer(t) => ir::Auth::Bearer {
                token: self.expr(t, Place::Credential)?,
            },
            K::Basic(u, p) => {
                let user = self.expr(u, Place::Credential);
                let password = self.expr(p, Place::Credential);
                ir::Auth::Basic {
                    user: user?,
                    password: password?,
                }
            }
            K::Header(n, v) => {
                let name = self.plain_string(n)?;
                if !valid_header_name(&name) {
                    let d = self
                        .diag(
                            Code::InvalidHeader,
                            n.span,
                            format!("{name:?} is not a valid header name"),
                        )
                        .label("header names are letters, digits and -");
                    self.push(d);
                    return None;
                }
                ir::Auth::Header {
                    name,
                    value: self.expr(v, Place::Credential)?,
                }
            }
            K::Query(n, v) => {
                let name = self.plain_string(n)?;
                // An API key in the query is a credential by nature; it is redacted in logs.
                ir::Auth::Query {
                    name,
                    value: self.expr(v, Place::Credential)?,
                }
            }
            K::OAuth2(items) => {
                let mut token_url = None;
                let mut token_url_span = a.span;
                let mut client_id = None;
                let mut client_secret = None;
                let mut scope = None;
                let mut ok = true;
                for (k, v) in items {
                    let place = if k.name == "token_url" {
                        self.site = "the token URL";
                        token_url_span = v.span();
                        Place::Request
                    } else {
                        Place::Credential
                    };
                    if k.name == "token_url" {
                        // The token URL receives the client secret: nothing the caller says may
                        // choose where it goes.
                        let refs: Vec<ast::RefExpr> = match v {
                            ast::Expr::Ref(r) => vec![r.clone()],
                            ast::Expr::Str(lit) => match template::parse(self.file, lit) {
                                Ok(parts) => parts
                                    .into_iter()
                                    .filter_map(|p| match p {
                                        TPart::Ref(r) => Some(r),
                                        TPart::Text(_) => None,
                                    })
                                    .collect(),
                                Err(_) => Vec::new(),
                            },
                            _ => Vec::new(),
                        };
                        let mut fixed = true;
                        for r in refs
                            .iter()
                            .filter(|r| r.segments.first().is_some_and(|s| s.name != "env"))
                        {
                            let d = self
                                .diag(
                                    Code::ValueInOrigin,
                                    r.span,
                                    format!(
                                        "`{}` could choose where the client secret is sent",
                                        ref_text(r)
                                    ),
                                )
                                .label("the token URL must be fixed")
                                .hint("write the token URL literally, or take it from `env.`");
                            self.push(d);
                            if let [ns, name] = r.segments.as_slice() {
                                if ns.name == "input" {
                                    // Reported above; not also "unused".
                                    self.used_inputs.insert(name.name.clone());
                                }
                            }
                            fixed = false;
                        }
                        if !fixed {
                            ok = false;
                            continue;
                        }
                    }
                    let e = self.expr(v, place);
                    ok &= e.is_some();
                    let slot = match k.name.as_str() {
                        "token_url" => &mut token_url,
                        "client_id" => &mut client_id,
                        "client_secret" => &mut client_secret,
                        _ => &mut scope,
                    };
                    if slot.is_some() {
                        let d = self
                            .diag(
                                Code::DuplicateItem,
                                k.span,
                                format!("`{}` is given twice", k.name),
                            )
                            .label("second one");
                        self.push(d);
                        ok = false;
                    }
                    *slot = e;
                }
                let token_url_text = match &token_url {
                    Some(ir::Expr::Literal(Json::String(u))) => Some(u.as_str()),
                    Some(ir::Expr::Template(t)) => match t.parts.first() {
                        Some(ir::Part::Text(u)) => Some(u.as_str()),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(u) = token_url_text {
                    if !u.starts_with("https://") {
                        let d = self
                            .diag(
                                Code::InvalidUrl,
                                token_url_span,
                                "the OAuth2 token URL must use https://",
                            )
                            .label("the client secret would travel unencrypted")
                            .hint("write the token URL with https://, for example \"https://auth.example.com/oauth/token\"");
                        self.push(d);
                        ok = false;
                    }
                }
                let missing: Vec<&str> = [
                    ("token_url", token_url.is_none()),
                    ("client_id", client_id.is_none()),
                    ("client_secret", client_secret.is_none()),
                ]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(n, _)| *n)
                .collect();
                if !missing.is_empty() && ok {
                    let list = missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let d = self
                        .diag(Code::MissingItem, Self::keyword_span(a.span, "auth"), format!("`auth oauth2` needs {list}"))
                        .label(format!("missing {list}"))
                        .hint("auth oauth2 { token_url \"https://...\" client_id env.ID client_secret secret.SECRET scope \"read\" }");
                    self.push(d);
                }
                if !ok || !missing.is_empty() {
                    return None;
                }
                ir::Auth::Oauth2 {
                    token_url: token_url?,
                    client_id: client_id?,
                    client_secret: client_secret?,
                    scope,
                }
            }
        })
    }

    /// The URL template: where each reference lands decides its encoding, and nothing but `env`
    /// may stand in the scheme, host or port.
    fn url(&mut self, lit: &ast::StrLit) -> Option<ir::UrlTemplate> {
        self.site = "the URL";
        let parts = self.template_parts(lit)?;
        let mut ctx = ir::UrlContext::Origin;
        let mut out = Vec::new();
        let mut ok = true;
        let starts_with_env = matches!(parts.first(), Some(TPart::Ref(r)) if r.segments.first().is_some_and(|s| s.name == "env"));
        let mut scheme_seen = starts_with_env;
        for (idx, p) in parts.iter().enumerate() {
            match p {
                TPart::Text(t) => {
                    let mut rest = t.as_str();
                    if idx == 0 && !starts_with_env {
                        if let Some(r) = rest.strip_prefix("https://") {
                            rest = r;
                            scheme_seen = true;
                        } else if let Some(r) = rest.strip_prefix("http://") {
                            rest = r;
                            scheme_seen = true;
                            let d = self
                                .diag(Code::PlainHttp, Span::new(lit.content_start(), lit.content_start() + 7), "plain http:// sends data unencrypted")
                                .label("not encrypted")
                                .hint("use https://; plain http is refused at run time unless `--allow-private` is given");
                            self.push(d);
                        } else {
                            // Point at what stands where the scheme should be: another scheme, or
                            // the host written without one.
                            let (head, message, hint) = match rest.find("://") {
                                Some(i) => (
                                    i + 3,
                                    format!(
                                        "the URL uses `{}`; only https:// is allowed",
                                        &rest[..i + 3]
                                    ),
                                    if rest[..i].eq_ignore_ascii_case("https")
                                        || rest[..i].eq_ignore_ascii_case("http")
                                    {
                                        "write the scheme in lowercase: \"https://...\"".to_string()
                                    } else {
                                        "write \"https://...\"".to_string()
                                    },
                                ),
                                None => {
                                    let host = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                                    (
                                        host,
                                        "the URL must start with https:// or with an env reference like {env.API_URL}".to_string(),
                                        if host > 0 && !rest.starts_with('/') {
                                            format!("write \"https://{}...\"", &rest[..host])
                                        } else {
                                            "write the whole URL, for example \"https://api.example.com/v1/items\", or \"{env.API_URL}/v1/items\"".to_string()
                                        },
                                    )
                                }
                            };
                            // Offsets in the text are offsets in the literal when nothing was escaped.
                            let span = if head > 0 && lit.raw.get(..head) == rest.get(..head) {
                                Span::new(lit.content_start(), lit.content_start() + head)
                            } else {
                                lit.span
                            };
                            let d = self
                                .diag(Code::InvalidUrl, span, message)
                                .label("no https:// before the host")
                                .hint(hint);
                            self.push(d);
                            ok = false;
                        }
                        if ctx == ir::UrlContext::Origin && scheme_seen {
                            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                            if host.is_empty() && parts.len() == 1 {
                                let d = self
                                    .diag(Code::InvalidUrl, lit.span, "the URL has no host")
                                    .label("missing host")
                                    .hint("write the host after https://, for example \"https://api.example.com/v1/items\"");
                                self.push(d);
                                ok = false;
                            }
                        }
                    }
                    for c in rest.chars() {
                        ctx = match (ctx, c) {
                            (ir::UrlContext::Origin, '/') => ir::UrlContext::Path,
                            (ir::UrlContext::Origin | ir::UrlContext::Path, '?') => {
                                ir::UrlContext::Query
                            }
                            (ir::UrlContext::Fragment, _) => ir::UrlContext::Fragment,
                            (_, '#') => ir::UrlContext::Fragment,
                            (c, _) => c,
                        };
                    }
                    out.push(ir::UrlPart::Text(t.clone()));
                }
                TPart::Ref(r) => {
                    let is_env = r.segments.first().is_some_and(|s| s.name == "env");
                    if ctx == ir::UrlContext::Origin && !is_env {
                        let what = ref_text(r);
                        let hint = if r.segments.first().is_some_and(|s| s.name == "secret") {
                            "the host must be written out or come from `env.`; secrets go in `auth` or `header`"
                        } else if idx == 0 {
                            "write the scheme and host out, or take them from `env.`: \"https://api.example.com/{input.x}\" or \"{env.API_URL}/{input.x}\""
                        } else {
                            "the host must be written out or come from `env.`; put call values in the path after a `/`, or in `query \"name\" = ...`"
                        };
                        let d = self
                            .diag(
                                Code::ValueInOrigin,
                                r.span,
                                format!("`{what}` could change the URL's scheme, host or port"),
                            )
                            .label("stands before the path starts")
                            .hint(hint);
                        self.push(d);
                        ok = false;
                        // Still resolve it, so other mistakes in it are reported too.
                        if r.segments.first().is_some_and(|s| s.name != "secret") {
                            self.reference(r, Place::Request);
                        }
                        continue;
                    }
                    match self.reference(r, Place::Request) {
                        Some(rf) => out.push(ir::UrlPart::Ref { r#ref: rf, at: ctx }),
                        None => ok = false,
                    }
                }
            }
        }
        ok.then_some(ir::UrlTemplate { parts: out })
    }

    // ---- outputs --------------------------------------------------------------------------------

    /// The action's outputs: JSONPaths into the one response, or (`with_steps`) expressions
    /// over step values.
    fn outputs(
        &mut self,
        declared: &Declared,
        with_steps: bool,
        has_request: bool,
    ) -> Option<Vec<ir::Output>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (o, ty) in &declared.outputs {
            let source = match (&o.mapping.source, with_steps) {
                (ast::Source::Path { func, path }, true) => {
                    let span = func.as_ref().map_or(path.span, |f| f.span.to(path.span));
                    let d = self
                        .diag(
                            Code::StepForm,
                            span,
                            format!("`{}` maps a JSONPath, but this action has steps", o.name.name),
                        )
                        .label("which step's response?")
                        .hint(format!("map the response in the step's `output {{ }}`, and write `{}: {} = step.NAME.VALUE` here", o.name.name, self.text.get(o.ty.span.start..o.ty.span.end).unwrap_or(&o.ty.name.name)));
                    self.push(d);
                    None
                }
                (ast::Source::Path { .. }, false) if !has_request => {
                    let d = self
                        .diag(
                            Code::StepForm,
                            o.mapping.span,
                            format!("`{}` maps a JSONPath, but this action has no live request", o.name.name),
                        )
                        .label("no response to map")
                        .hint("a deferred step's response is never read: give the output a value in a live step, or remove it");
                    self.push(d);
                    None
                }
                (ast::Source::Path { .. }, false) => self
                    .mapping(&o.mapping, ty.as_ref(), &o.name.name)
                    .map(ir::Source::Path),
                (ast::Source::Expr(c), true) => match ty {
                    Some(ty) => self.computed_output(o, c, ty),
                    None => None,
                },
                (ast::Source::Expr(c), false) => {
                    self.expected_path(c, &o.name.name);
                    None
                }
            };
            let when = match &o.when {
                None => Some(None),
                Some(w) => {
                    let t = self.when(w, Place::Value);
                    if let (Some(_), Some(ty)) = (&t, ty) {
                        if !ty.is_optional() {
                            let d = self
                                .diag(
                                    Code::ConditionType,
                                    Self::keyword_span(w.span, "when"),
                                    format!("`{}` is null when its condition does not hold, but `{}` is not optional", o.name.name, ty.display()),
                                )
                                .label("null when the condition fails")
                                .hint(format!("declare `{}: {}?`", o.name.name, ty.display()));
                            self.push(d);
                        }
                    }
                    t.map(Some)
                }
            };
            match (ty, source, when) {
                (Some(ty), Some(source), Some(when)) => out.push(ir::Output {
                    name: o.name.name.clone(),
                    ty: ty.clone(),
                    source,
                    when,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn mapping(
        &mut self,
        m: &ast::Mapping,
        ty: Option<&ir::Ty>,
        output: &str,
    ) -> Option<ir::Mapping> {
        let ast::Source::Path { func, path } = &m.source else {
            return None;
        };
        let kind = match func {
            None => ir::MappingKind::Path,
            Some(f) => match f.name.as_str() {
                "exists" => ir::MappingKind::Exists,
                "count" => ir::MappingKind::Count,
                "first" => ir::MappingKind::First,
                other => {
                    let hint =
                        did_you_mean(other, MAPPING_FUNCTIONS.iter().copied()).or_else(|| {
                            ["size", "len", "length", "number"]
                                .contains(&other)
                                .then(|| {
                                    "to count the matches of a path, use `count(...)`".to_string()
                                })
                        });
                    let d = self
                        .diag(
                            Code::UnknownMappingFunction,
                            f.span,
                            format!("unknown mapping function `{other}`"),
                        )
                        .label("not a mapping function")
                        .hint(hint.unwrap_or_else(|| {
                            "mapping functions: exists(path), count(path), first(path)".into()
                        }));
                    self.push(d);
                    return None;
                }
            },
        };
        let checked = match crate::jsonpath::check(&path.text) {
            Ok(c) => c,
            Err(e) => {
                let code = if e.typing {
                    Code::JsonPathFunction
                } else {
                    Code::InvalidJsonPath
                };
                let start = path.span.start + e.start;
                let end = (path.span.start + e.end)
                    .max(start + 1)
                    .min(path.span.end.max(start + 1));
                let d = self
                    .diag(code, Span::new(start, end), e.message)
                    .label(e.label)
                    .hint_opt(e.hint);
                self.push(d);
                return None;
            }
        };
        let default = match &m.default {
            Some(v) => {
                let json = self.literal(v, "a `??` default")?;
                if let Some(ty) = ty {
                    if !self.check_value(ty, &json, v, &format!("the default of `{output}`")) {
                        return None;
                    }
                }
                Some(json)
            }
            None => None,
        };
        if let Some(ty) = ty {
            let base = ty.base();
            let func_span = func.as_ref().map_or(path.span, |f| f.span);
            match kind {
                ir::MappingKind::Exists if *base != ir::Ty::Bool => {
                    let d = self
                        .diag(
                            Code::MappingType,
                            func_span,
                            format!(
                                "`exists(...)` gives true or false, but `{output}` is `{}`",
                                ty.display()
                            ),
                        )
                        .label("gives true or false")
                        .hint(format!(
                            "declare `{output}: bool`, or map a value with a plain path"
                        ));
                    self.push(d);
                    return None;
                }
                ir::MappingKind::Count if !matches!(base, ir::Ty::Int | ir::Ty::Number) => {
                    let d = self
                        .diag(
                            Code::MappingType,
                            func_span,
                            format!(
                                "`count(...)` gives a number, but `{output}` is `{}`",
                                ty.display()
                            ),
                        )
                        .label("gives a number")
                        .hint(if *base == ir::Ty::Bool {
                            format!("to test whether anything matches, use `exists(...)`; or declare `{output}: int`")
                        } else {
                            format!("declare `{output}: int`")
                        });
                    self.push(d);
                    return None;
                }
                ir::MappingKind::First if base.is_list() => {
                    let item = match base {
                        ir::Ty::List { item } => item.display(),
                        other => other.display(),
                    };
                    let d = self
                        .diag(
                            Code::MappingType,
                            func_span,
                            format!(
                                "`first(...)` gives one value, but `{output}` is `{}`",
                                ty.display()
                            ),
                        )
                        .label("gives one value")
                        .hint(format!(
                            "map the whole list with the plain path `{}`, or declare `{output}: {item}`",
                            path.text
                        ));
                    self.push(d);
                    return None;
                }
                ir::MappingKind::Path if !checked.singular && !base.is_list() => {
                    let (s, e) = checked.first_plural.unwrap_or((0, path.text.len()));
                    let d = self
                        .diag(
                            Code::NonSingularPath,
                            Span::new(path.span.start + s, path.span.start + e),
                            format!("this path can select several nodes, but `{output}` is a single `{}`", ty.display()),
                        )
                        .label("can select several nodes")
                        .hint(format!("use `first({})` for the first match, or declare `{output}: list<{}>`", path.text, base.display()));
                    self.push(d);
                    return None;
                }
                _ => {}
            }
        }
        Some(ir::Mapping {
            kind,
            path: path.text.clone(),
            singular: checked.singular,
            default,
        })
    }

    // ---- outcomes -------------------------------------------------------------------------------

    fn statuses(&mut self, statuses: &[ast::StatusLit]) -> Option<Vec<ir::StatusRange>> {
        let mut out = Vec::new();
        let mut ok = true;
        for s in statuses {
            match parse_status(&s.text) {
                Some(r) => out.push(r),
                None => {
                    let d = self
                        .diag(
                            Code::NumberOutOfRange,
                            s.span,
                            format!("`{}` is not an HTTP status", s.text),
                        )
                        .label("expected 100 to 599, or a class like 4xx")
                        .hint("for example `on 404` or `on 5xx`");
                    self.push(d);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn outcome(
        &mut self,
        items: &[ast::OutcomeItem],
        declared: &Declared,
        required: &[&str],
        span: Span,
        keyword: &str,
    ) -> Option<ir::Outcome> {
        let mut values = Vec::new();
        let mut say = None;
        let mut ok = true;
        let mut assigned: HashMap<String, Span> = HashMap::new();
        for item in items {
            match item {
                ast::OutcomeItem::Say(s) => {
                    if say.is_some() {
                        let d = self
                            .diag(
                                Code::DuplicateItem,
                                Self::keyword_span(s.span, "say"),
                                format!("`say` is given twice in this `{keyword}` block"),
                            )
                            .label("second one");
                        self.push(d);
                        ok = false;
                    }
                    say = self.template(&s.text, Place::Say);
                    ok &= say.is_some();
                }
                ast::OutcomeItem::Assign(a) => {
                    let name = &a.name.name;
                    let Some((_, ty)) = declared.outputs.iter().find(|(o, _)| &o.name.name == name)
                    else {
                        let hint = name_hint(
                            name,
                            declared.outputs.iter().map(|(o, _)| o.name.name.as_str()),
                            "outputs",
                        );
                        let d = self
                            .diag(
                                Code::UnknownOutput,
                                a.name.span,
                                format!("unknown output `{name}`"),
                            )
                            .label("not declared in `output { }`")
                            .hint(hint);
                        self.push(d);
                        ok = false;
                        continue;
                    };
                    if let Some(first) = assigned.get(name) {
                        let d = self
                            .diag(
                                Code::DuplicateItem,
                                a.name.span,
                                format!("`{name}` is assigned twice"),
                            )
                            .label("second assignment")
                            .secondary(self.file, *first, "first here");
                        self.push(d);
                        ok = false;
                        continue;
                    }
                    assigned.insert(name.clone(), a.name.span);
                    let json = self.literal(&a.value, &format!("a `{keyword}` value"));
                    match (json, ty) {
                        (Some(json), Some(ty)) => {
                            if self.check_value(
                                ty,
                                &json,
                                &a.value,
                                &format!("the value of `{name}`"),
                            ) {
                                values.push((name.clone(), json));
                            } else {
                                ok = false;
                            }
                        }
                        _ => ok = false,
                    }
                }
            }
        }
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|r| !assigned.contains_key(*r))
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let d = self
                .diag(
                    Code::UnassignedOutput,
                    Self::keyword_span(span, keyword),
                    format!(
                        "this `{keyword}` block leaves the required output{} {list} unassigned",
                        if missing.len() > 1 { "s" } else { "" }
                    ),
                )
                .label("the caller would get no value")
                .hint(format!(
                    "assign {}, or declare {} optional with `?`",
                    missing
                        .iter()
                        .map(|m| format!("`{m} = ...`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if missing.len() > 1 { "them" } else { "it" }
                ));
            self.push(d);
            ok = false;
        }
        ok.then_some(ir::Outcome { values, say })
    }

    // ---- cache ----------------------------------------------------------------------------------

    fn cache(&mut self, c: &ast::Cache, requests: &[&ast::Request]) -> Option<ir::Cache> {
        let mut ttl = None;
        let mut key = Vec::new();
        let mut scope = None;
        let mut stale = None;
        let mut ok = true;
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        for item in &c.items {
            let (word, span) = match item {
                ast::CacheItem::Ttl(_, s) => ("ttl", *s),
                ast::CacheItem::Key(_, s) => ("key", *s),
                ast::CacheItem::Scope(_, s) => ("scope", *s),
                ast::CacheItem::StaleIfError(_, s) => ("stale_if_error", *s),
            };
            if let Some(first) = seen.get(word) {
                let d = self
                    .diag(
                        Code::DuplicateItem,
                        Self::keyword_span(span, word),
                        format!("`{word}` is given twice in this cache"),
                    )
                    .label("second one")
                    .secondary(
                        self.file,
                        Self::keyword_span(*first, word),
                        "first one here",
                    )
                    .hint(if word == "key" {
                        "list every key input once: `key input.a, input.b`"
                    } else {
                        "keep one"
                    });
                self.push(d);
                ok = false;
                continue;
            }
            seen.insert(word, span);
            match item {
                ast::CacheItem::Ttl(d, _) => {
                    ttl = self.duration(d, "ttl").or_else(|| {
                        ok = false;
                        None
                    })
                }
                ast::CacheItem::StaleIfError(d, _) => stale = self.duration(d, "stale_if_error"),
                ast::CacheItem::Scope(s, _) => match s.name.as_str() {
                    "call" => scope = Some(ir::CacheScope::Call),
                    "global" => scope = Some(ir::CacheScope::Global),
                    other => {
                        let hint = did_you_mean(other, ["call", "global"].into_iter());
                        let d = self
                            .diag(Code::UnknownName, s.span, format!("unknown cache scope `{other}`"))
                            .label("expected `call` or `global`")
                            .hint(hint.unwrap_or_else(|| "`scope call` keeps entries for one call; `scope global` shares them".into()));
                        self.push(d);
                        ok = false;
                    }
                },
                ast::CacheItem::Key(exprs, _) => {
                    for e in exprs {
                        match e {
                            ast::Expr::Ref(r)
                                if r.segments.first().is_some_and(|s| s.name == "input") =>
                            {
                                match self.reference(r, Place::Request) {
                                    Some(rf) => key.push(rf.name),
                                    None => ok = false,
                                }
                            }
                            other => {
                                let d = self
                                    .diag(Code::ReferenceNotAllowed, other.span(), "a cache key is made of inputs")
                                    .label("expected `input.NAME`")
                                    .hint("for example `key input.phone`; per-call entries use `scope call`");
                                self.push(d);
                                ok = false;
                            }
                        }
                    }
                }
            }
        }
        if ttl.is_none() && ok {
            let d = self
                .diag(
                    Code::MissingItem,
                    Self::keyword_span(c.span, "cache"),
                    "this cache has no `ttl`",
                )
                .label("how long should entries live?")
                .hint("add `ttl 5m`");
            self.push(d);
            ok = false;
        }
        for r in requests {
            let safe = ir::Method::from_name(&r.method.name).is_some_and(|m| m.is_safe());
            let read_only = r
                .items
                .iter()
                .any(|i| matches!(i, ast::RequestItem::ReadOnly(_)));
            if ir::Method::from_name(&r.method.name).is_some() && !safe && !read_only {
                let d = self
                    .diag(Code::CacheOnWrite, Self::keyword_span(c.span, "cache"), format!("a {} request is cached", r.method.name))
                    .label("a cached write would be skipped")
                    .secondary(self.file, r.method.span, "not a read")
                    .hint("cache only reads; if this endpoint only reads (a search), add `read_only` to the request");
                self.push(d);
                ok = false;
                break;
            }
        }
        // Every input the request sends must be in the key, or one caller's answer is served
        // for another input.
        if ok {
            let key_span = c
                .items
                .iter()
                .find_map(|i| match i {
                    ast::CacheItem::Key(_, span) => Some(*span),
                    _ => None,
                })
                .unwrap_or_else(|| Self::keyword_span(c.span, "cache"));
            let missing: Vec<(String, Span)> = self
                .request_inputs
                .iter()
                .filter(|(n, _)| !key.contains(n))
                .cloned()
                .collect();
            if let Some((first, first_span)) = missing.first() {
                let list = missing
                    .iter()
                    .map(|(n, _)| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let full = key
                    .iter()
                    .chain(missing.iter().map(|(n, _)| n))
                    .map(|n| format!("input.{n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let d = self
                    .diag(
                        Code::MissingItem,
                        key_span,
                        format!("the cache key leaves out {list}, which the request sends"),
                    )
                    .label(format!(
                        "the answer for one `{first}` would be served for another"
                    ))
                    .secondary(self.file, *first_span, "sent to the API here")
                    .hint(format!("write `key {full}`"));
                self.push(d);
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        Some(ir::Cache {
            ttl_ms: ttl?,
            key,
            scope: scope.unwrap_or(ir::CacheScope::Call),
            stale_if_error_ms: stale,
        })
    }

    // ---- tests ----------------------------------------------------------------------------------

    fn test(
        &mut self,
        t: &ast::Test,
        name: String,
        declared: &Declared,
        request: Option<&ast::Request>,
        steps: &[&ast::Step],
    ) -> Option<ir::Test> {
        use ast::TestItem as TI;
        // A misspelt error code is reported on its own; it may have meant `invalid_input`, so
        // the test's inputs are then not type-checked either.
        let expects_invalid_input = t.items.iter().any(|i| {
            matches!(i, TI::ExpectError(code, _)
                if code.name == ir::Reason::InvalidInput.as_str()
                    || ir::Reason::from_name(&code.name).is_none())
        });
        let mut ok = true;
        let mut inputs = serde_json::Map::new();
        let mut input_given = false;
        let mut env = Vec::new();
        let mut secrets = Vec::new();
        let mut call_id = None;
        let mut call_from = None;
        let mut upstream = Vec::new();
        let mut step_upstream: Vec<(String, Vec<ir::UpstreamStub>)> = Vec::new();
        let mut step_stub_refused = false;
        let mut expectations = Vec::new();
        let mut needs_upstream: Option<Span> = None;

        for item in &t.items {
            match item {
                TI::Input(v, span) => {
                    if input_given {
                        let d = self
                            .diag(
                                Code::DuplicateItem,
                                Self::keyword_span(*span, "input"),
                                "`input` is given twice in this test",
                            )
                            .label("second one");
                        self.push(d);
                        ok = false;
                    }
                    input_given = true;
                    let ast::Value::Object(members, _) = v else {
                        continue;
                    };
                    for m in members {
                        let Some(key) = self.key(&m.key) else {
                            ok = false;
                            continue;
                        };
                        let names = declared.inputs.iter().map(|(i, _)| i.name.name.as_str());
                        let Some(at) = self.declared_key(&key, m.key.span(), names, "input") else {
                            ok = false;
                            continue;
                        };
                        let ty = &declared.inputs[at].1;
                        let Some(json) = self.literal(&m.value, "a test value") else {
                            ok = false;
                            continue;
                        };
                        if !expects_invalid_input {
                            if let Some(ty) = ty {
                                ok &= self.check_value(
                                    ty,
                                    &json,
                                    &m.value,
                                    &format!("test input `{key}`"),
                                );
                            }
                        }
                        inputs.insert(key, json);
                    }
                }
                TI::Upstream(step, u, span) => {
                    let stubs = match step {
                        None => &mut upstream,
                        Some(st) => match self.test_step(st, steps) {
                            Some(_) => {
                                let at = match step_upstream.iter().position(|(n, _)| *n == st.name)
                                {
                                    Some(at) => at,
                                    None => {
                                        step_upstream.push((st.name.clone(), Vec::new()));
                                        step_upstream.len() - 1
                                    }
                                };
                                &mut step_upstream[at].1
                            }
                            None => {
                                ok = false;
                                step_stub_refused = true;
                                continue;
                            }
                        },
                    };
                    stubs.push(match u {
                        ast::Upstream::Timeout => ir::UpstreamStub::Timeout,
                        ast::Upstream::Reset => ir::UpstreamStub::Reset,
                        ast::Upstream::Respond {
                            status,
                            headers,
                            body,
                        } => {
                            let code = status
                                .text
                                .parse::<u16>()
                                .ok()
                                .filter(|c| (100..=599).contains(c));
                            let Some(code) = code else {
                                let d = self
                                    .diag(
                                        Code::NumberOutOfRange,
                                        status.span,
                                        format!("`{}` is not an HTTP status", status.text),
                                    )
                                    .label("expected 100 to 599");
                                self.push(d);
                                ok = false;
                                continue;
                            };
                            let body_json = body.as_ref().and_then(|b| {
                                let j = self.literal(b, "an upstream body");
                                ok &= j.is_some();
                                j
                            });
                            let mut hs = Vec::new();
                            if let Some(h) = headers {
                                match self.literal(h, "an upstream header") {
                                    Some(Json::Object(map)) => {
                                        for (k, v) in map {
                                            match v {
                                                Json::String(s) => hs.push((k, s)),
                                                other => hs.push((k, other.to_string())),
                                            }
                                        }
                                    }
                                    _ => ok = false,
                                }
                            }
                            let _ = span;
                            ir::UpstreamStub::Respond {
                                status: code,
                                body: body_json,
                                headers: hs,
                            }
                        }
                    });
                }
                TI::Env(n, v, _) => {
                    if let Some(v) = self.plain_string(v) {
                        env.push((n.name.clone(), v));
                    }
                }
                TI::Secret(n, v, _) => {
                    if let Some(v) = self.plain_string(v) {
                        secrets.push((n.name.clone(), v));
                    }
                }
                TI::Call(v, _) => {
                    let key_span = |k: &str| match v {
                        ast::Value::Object(members, _) => members
                            .iter()
                            .find(|m| match &m.key {
                                ast::Key::Ident(i) => i.name == k,
                                ast::Key::Str(s) => s.raw == k,
                            })
                            .map_or(v.span(), |m| m.key.span()),
                        _ => v.span(),
                    };
                    if let Some(Json::Object(map)) = self.literal(v, "a call value") {
                        for (k, val) in map {
                            let s = match val {
                                Json::String(s) => s,
                                other => other.to_string(),
                            };
                            match k.as_str() {
                                "id" => call_id = Some(s),
                                "from" => call_from = Some(s),
                                other => {
                                    let hint = did_you_mean(other, CALL_MEMBERS.iter().copied())
                                        .unwrap_or_else(|| {
                                            "a test call has `id` and `from`".into()
                                        });
                                    let d = self
                                        .diag(
                                            Code::UnknownReference,
                                            key_span(other),
                                            format!("`call` has no member `{other}`"),
                                        )
                                        .label("expected `id` or `from`")
                                        .hint(hint);
                                    self.push(d);
                                    ok = false;
                                }
                            }
                        }
                    }
                }
                TI::ExpectRequest {
                    step,
                    method,
                    path,
                    headers,
                    body,
                    span,
                } => {
                    needs_upstream.get_or_insert(*span);
                    let step_request = match step {
                        None => None,
                        Some(st) => match self.test_step(st, steps) {
                            Some(s) => s.items.iter().find_map(|i| match i {
                                ast::Item::Request(r) => Some(r),
                                _ => None,
                            }),
                            None => {
                                ok = false;
                                continue;
                            }
                        },
                    };
                    let request = step_request.or(request);
                    let m = ir::Method::from_name(&method.name);
                    if m.is_none() {
                        let hint = did_you_mean(
                            &method.name.to_ascii_uppercase(),
                            ir::Method::ALL.iter().map(|m| m.as_str()),
                        );
                        let d = self
                            .diag(
                                Code::UnknownMethod,
                                method.span,
                                format!("unknown HTTP method `{}`", method.name),
                            )
                            .label("not a method")
                            .hint_opt(hint);
                        self.push(d);
                        ok = false;
                    }
                    if let (Some(m), Some(r)) = (m, request) {
                        if r.method.name != m.as_str()
                            && ir::Method::from_name(&r.method.name).is_some()
                        {
                            let d = self
                                .diag(
                                    Code::TypeMismatch,
                                    method.span,
                                    format!(
                                        "this action sends {}, never {}",
                                        r.method.name,
                                        m.as_str()
                                    ),
                                )
                                .label("can never match")
                                .secondary(self.file, r.method.span, "the request's method")
                                .hint(format!("write `expect request {} ...`", r.method.name));
                            self.push(d);
                            ok = false;
                        }
                    }
                    let p = self.plain_string(path);
                    let mut hs = Vec::new();
                    for h in headers {
                        let n = self.plain_string(&h.name);
                        let v = match &h.value {
                            ast::Expr::Str(s) => self.plain_string(s),
                            other => {
                                let d = self
                                    .diag(
                                        Code::TypeMismatch,
                                        other.span(),
                                        "an expected header value is a string",
                                    )
                                    .label("expected a string");
                                self.push(d);
                                None
                            }
                        };
                        match (n, v) {
                            (Some(n), Some(v)) => hs.push((n, v)),
                            _ => ok = false,
                        }
                    }
                    let b = body
                        .as_ref()
                        .and_then(|b| self.literal(b, "an expected body"));
                    if let (Some(m), Some(p)) = (m, p) {
                        expectations.push(ir::Expectation {
                            location: self.location(*span),
                            kind: ir::ExpectationKind::Request {
                                step: step.as_ref().map(|s| s.name.clone()),
                                method: m,
                                path: p,
                                headers: hs,
                                body: b,
                            },
                        });
                    }
                }
                TI::ExpectOutputs(v, span) | TI::ExpectFallback(Some(v), span) => {
                    needs_upstream.get_or_insert(*span);
                    let values = self.expected_outputs(v, declared);
                    ok &= values.is_some();
                    let values = values.unwrap_or_default();
                    let kind = if matches!(item, TI::ExpectOutputs(..)) {
                        ir::ExpectationKind::Outputs { values }
                    } else {
                        ir::ExpectationKind::Fallback { values }
                    };
                    expectations.push(ir::Expectation {
                        location: self.location(*span),
                        kind,
                    });
                }
                TI::ExpectFallback(None, span) => {
                    needs_upstream.get_or_insert(*span);
                    expectations.push(ir::Expectation {
                        location: self.location(*span),
                        kind: ir::ExpectationKind::Fallback { values: Vec::new() },
                    });
                }
                TI::ExpectError(code, span) => match ir::Reason::from_name(&code.name) {
                    Some(reason) => {
                        if reason != ir::Reason::InvalidInput {
                            needs_upstream.get_or_insert(*span);
                        }
                        expectations.push(ir::Expectation {
                            location: self.location(*span),
                            kind: ir::ExpectationKind::Error { reason },
                        });
                    }
                    None => {
                        let hint =
                            did_you_mean(&code.name, ir::Reason::ALL.iter().map(|r| r.as_str()));
                        let all = ir::Reason::ALL
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ");
                        let d = self
                            .diag(
                                Code::UnknownErrorCode,
                                code.span,
                                format!("unknown error code `{}`", code.name),
                            )
                            .label("not an error code")
                            .hint(hint.unwrap_or(format!("error codes: {all}")));
                        self.push(d);
                        ok = false;
                    }
                },
                TI::ExpectSay(s, span) => {
                    needs_upstream.get_or_insert(*span);
                    if let Some(text) = self.plain_string(s) {
                        expectations.push(ir::Expectation {
                            location: self.location(*span),
                            kind: ir::ExpectationKind::Say { text },
                        });
                    }
                }
            }
        }

        if expectations.is_empty() && ok {
            let d = self
                .diag(Code::TestNoExpectation, t.name.span, "this test expects nothing")
                .label("it can never fail")
                .hint("add `expect { output: value }`, `expect fallback`, `expect request ...` or `expect error CODE`");
            self.push(d);
            ok = false;
        }
        if let Some(span) = needs_upstream {
            let needs = request.is_some() || steps.iter().any(|s| s.deferred.is_none());
            if upstream.is_empty()
                && step_upstream.is_empty()
                && !step_stub_refused
                && needs
                && !expects_invalid_input
            {
                let d = self
                    .diag(Code::TestNoUpstream, Self::keyword_span(span, "expect"), "this test needs an upstream answer")
                    .label("what should the API answer?")
                    .hint("add `upstream 200 { ... }`, `upstream 503`, `upstream timeout` or `upstream reset`");
                self.push(d);
                ok = false;
            }
        }
        if !expects_invalid_input {
            for (i, ty) in &declared.inputs {
                let required = i.default.is_none() && ty.as_ref().is_some_and(|t| !t.is_optional());
                if required && !inputs.contains_key(&i.name.name) {
                    let d = self
                        .diag(
                            Code::TestMissingInput,
                            t.name.span,
                            format!("this test omits the required input `{}`", i.name.name),
                        )
                        .label(format!("no `{}` in `input {{ }}`", i.name.name))
                        .secondary(self.file, i.name.span, "declared here")
                        .hint("give it a value, or expect `error invalid_input`");
                    self.push(d);
                    ok = false;
                }
            }
        }
        ok.then(|| ir::Test {
            name,
            location: self.location(t.name.span),
            inputs,
            env,
            secrets,
            call_id,
            call_from,
            upstream,
            step_upstream,
            expectations,
        })
    }

    /// The step a test names (`upstream contact ...`), or an "unknown step" diagnostic.
    fn test_step<'s>(
        &mut self,
        name: &ast::Ident,
        steps: &[&'s ast::Step],
    ) -> Option<&'s ast::Step> {
        if let Some(s) = steps.iter().find(|s| s.name.name == name.name) {
            return Some(s);
        }
        let hint = if steps.is_empty() {
            "this action has no steps: write `upstream 200 { ... }` for its request".to_string()
        } else {
            name_hint(
                &name.name,
                steps.iter().map(|s| s.name.name.as_str()),
                "steps",
            )
        };
        let d = self
            .diag(
                Code::UnknownStep,
                name.span,
                format!("unknown step `{}`", name.name),
            )
            .label("no step of this name in this action")
            .hint(hint);
        self.push(d);
        None
    }

    /// The position of a test key among the declared inputs or outputs (`what`), or an
    /// "unknown input/output" diagnostic with "did you mean".
    fn declared_key<'n>(
        &mut self,
        key: &str,
        span: Span,
        names: impl Iterator<Item = &'n str> + Clone,
        what: &str,
    ) -> Option<usize> {
        if let Some(at) = names.clone().position(|n| n == key) {
            return Some(at);
        }
        let code = if what == "input" {
            Code::UnknownInput
        } else {
            Code::UnknownOutput
        };
        let hint = name_hint(key, names, &format!("{what}s"));
        let d = self
            .diag(code, span, format!("unknown {what} `{key}`"))
            .label(format!("this action has no such {what}"))
            .hint(hint);
        self.push(d);
        None
    }

    fn expected_outputs(
        &mut self,
        v: &ast::Value,
        declared: &Declared,
    ) -> Option<Vec<(String, Json)>> {
        let ast::Value::Object(members, _) = v else {
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for m in members {
            let Some(key) = self.key(&m.key) else {
                ok = false;
                continue;
            };
            let names = declared.outputs.iter().map(|(o, _)| o.name.name.as_str());
            let Some(at) = self.declared_key(&key, m.key.span(), names, "output") else {
                ok = false;
                continue;
            };
            let ty = &declared.outputs[at].1;
            let Some(json) = self.literal(&m.value, "an expected value") else {
                ok = false;
                continue;
            };
            if let Some(ty) = ty {
                ok &= self.check_value(ty, &json, &m.value, &format!("the expected `{key}`"));
            }
            out.push((key, json));
        }
        ok.then_some(out)
    }
}

trait HasSpan {
    fn span(&self) -> Span;
}

macro_rules! has_span {
    ($($t:ty),*) => { $(impl HasSpan for $t { fn span(&self) -> Span { self.span } })* };
}
has_span!(
    ast::Description,
    ast::Request,
    ast::Outputs,
    ast::Say,
    ast::FollowUp,
    ast::Fallback,
    ast::Cache,
    ast::Messages
);

/// "did you mean" when a name is close, otherwise the names there are.
fn name_hint<'a>(name: &str, names: impl Iterator<Item = &'a str> + Clone, what: &str) -> String {
    if let Some(h) = did_you_mean(name, names.clone()) {
        return h;
    }
    let all: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if all.is_empty() {
        format!("this action declares no {what}")
    } else {
        format!("this action's {what}: {}", all.join(", "))
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn ref_text(r: &ast::RefExpr) -> String {
    ref_text_n(r, usize::MAX)
}

fn ref_text_n(r: &ast::RefExpr, n: usize) -> String {
    r.segments
        .iter()
        .take(n)
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

fn fmt_ms(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

fn fmt_bytes(b: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if b % MB == 0 {
        format!("{}MB", b / MB)
    } else if b % 1024 == 0 {
        format!("{}KB", b / 1024)
    } else {
        format!("{b}B")
    }
}

fn parse_status(s: &str) -> Option<ir::StatusRange> {
    let lower = s.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        let c: u16 = class.parse().ok()?;
        return (1..=5).contains(&c).then_some(ir::StatusRange {
            from: c * 100,
            to: c * 100 + 99,
        });
    }
    let n: u16 = lower.parse().ok()?;
    (100..=599)
        .contains(&n)
        .then_some(ir::StatusRange { from: n, to: n })
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The span of the part of a value a JSON pointer designates (the whole value if not found).
fn span_at_pointer(v: &ast::Value, pointer: &str) -> Span {
    let mut cur = v;
    for seg in pointer.split('/').skip(1) {
        let next = match cur {
            ast::Value::Array(items, _) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            ast::Value::Object(members, _) => members.iter().find_map(|m| {
                let k = match &m.key {
                    ast::Key::Ident(i) => i.name.as_str(),
                    ast::Key::Str(s) => s.raw.as_str(),
                };
                (k == seg).then_some(&m.value)
            }),
            ast::Value::Scalar(_) => None,
        };
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    cur.span()
}
