//! Steps, conditions and computed outputs: the checks of actions with several requests.
//!
//! - Steps are declared before anything is checked, so `step.NAME.VALUE` resolves whatever the
//!   order of items; each live step records the steps it reads (`Step::after`), and the reads
//!   must form no cycle.
//! - Conditions (`when ...`) and computed outputs are typed here: a condition is a boolean,
//!   comparisons compare like types, `== null` checks values that can be null.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value as Json;

use super::{name_hint, ref_text, Checker, Declared, Place};
use crate::ast::{self, Span};
use crate::diagnostic::Code;
use crate::ir;
use crate::suggest::did_you_mean;

use crate::ir::DEFAULT_DEFERRED_WITHIN_MS;
/// Longest `within` accepted: a week.
pub const MAX_DEFERRED_WITHIN_MS: u64 = 7 * 24 * 3_600_000;

/// A step as declared: what other items may read of it.
pub(super) struct StepDecl {
    pub name: String,
    pub span: Span,
    pub deferred: bool,
    /// Has a `when`: its values are null when it is skipped.
    pub conditional: bool,
    pub fields: Vec<(String, Option<ir::Ty>, Span)>,
}

/// The static type of an expression of the condition language.
#[derive(Clone, Debug)]
pub(super) struct TermTy {
    kind: Kind,
    /// May be null at run time.
    nullable: bool,
    /// The declared type, for references and literals that have one.
    ty: Option<ir::Ty>,
    /// What to call it in messages: "`input.name` (a string)".
    words: String,
    /// The text of a string literal (to check it against an enum's values).
    text: Option<String>,
}

impl TermTy {
    /// A boolean that is never null (`and`, `or`, `not`, comparisons), called `words`.
    fn boolean(words: &str) -> TermTy {
        TermTy {
            kind: Kind::Bool,
            nullable: false,
            ty: Some(ir::Ty::Bool),
            words: words.into(),
            text: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    Bool,
    List,
    /// The literal `null`.
    Null,
}

fn kind_of(ty: &ir::Ty) -> Kind {
    match ty.base() {
        ir::Ty::String { .. } | ir::Ty::Enum { .. } => Kind::Text,
        ir::Ty::Int | ir::Ty::Number => Kind::Number,
        ir::Ty::Bool => Kind::Bool,
        ir::Ty::List { .. } => Kind::List,
        ir::Ty::Optional { inner } => kind_of(inner),
    }
}

fn kind_words(k: Kind) -> &'static str {
    match k {
        Kind::Text => "a string",
        Kind::Number => "a number",
        Kind::Bool => "true or false",
        Kind::List => "a list",
        Kind::Null => "null",
    }
}

/// Can a value of type `from` stand where `to` is declared (ignoring null)?
fn assignable(from: &ir::Ty, to: &ir::Ty) -> bool {
    use ir::Ty;
    match (from.base(), to.base()) {
        (Ty::Int, Ty::Int | Ty::Number) | (Ty::Number, Ty::Number) | (Ty::Bool, Ty::Bool) => true,
        (Ty::String { .. } | Ty::Enum { .. }, Ty::String { format: None }) => true,
        (Ty::String { format: a }, Ty::String { format: b }) => a == b,
        (Ty::Enum { values: a }, Ty::Enum { values: b }) => a.iter().all(|v| b.contains(v)),
        (Ty::List { item: a }, Ty::List { item: b }) => assignable(a, b),
        _ => false,
    }
}

impl Checker<'_> {
    /// Declares every step (name, values, whether deferred or conditional) before any use.
    pub(super) fn declare_steps(&mut self, steps: &[&ast::Step]) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for s in steps {
            if let Some(first) = seen.get(s.name.name.as_str()) {
                let d = self
                    .diag(
                        Code::DuplicateItem,
                        s.name.span,
                        format!("step `{}` is declared twice", s.name.name),
                    )
                    .label("second step of this name")
                    .secondary(self.file, *first, "first declared here")
                    .hint("give each step its own name");
                self.push(d);
                continue;
            }
            seen.insert(&s.name.name, s.name.span);
            let mut fields = Vec::new();
            let mut names: HashMap<String, Span> = HashMap::new();
            for item in &s.items {
                let ast::Item::Outputs(o) = item else {
                    continue;
                };
                for f in &o.fields {
                    if let Some(first) = names.get(&f.name.name) {
                        let d = self
                            .diag(
                                Code::DuplicateOutput,
                                f.name.span,
                                format!("step `{}` declares `{}` twice", s.name.name, f.name.name),
                            )
                            .label("second declaration")
                            .secondary(self.file, *first, "first declared here")
                            .hint("remove one, or give it another name");
                        self.push(d);
                        continue;
                    }
                    names.insert(f.name.name.clone(), f.name.span);
                    let ty = self.ty(&f.ty);
                    fields.push((f.name.name.clone(), ty, f.name.span));
                }
            }
            self.steps.push(StepDecl {
                name: s.name.name.clone(),
                span: s.name.span,
                deferred: s.deferred.is_some(),
                conditional: s.when.is_some(),
                fields,
            });
        }
    }

    /// Resolves the member part of `step.NAME.VALUE` (the namespace is already known).
    pub(super) fn step_reference(&mut self, r: &ast::RefExpr) -> Option<ir::Ref> {
        let step = r.segments.get(1)?;
        let Some(field) = r.segments.get(2) else {
            let d = self
                .diag(
                    Code::UnknownReference,
                    r.span,
                    format!("`{}` needs the name of a value", ref_text(r)),
                )
                .label("which value of the step?")
                .hint(format!(
                    "write `step.{}.NAME`, with NAME from the step's `output {{ }}`",
                    step.name
                ));
            self.push(d);
            return None;
        };
        if let Some(extra) = r.segments.get(3) {
            let d = self
                .diag(
                    Code::UnknownReference,
                    Span::new(extra.span.start.saturating_sub(1), r.span.end),
                    format!("`step.{}.{}` has no fields", step.name, field.name),
                )
                .label("remove this")
                .hint("map nested response data to the step's outputs with a JSONPath instead");
            self.push(d);
            return None;
        }
        let Some(at) = self.steps.iter().position(|s| s.name == step.name) else {
            let hint = if self.steps.is_empty() {
                "declare it: `step NAME { request GET \"...\" { } output { ... } }`".to_string()
            } else {
                name_hint(
                    &step.name,
                    self.steps.iter().map(|s| s.name.as_str()),
                    "steps",
                )
            };
            let d = self
                .diag(
                    Code::UnknownStep,
                    step.span,
                    format!("unknown step `{}`", step.name),
                )
                .label("no step of this name in this action")
                .hint(hint);
            self.push(d);
            return None;
        };
        let decl = &self.steps[at];
        if decl.deferred {
            let d = self
                .diag(
                    Code::DeferredRead,
                    r.span,
                    format!("step `{}` is deferred: its values are never known", step.name),
                )
                .label("a deferred step runs after the answer")
                .secondary(self.file, decl.span, "deferred here")
                .hint("read only live steps; make the step live (remove `deferred`) if its values are needed");
            self.push(d);
            return None;
        }
        if !decl.fields.iter().any(|(n, _, _)| *n == field.name) {
            let names: Vec<&str> = decl.fields.iter().map(|(n, _, _)| n.as_str()).collect();
            let hint = match did_you_mean(&field.name, names.iter().copied()) {
                Some(h) => h,
                None if names.is_empty() => format!(
                    "step `{}` declares no values: add `output {{ {}: ... = $.path }}` to it",
                    step.name, field.name
                ),
                None => format!(
                    "step `{}` has {}",
                    step.name,
                    super::join_and(&names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>())
                ),
            };
            let d = self
                .diag(
                    Code::UnknownStepValue,
                    field.span,
                    format!("step `{}` has no value `{}`", step.name, field.name),
                )
                .label("not in the step's `output { }`")
                .secondary(self.file, decl.span, "the step")
                .hint(hint);
            self.push(d);
            return None;
        }
        if let Some(current) = &self.current_step {
            if *current == step.name {
                let d = self
                    .diag(
                        Code::StepCycle,
                        r.span,
                        format!("step `{}` reads its own value", step.name),
                    )
                    .label("known only after this step has run")
                    .hint("a step can read inputs and the values of other steps");
                self.push(d);
                return None;
            }
            self.step_reads.push((step.name.clone(), r.span));
        }
        Some(ir::Ref {
            ns: ir::Namespace::Step,
            name: format!("{}.{}", step.name, field.name),
        })
    }

    /// The declared type of a resolved reference.
    fn ref_ty(&self, r: &ir::Ref) -> Option<ir::Ty> {
        let optional = |t: ir::Ty| match t {
            ir::Ty::Optional { .. } => t,
            t => ir::Ty::Optional { inner: Box::new(t) },
        };
        match r.ns {
            ir::Namespace::Input => self.input_types.get(&r.name).cloned(),
            ir::Namespace::Output => self.output_types.get(&r.name).cloned(),
            ir::Namespace::Env | ir::Namespace::Secret => Some(ir::Ty::String { format: None }),
            ir::Namespace::Call => Some(optional(ir::Ty::String { format: None })),
            ir::Namespace::Step => {
                let (step, field) = r.name.split_once('.')?;
                let decl = self.steps.iter().find(|s| s.name == step)?;
                let ty = decl.fields.iter().find(|(n, _, _)| n == field)?.1.clone()?;
                Some(if decl.conditional { optional(ty) } else { ty })
            }
        }
    }

    /// Checks an expression of the condition language and gives its IR and type.
    pub(super) fn term(&mut self, c: &ast::Cond, place: Place) -> Option<(ir::Term, TermTy)> {
        match c {
            ast::Cond::Operand(e) => self.operand(e, place),
            ast::Cond::Not(inner, _) => {
                let (t, ty) = self.term(inner, place)?;
                self.require_bool(&ty, inner.span(), "`not`")?;
                Some((
                    ir::Term::Not { term: Box::new(t) },
                    TermTy::boolean("a condition"),
                ))
            }
            ast::Cond::And(cs, _) | ast::Cond::Or(cs, _) => {
                let word = if matches!(c, ast::Cond::And(..)) {
                    "`and`"
                } else {
                    "`or`"
                };
                let mut terms = Vec::new();
                let mut ok = true;
                for inner in cs {
                    match self.term(inner, place) {
                        Some((t, ty)) => {
                            ok &= self.require_bool(&ty, inner.span(), word).is_some();
                            terms.push(t);
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                let term = if matches!(c, ast::Cond::And(..)) {
                    ir::Term::And { terms }
                } else {
                    ir::Term::Or { terms }
                };
                Some((term, TermTy::boolean("a condition")))
            }
            ast::Cond::Compare {
                op,
                op_span,
                left,
                right,
                ..
            } => {
                let l = self.term(left, place);
                let r = self.term(right, place);
                let ((lt, lty), (rt, rty)) = (l?, r?);
                self.comparison(*op, *op_span, (&lty, left.span()), (&rty, right.span()))?;
                Some((
                    ir::Term::Compare {
                        op: *op,
                        left: Box::new(lt),
                        right: Box::new(rt),
                    },
                    TermTy::boolean("a comparison"),
                ))
            }
        }
    }

    fn operand(&mut self, e: &ast::Expr, place: Place) -> Option<(ir::Term, TermTy)> {
        let lit = |value: Json, kind: Kind, ty: Option<ir::Ty>, words: String| {
            let text = value.as_str().map(str::to_string);
            Some((
                ir::Term::Literal { value },
                TermTy {
                    nullable: kind == Kind::Null,
                    kind,
                    ty,
                    words,
                    text,
                },
            ))
        };
        match e {
            ast::Expr::Ref(r) => {
                let rf = self.reference(r, place)?;
                let ty = self.ref_ty(&rf)?;
                let words = format!("`{}` ({})", ref_text(r), ty.display());
                Some((
                    ir::Term::Ref { r#ref: rf },
                    TermTy {
                        kind: kind_of(&ty),
                        nullable: ty.is_optional(),
                        ty: Some(ty),
                        words,
                        text: None,
                    },
                ))
            }
            ast::Expr::Str(s) => {
                let parts = self.template_parts(s)?;
                let mut text = String::new();
                for p in parts {
                    match p {
                        crate::template::TPart::Text(t) => text.push_str(&t),
                        crate::template::TPart::Ref(r) => {
                            let d = self
                                .diag(
                                    Code::ReferenceNotAllowed,
                                    r.span,
                                    format!("a condition compares with `{}` itself, not inside a string", ref_text(&r)),
                                )
                                .label("not a template here")
                                .hint(format!("write `{}` without quotes and braces", ref_text(&r)));
                            self.push(d);
                            return None;
                        }
                    }
                }
                let words = format!("{text:?} (a string)");
                lit(Json::String(text), Kind::Text, None, words)
            }
            ast::Expr::Number(n, _) => {
                let ty = if n.is_f64() {
                    ir::Ty::Number
                } else {
                    ir::Ty::Int
                };
                lit(
                    Json::Number(n.clone()),
                    Kind::Number,
                    Some(ty),
                    format!("{n} (a number)"),
                )
            }
            ast::Expr::Bool(b, _) => lit(
                Json::Bool(*b),
                Kind::Bool,
                Some(ir::Ty::Bool),
                b.to_string(),
            ),
            ast::Expr::Null(_) => lit(Json::Null, Kind::Null, None, "null".into()),
        }
    }

    /// `Some(())` when the expression is a boolean; an error naming what it is otherwise.
    pub(super) fn require_bool(&mut self, ty: &TermTy, span: Span, what: &str) -> Option<()> {
        if ty.kind == Kind::Bool {
            return Some(());
        }
        let d = self
            .diag(
                Code::ConditionType,
                span,
                format!(
                    "{what} needs true or false, but this is {}",
                    if ty.words.starts_with('`') || ty.words.starts_with('"') {
                        ty.words.clone()
                    } else {
                        kind_words(ty.kind).to_string()
                    }
                ),
            )
            .label(format!("{}, not a condition", kind_words(ty.kind)))
            .hint(match ty.kind {
                Kind::Null => "compare a value with null: `step.contact.id != null`".to_string(),
                Kind::List => "test a list with a count: map `count(...)` to an int and compare it, like `step.deals.count > 0`".to_string(),
                _ => "compare it, for example `input.x == \"yes\"`, `step.s.count > 0` or `step.s.id != null`".to_string(),
            });
        self.push(d);
        None
    }

    fn comparison(
        &mut self,
        op: ast::CmpOp,
        op_span: Span,
        (l, lspan): (&TermTy, Span),
        (r, rspan): (&TermTy, Span),
    ) -> Option<()> {
        let equality = matches!(op, ast::CmpOp::Eq | ast::CmpOp::Ne);
        // Null checks.
        if l.kind == Kind::Null || r.kind == Kind::Null {
            let (other, ospan) = if l.kind == Kind::Null {
                (r, rspan)
            } else {
                (l, lspan)
            };
            if !equality {
                let d = self
                    .diag(
                        Code::ConditionType,
                        op_span,
                        format!("`{}` cannot order null", op.as_str()),
                    )
                    .label("null is neither smaller nor larger")
                    .hint("check for null with `== null` or `!= null`");
                self.push(d);
                return None;
            }
            if other.kind != Kind::Null && !other.nullable {
                let always = if op == ast::CmpOp::Eq {
                    "false"
                } else {
                    "true"
                };
                let d = self
                    .diag(
                        Code::NeverNull,
                        ospan,
                        format!(
                            "{} is never null: this comparison is always {always}",
                            other.words
                        ),
                    )
                    .label("never null")
                    .hint("a value can be null when its type ends in `?` or its step has a `when`");
                self.push(d);
            }
            return Some(());
        }
        let fits = if equality {
            l.kind == r.kind
        } else {
            l.kind == r.kind && matches!(l.kind, Kind::Number | Kind::Text)
        };
        if !fits {
            let d = if equality || l.kind != r.kind {
                self.diag(
                    Code::ConditionType,
                    op_span,
                    format!("cannot compare {} with {}", l.words, r.words),
                )
                .label("different types")
                .secondary(self.file, lspan, kind_words(l.kind))
                .secondary(self.file, rspan, kind_words(r.kind))
                .hint("compare values of one type: strings with strings, numbers with numbers")
            } else {
                self.diag(
                    Code::ConditionType,
                    op_span,
                    format!(
                        "`{}` orders numbers and strings, not {}",
                        op.as_str(),
                        kind_words(l.kind)
                    ),
                )
                .label("no order")
                .hint("use `==` or `!=`")
            };
            self.push(d);
            return None;
        }
        // An enum compared with a literal: the literal must be one of its values.
        for (a, b, bspan) in [(l, r, rspan), (r, l, lspan)] {
            let (Some(ir::Ty::Enum { values }), Some(value)) =
                (a.ty.as_ref().map(|t| t.base()), &b.text)
            else {
                continue;
            };
            if !values.contains(value) {
                let hint =
                    did_you_mean(value, values.iter().map(String::as_str)).unwrap_or_else(|| {
                        format!(
                            "the values are {}",
                            values
                                .iter()
                                .map(|v| format!("{v:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    });
                let d = self
                    .diag(
                        Code::ConditionType,
                        bspan,
                        format!("{value:?} is not a value of {}", a.words),
                    )
                    .label("can never be equal")
                    .hint(hint);
                self.push(d);
                return None;
            }
        }
        Some(())
    }

    /// A `when` condition: a checked boolean.
    pub(super) fn when(&mut self, w: &ast::When, place: Place) -> Option<ir::Term> {
        let site = std::mem::replace(&mut self.site, "a condition");
        let t = self.term(&w.cond, place);
        self.site = site;
        let (term, ty) = t?;
        self.require_bool(&ty, w.cond.span(), "a `when` condition")?;
        Some(term)
    }

    /// A computed output of an action with steps: `name: T = EXPRESSION [?? DEFAULT]`.
    pub(super) fn computed_output(
        &mut self,
        o: &ast::OutputField,
        cond: &ast::Cond,
        ty: &ir::Ty,
    ) -> Option<ir::Source> {
        let site = std::mem::replace(&mut self.site, "an output");
        let t = self.term(cond, Place::Value);
        self.site = site;
        let (term, tty) = t?;
        let default = match &o.mapping.default {
            Some(v) => {
                let json = self.literal(v, "a `??` default")?;
                if !self.check_value(ty, &json, v, &format!("the default of `{}`", o.name.name)) {
                    return None;
                }
                Some(json)
            }
            None => None,
        };
        let name = &o.name.name;
        let fits = match (&term, &tty.ty) {
            (ir::Term::Literal { value }, _) => ty.check(value).is_ok(),
            (_, Some(from)) => assignable(from, ty),
            (_, None) => false,
        };
        if !fits {
            let d = self
                .diag(
                    Code::ConditionType,
                    cond.span(),
                    format!(
                        "output `{name}` is `{}`, but this is {}",
                        ty.display(),
                        tty.words
                    ),
                )
                .label(format!("not a `{}`", ty.base().display()))
                .hint(format!(
                    "declare `{name}` with the type of the value, or compute a `{}`",
                    ty.base().display()
                ));
            self.push(d);
            return None;
        }
        if tty.nullable && default.is_none() && !ty.is_optional() {
            let why = match &term {
                ir::Term::Ref { r#ref } if r#ref.ns == ir::Namespace::Step => {
                    let step = r#ref.name.split_once('.').map_or("", |(s, _)| s);
                    if self.steps.iter().any(|s| s.name == step && s.conditional) {
                        format!(" (step `{step}` is skipped when its `when` does not hold)")
                    } else {
                        String::new()
                    }
                }
                _ => String::new(),
            };
            let d = self
                .diag(
                    Code::ConditionType,
                    cond.span(),
                    format!(
                        "{} can be null{why}, but output `{name}` is `{}`",
                        tty.words,
                        ty.display()
                    ),
                )
                .label("can be null")
                .hint(format!(
                    "add a default like `?? {}`, or declare `{name}: {}?`",
                    match ty.base() {
                        ir::Ty::Int | ir::Ty::Number => "0",
                        ir::Ty::Bool => "false",
                        ir::Ty::List { .. } => "[]",
                        _ => "\"\"",
                    },
                    ty.display()
                ));
            self.push(d);
            return None;
        }
        Some(ir::Source::Value { term, default })
    }

    /// Checks one step and builds its IR.
    pub(super) fn step(&mut self, s: &ast::Step) -> Option<ir::Step> {
        use ast::Item;
        let name = s.name.name.clone();
        let deferred = s.deferred.is_some();
        let mut request: Option<&ast::Request> = None;
        let mut outputs: Option<&ast::Outputs> = None;
        let mut fallback: Option<&ast::Fallback> = None;
        let mut on_status = Vec::new();
        for item in &s.items {
            match item {
                Item::Request(r) => self.single(&mut request, r, r.span, "request"),
                Item::Outputs(o) => self.single(&mut outputs, o, o.span, "output"),
                Item::Fallback(f) => self.single(&mut fallback, f, f.span, "fallback"),
                Item::OnStatus(o) => on_status.push(o),
                _ => {}
            }
        }
        let mut ok = true;
        if deferred {
            let reads: Vec<(Span, &str)> = outputs
                .map(|o| (o.span, "output"))
                .into_iter()
                .chain(fallback.map(|f| (f.span, "fallback")))
                .chain(on_status.iter().map(|o| (o.span, "on")))
                .collect();
            for (span, word) in reads {
                let d = self
                    .diag(
                        Code::DeferredRead,
                        Self::keyword_span(span, word),
                        format!("a deferred step has no `{word}`"),
                    )
                    .label("nothing reads the response of a deferred write")
                    .secondary(self.file, s.name.span, "deferred step")
                    .hint("a deferred write is delivered after the answer and retried until the API accepts it; remove this block");
                self.push(d);
                ok = false;
            }
        }

        self.current_step = Some(name.clone());
        self.step_reads.clear();
        self.outputs_known = deferred;
        let when = s.when.as_ref().map(|w| self.when(w, Place::Value));
        let request_ir = match request {
            Some(r) => {
                self.in_request = !deferred;
                self.deferred_request = deferred;
                let ir = self.request(r);
                self.in_request = false;
                self.deferred_request = false;
                ir
            }
            None => {
                let d = self
                    .diag(
                        Code::MissingItem,
                        s.name.span,
                        format!("step `{name}` has no `request`"),
                    )
                    .label("this step calls nothing")
                    .hint("add `request GET \"https://...\" { }` inside the step");
                self.push(d);
                None
            }
        };
        self.outputs_known = false;
        self.current_step = None;
        let reads = std::mem::take(&mut self.step_reads);

        let decl_fields: Vec<(String, Option<ir::Ty>)> = self
            .steps
            .iter()
            .find(|d| d.name == name)
            .map(|d| {
                d.fields
                    .iter()
                    .map(|(n, t, _)| (n.clone(), t.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let declared = Declared {
            inputs: Vec::new(),
            outputs: outputs
                .map(|o| o.fields.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    let ty = decl_fields
                        .iter()
                        .find(|(n, _)| *n == f.name.name)
                        .and_then(|(_, t)| t.clone());
                    (f, ty)
                })
                .collect(),
        };
        let mut outputs_ir = Vec::new();
        for (f, ty) in &declared.outputs {
            if let Some(w) = &f.when {
                let d = self
                    .diag(
                        Code::StepForm,
                        Self::keyword_span(w.span, "when"),
                        "a step's value cannot have a `when`",
                    )
                    .label("put conditions on the action's outputs or on the step")
                    .hint("guard the whole step with `step NAME when ... { }`, or the action's output");
                self.push(d);
                ok = false;
            }
            match &f.mapping.source {
                ast::Source::Path { .. } => {
                    match (ty, self.mapping(&f.mapping, ty.as_ref(), &f.name.name)) {
                        (Some(ty), Some(mapping)) => outputs_ir.push(ir::Output {
                            name: f.name.name.clone(),
                            ty: ty.clone(),
                            source: ir::Source::Path(mapping),
                            when: None,
                        }),
                        _ => ok = false,
                    }
                }
                ast::Source::Expr(c) => {
                    self.expected_path(c, &f.name.name);
                    ok = false;
                }
            }
        }
        let required: Vec<&str> = declared
            .outputs
            .iter()
            .filter(|(_, ty)| ty.as_ref().is_some_and(|t| !t.is_optional()))
            .map(|(o, _)| o.name.name.as_str())
            .collect();
        let mut on_ir = Vec::new();
        for o in &on_status {
            ok &= self.no_say(&o.items, "on");
            let statuses = self.statuses(&o.statuses);
            let outcome = self.outcome(&o.items, &declared, &required, o.span, "on");
            match (statuses, outcome) {
                (Some(statuses), Some(outcome)) => {
                    on_ir.push(ir::StatusHandler { statuses, outcome })
                }
                _ => ok = false,
            }
        }
        let fallback_ir = match fallback {
            Some(f) => {
                ok &= self.no_say(&f.items, "fallback");
                let o = self.outcome(&f.items, &declared, &required, f.span, "fallback");
                ok &= o.is_some();
                o
            }
            None => None,
        };

        let deferred_ir = match &s.deferred {
            None => None,
            Some(d) => {
                let within = match &d.within {
                    None => Some(DEFAULT_DEFERRED_WITHIN_MS),
                    Some(w) => match self.duration(w, "within") {
                        Some(ms) if ms > MAX_DEFERRED_WITHIN_MS => {
                            let d = self
                                .diag(
                                    Code::NumberOutOfRange,
                                    w.span,
                                    "a deferred write is tried for at most 7 days",
                                )
                                .label("too long")
                                .hint("the default is 24h");
                            self.push(d);
                            None
                        }
                        other => other,
                    },
                };
                if let (Some(r), Some(req)) = (request, &request_ir) {
                    if !req.method.is_idempotent() && req.idempotency_key.is_none() {
                        let d = self
                            .diag(
                                Code::DeferredWithoutKey,
                                r.method.span,
                                format!("deferred {} without an idempotency key", req.method.as_str()),
                            )
                            .label("may be delivered more than once")
                            .secondary(self.file, d.span, "delivered at least once")
                            .hint(format!("add `idempotency_key \"{{call.id}}-{name}\"` so the API can drop a repeated delivery"));
                        self.push(d);
                        ok = false;
                    }
                }
                Some(ir::Deferred { within_ms: within? })
            }
        };
        let mut after: Vec<String> = reads.iter().map(|(n, _)| n.clone()).collect();
        after.sort();
        after.dedup();
        self.step_edges.insert(name.clone(), reads);

        let step = ir::Step {
            name,
            when: match when {
                Some(w) => Some(w?),
                None => None,
            },
            after,
            deferred: deferred_ir,
            request: request_ir?,
            outputs: outputs_ir,
            on_status: on_ir,
            fallback: fallback_ir,
        };
        ok.then_some(step)
    }

    fn no_say(&mut self, items: &[ast::OutcomeItem], keyword: &str) -> bool {
        let mut ok = true;
        for i in items {
            if let ast::OutcomeItem::Say(s) = i {
                let d = self
                    .diag(
                        Code::StepForm,
                        Self::keyword_span(s.span, "say"),
                        format!("a step's `{keyword}` block cannot `say`"),
                    )
                    .label("a step gives values; the action speaks")
                    .hint("assign the step's values here, and choose the text with `say \"...\" when ...` on the action");
                self.push(d);
                ok = false;
            }
        }
        ok
    }

    /// An expression where a JSONPath was expected (outputs of a single request, of a step).
    pub(super) fn expected_path(&mut self, c: &ast::Cond, output: &str) {
        let (message, hint) = match c {
            ast::Cond::Operand(ast::Expr::Str(s)) if s.raw.starts_with('$') => (
                format!("the mapping of `{output}` is a string, not a JSONPath"),
                format!("write the JSONPath without quotes: `{}`", s.raw),
            ),
            ast::Cond::Operand(ast::Expr::Ref(r))
                if r.segments.first().is_some_and(|s| s.name == "step") =>
            {
                (
                    format!("`{output}` reads a step, but this action has one request"),
                    "values of steps are read in actions with steps; map this response with a JSONPath like `$.data.id`".to_string(),
                )
            }
            _ => (
                format!("the mapping of `{output}` is not a JSONPath"),
                "a JSONPath starts with `$`, for example `$.data[0].name`".to_string(),
            ),
        };
        let d = self
            .diag(Code::StepForm, c.span(), message)
            .label("expected a JSONPath into the response")
            .hint(hint);
        self.push(d);
    }

    /// Reports every cycle among the live steps' reads, once each.
    pub(super) fn step_cycles(&mut self) {
        let edges: BTreeMap<String, Vec<(String, Span)>> = self
            .step_edges
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut reported: Vec<Vec<String>> = Vec::new();
        for start in edges.keys() {
            // Depth-first search for a path back to `start`.
            let mut stack: Vec<(String, Vec<(String, Span)>)> = vec![(start.clone(), Vec::new())];
            let mut seen = std::collections::HashSet::new();
            while let Some((node, path)) = stack.pop() {
                for (next, span) in edges.get(&node).into_iter().flatten() {
                    let mut p = path.clone();
                    p.push((node.clone(), *span));
                    if next == start {
                        let mut members: Vec<String> = p.iter().map(|(n, _)| n.clone()).collect();
                        members.sort();
                        if reported.contains(&members) {
                            continue;
                        }
                        reported.push(members);
                        let names: Vec<String> = p.iter().map(|(n, _)| format!("`{n}`")).collect();
                        let chain = p
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .chain(std::iter::once(start.as_str()))
                            .collect::<Vec<_>>()
                            .join(" -> ");
                        let mut d = self
                            .diag(
                                Code::StepCycle,
                                p[0].1,
                                format!("steps {} wait for each other", super::join_and(&names)),
                            )
                            .label(format!(
                                "step `{}` reads `{}` here",
                                p[0].0,
                                p.get(1).map_or(start.as_str(), |x| x.0.as_str())
                            ));
                        for (i, (n, span)) in p.iter().enumerate().skip(1) {
                            let target = p.get(i + 1).map_or(start.as_str(), |x| x.0.as_str());
                            d = d.secondary(
                                self.file,
                                *span,
                                format!("step `{n}` reads `{target}` here"),
                            );
                        }
                        let d = d.hint(format!(
                            "{chain}: none of them can start; remove one of these reads"
                        ));
                        self.push(d);
                    } else if seen.insert(next.clone()) {
                        stack.push((next.clone(), p));
                    }
                }
            }
        }
    }
}
