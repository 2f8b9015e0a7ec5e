//! The editor features, on byte offsets and the scanner's reading of each file. No LSP types
//! here: `server` converts.

use std::collections::BTreeSet;

use mca_compiler::ast::Span;
use mca_compiler::format::TokenKind;
use mca_compiler::ir;

use crate::docs;
use crate::scan::{
    self, context_at, decl_parts, item_keywords, open_hole, Analysis, Frame, Kind, Sym, UnitKind,
    ValueRole, NAMESPACES,
};

/// One file as the features see it.
pub struct FileView<'a> {
    pub name: &'a str,
    pub text: &'a str,
    pub analysis: &'a Analysis,
}

/// A place in a file of the project: (file index, span).
pub type Place = (usize, Span);

// ---- symbols at a cursor ------------------------------------------------------------------------

/// The symbol under the cursor: the symbol, the action it belongs to (for inputs and outputs)
/// and the span of its name.
fn sym_at(file: &FileView, offset: usize) -> Option<(Sym, Option<usize>, Span)> {
    let m = file.analysis.mark_at(offset)?;
    match &m.kind {
        Kind::Sym { sym, .. } => Some((sym.clone(), m.action, m.span)),
        _ => None,
    }
}

/// Every mark of `sym` in the project (declarations when `decls`, references when `refs`).
fn occurrences(
    files: &[FileView],
    file: usize,
    sym: &Sym,
    action: Option<usize>,
    decls: bool,
    refs: bool,
) -> Vec<Place> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if sym.is_local() && i != file {
            continue;
        }
        for m in &f.analysis.marks {
            if let Kind::Sym { sym: s, decl } = &m.kind {
                if s == sym
                    && (!sym.is_local() || m.action == action)
                    && ((*decl && decls) || (!*decl && refs))
                {
                    out.push((i, m.span));
                }
            }
        }
    }
    out
}

pub fn definition(files: &[FileView], file: usize, offset: usize) -> Vec<Place> {
    let Some((sym, action, _)) = files.get(file).and_then(|f| sym_at(f, offset)) else {
        return Vec::new();
    };
    occurrences(files, file, &sym, action, true, false)
}

pub fn references(
    files: &[FileView],
    file: usize,
    offset: usize,
    include_declaration: bool,
) -> Vec<Place> {
    let Some((sym, action, _)) = files.get(file).and_then(|f| sym_at(f, offset)) else {
        return Vec::new();
    };
    occurrences(files, file, &sym, action, include_declaration, true)
}

/// The name a rename at the cursor would change, or why it cannot.
pub fn prepare_rename(files: &[FileView], file: usize, offset: usize) -> Result<Span, String> {
    let f = files.get(file).ok_or("unknown file")?;
    match sym_at(f, offset) {
        Some((
            Sym::Input(_) | Sym::Output(_) | Sym::Action(_) | Sym::Step(_) | Sym::StepValue { .. },
            _,
            span,
        )) => Ok(span),
        Some(_) => {
            Err("only inputs, outputs, steps, step values and actions can be renamed".into())
        }
        None => Err("no input, output, step or action here".into()),
    }
}

/// The edits of a rename: (file, span, new text).
pub fn rename(
    files: &[FileView],
    file: usize,
    offset: usize,
    new_name: &str,
) -> Result<Vec<(usize, Span, String)>, String> {
    prepare_rename(files, file, offset)?;
    let Some((sym, action, _)) = files.get(file).and_then(|f| sym_at(f, offset)) else {
        return Err("no input, output, step or action here".into());
    };
    if !scan::is_name(new_name) || matches!(new_name, "true" | "false" | "null") {
        return Err(format!(
            "`{new_name}` is not a name: use letters, digits and `_`, not starting with a digit"
        ));
    }
    let this_action = files[file]
        .analysis
        .actions
        .get(action.unwrap_or(usize::MAX));
    let taken = match &sym {
        Sym::Step(_) => this_action.is_some_and(|a| a.step(new_name).is_some()),
        Sym::StepValue { step, .. } => this_action
            .and_then(|a| a.step(step))
            .is_some_and(|s| s.outputs.iter().any(|o| o.name == new_name)),
        Sym::Input(_) => files[file]
            .analysis
            .actions
            .get(action.unwrap_or(usize::MAX))
            .is_some_and(|a| a.inputs.iter().any(|i| i.name == new_name)),
        Sym::Output(_) => files[file]
            .analysis
            .actions
            .get(action.unwrap_or(usize::MAX))
            .is_some_and(|a| a.outputs.iter().any(|o| o.name == new_name)),
        _ => files.iter().any(|f| {
            f.analysis
                .actions
                .iter()
                .any(|a| a.name() == Some(new_name))
        }),
    };
    if taken && sym.name() != new_name {
        return Err(format!("`{new_name}` is already declared"));
    }
    Ok(occurrences(files, file, &sym, action, true, true)
        .into_iter()
        .map(|(f, span)| (f, span, new_name.to_string()))
        .collect())
}

// ---- hover ------------------------------------------------------------------------------------------

fn snippet(text: &str, span: Span) -> &str {
    text.get(span.start..span.end).unwrap_or("")
}

/// The text of a string token without its quotes, escapes applied roughly (for display).
fn string_value(raw: &str) -> String {
    let inner = raw.strip_prefix('"').unwrap_or(raw);
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c) => out.push(c),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn code_block(s: &str) -> String {
    format!("```mca\n{}\n```", s.trim())
}

pub fn hover(files: &[FileView], file: usize, offset: usize) -> Option<(String, Span)> {
    let f = files.get(file)?;
    let m = f.analysis.mark_at(offset)?;
    let word = snippet(f.text, m.span);
    let text = match &m.kind {
        Kind::Keyword => {
            let ctx = context_at(f.text, &f.analysis.tokens, m.span.start);
            docs::keyword(word, ctx.frame())?.to_string()
        }
        Kind::Namespace => docs::namespace(word)?.to_string(),
        Kind::TypeName => docs::type_name(word)?.to_string(),
        Kind::Format => {
            let format = ir::Format::from_name(word)?;
            format!("`string({word})`: {}.", format.example())
        }
        Kind::Method => format!("`{word}`: {}", docs::method(word)?),
        Kind::MappingFn => docs::mapping_fn(word)?.to_string(),
        Kind::ErrorCode => format!("`{word}`: {}", docs::reason(word)?),
        Kind::Status => format!(
            "HTTP status `{word}`{}",
            if word.contains(['x', 'X']) {
                " (a class of statuses)"
            } else {
                ""
            }
        ),
        Kind::Path => "A JSONPath (RFC 9535) into the JSON answer, starting at `$`.".to_string(),
        Kind::Sym { sym, .. } => hover_sym(files, file, sym, m.action)?,
        _ => return None,
    };
    Some((text, m.span))
}

fn hover_sym(files: &[FileView], file: usize, sym: &Sym, action: Option<usize>) -> Option<String> {
    let f = files.get(file)?;
    match sym {
        Sym::Input(name) | Sym::Output(name) => {
            let a = f.analysis.actions.get(action?)?;
            let is_input = matches!(sym, Sym::Input(_));
            let list = if is_input { &a.inputs } else { &a.outputs };
            let owner = a.name().unwrap_or("?");
            let Some(d) = list.iter().find(|d| &d.name == name) else {
                let what = if is_input { "input" } else { "output" };
                return Some(format!(
                    "No {what} `{name}` is declared in action `{owner}`."
                ));
            };
            let parts = decl_parts(f.text, &f.analysis.tokens, d);
            let mut out = if is_input {
                let mut s = format!("input {name}");
                if let Some(ty) = parts.ty {
                    s.push_str(&format!(": {}", snippet(f.text, ty)));
                }
                if let Some(v) = parts.value {
                    s.push_str(&format!(" = {}", snippet(f.text, v)));
                }
                code_block(&s)
            } else {
                code_block(snippet(f.text, d.span))
            };
            if let Some(doc) = parts.doc {
                out.push_str(&format!("\n\n{}", string_value(snippet(f.text, doc))));
            }
            let kind = if is_input { "Input" } else { "Output" };
            out.push_str(&format!("\n\n{kind} of action `{owner}`."));
            Some(out)
        }
        Sym::Action(name) => {
            let (fi, a) = files.iter().enumerate().find_map(|(i, f)| {
                f.analysis
                    .actions
                    .iter()
                    .find(|a| a.name() == Some(name))
                    .map(|a| (i, a))
            })?;
            let fv = &files[fi];
            let inputs: Vec<String> = a
                .inputs
                .iter()
                .map(|i| {
                    let ty = decl_parts(fv.text, &fv.analysis.tokens, i)
                        .ty
                        .map(|t| snippet(fv.text, t))
                        .unwrap_or("?");
                    format!("{}: {ty}", i.name)
                })
                .collect();
            let mut out = code_block(&format!("action {name}({})", inputs.join(", ")));
            if let Some(d) = a.description {
                out.push_str(&format!("\n\n{}", string_value(snippet(fv.text, d))));
            }
            if fi != file {
                out.push_str(&format!("\n\nIn `{}`.", fv.name));
            }
            Some(out)
        }
        Sym::Env(name) => Some(format!("`env.{name}`\n\n{}", docs::namespace("env")?)),
        Sym::Secret(name) => Some(format!("`secret.{name}`\n\n{}", docs::namespace("secret")?)),
        Sym::Call(name) => Some(
            docs::call_member(name)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!("`call` has no member `{name}`: use `call.id` or `call.from`.")
                }),
        ),
        Sym::Step(name) => {
            let a = f.analysis.actions.get(action?)?;
            let owner = a.name().unwrap_or("?");
            let Some(step) = a.step(name) else {
                return Some(format!("No step `{name}` is declared in action `{owner}`."));
            };
            let mut out = code_block(&step_header(f.text, step));
            let values: Vec<String> = step
                .outputs
                .iter()
                .map(|d| format!("`{}`", snippet(f.text, d.span).trim()))
                .collect();
            if !values.is_empty() {
                out.push_str(&format!(
                    "\n\nValues (`step.{name}.VALUE`): {}",
                    values.join(", ")
                ));
            }
            out.push_str(&format!("\n\nStep of action `{owner}`."));
            Some(out)
        }
        Sym::StepValue { step, name } => {
            let a = f.analysis.actions.get(action?)?;
            let owner = a.name().unwrap_or("?");
            let Some(s) = a.step(step) else {
                return Some(format!("No step `{step}` is declared in action `{owner}`."));
            };
            let Some(d) = s.outputs.iter().find(|d| &d.name == name) else {
                return Some(format!(
                    "Step `{step}` has no value `{name}` (its `output {{ }}` declares {}).",
                    if s.outputs.is_empty() {
                        "none".to_string()
                    } else {
                        s.outputs
                            .iter()
                            .map(|d| format!("`{}`", d.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
            };
            let mut out = code_block(snippet(f.text, d.span));
            out.push_str(&format!(
                "\n\n`step.{step}.{name}`: a value of step `{step}` in action `{owner}`, declared in its `output {{ }}`."
            ));
            let header = step_header(f.text, s);
            if header.split_whitespace().any(|w| w == "when") {
                out.push_str(&format!(
                    " Null when the step is skipped (`{step}` has a `when`)."
                ));
            }
            Some(out)
        }
    }
}

/// `step NAME [deferred ...] [when ...]`: the step's first line, without its `{`.
fn step_header(text: &str, step: &scan::StepInfo) -> String {
    let rest = text
        .get(step.keyword.start..step.decl.span.end.max(step.keyword.start))
        .unwrap_or("");
    let head = rest.split('{').next().unwrap_or(rest);
    head.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---- completion --------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Keyword,
    Namespace,
    Input,
    Output,
    Variable,
    Type,
    Value,
    Method,
    Function,
    Action,
    Step,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub label: String,
    pub kind: ItemKind,
    pub detail: Option<String>,
    pub doc: Option<String>,
    /// The text the label replaces (the part of the word typed so far).
    pub replace: Span,
}

pub fn completion(files: &[FileView], file: usize, offset: usize) -> Vec<Completion> {
    let Some(f) = files.get(file) else {
        return Vec::new();
    };
    let text = f.text;
    let offset = offset.min(text.len());
    if !text.is_char_boundary(offset) {
        return Vec::new();
    }
    let bytes = text.as_bytes();
    let mut word_start = offset;
    while word_start > 0
        && (bytes[word_start - 1].is_ascii_alphanumeric() || bytes[word_start - 1] == b'_')
    {
        word_start -= 1;
    }
    let replace = Span::new(word_start, offset);
    let mut out = Completions {
        items: Vec::new(),
        replace,
    };
    let tokens = &f.analysis.tokens;
    // In a comment or string?
    let containing = tokens
        .iter()
        .find(|t| t.span.start < offset && offset <= t.span.end);
    if let Some(t) = containing {
        let closed = t.span.len() >= 2 && text[..t.span.end].ends_with('"');
        match t.kind {
            TokenKind::LineComment | TokenKind::BlockComment => return Vec::new(),
            TokenKind::Str if offset < t.span.end || !closed => {
                // Inside a template hole?
                if let Some((_, inner)) = open_hole(text, t.span, offset) {
                    let inner = inner.trim_start();
                    match inner.rsplit_once('.') {
                        Some((chain, _)) => {
                            let chain: Vec<&str> = chain.split('.').collect();
                            members(files, file, &chain, offset, &mut out)
                        }
                        None => {
                            let steps = has_steps(f, offset);
                            let names: Vec<&str> = NAMESPACES
                                .iter()
                                .copied()
                                .filter(|n| *n != "step" || steps)
                                .collect();
                            out.namespaces(&names)
                        }
                    }
                }
                return out.items;
            }
            _ => {}
        }
    }
    // After `ns.` (or `step.NAME.`)?
    if word_start > 0 && bytes[word_start - 1] == b'.' {
        let mut ns_start = word_start - 1;
        while ns_start > 0
            && (bytes[ns_start - 1].is_ascii_alphanumeric()
                || bytes[ns_start - 1] == b'_'
                || bytes[ns_start - 1] == b'.')
        {
            ns_start -= 1;
        }
        let chain: Vec<&str> = text[ns_start..word_start - 1].split('.').collect();
        members(files, file, &chain, offset, &mut out);
        return out.items;
    }
    let ctx = context_at(text, tokens, word_start);
    let action = ctx.action.and_then(|a| f.analysis.actions.get(a));
    let frame = ctx.frame();
    let steps = action.is_some_and(|a| !a.steps.is_empty());
    // The step whose block holds the cursor.
    let in_step = ctx
        .frames
        .contains(&Frame::Step)
        .then(|| action.and_then(|a| a.steps.iter().find(|s| s.decl.span.contains(offset))))
        .flatten();
    if ctx.new_statement {
        out.keywords(item_keywords(frame), frame);
        if frame == Frame::Outcome {
            if let Some(s) = in_step {
                for o in &s.outputs {
                    let ty = decl_parts(text, tokens, o)
                        .ty
                        .map(|t| snippet(text, t).to_string());
                    out.push(&o.name, ItemKind::Output, ty, None);
                }
            } else if let Some(a) = action {
                for o in &a.outputs {
                    out.push(&o.name, ItemKind::Output, Some("output".into()), None);
                }
            }
        }
        return out.items;
    }
    let units = &ctx.units;
    let head = units.first().map(|u| u.text.as_str()).unwrap_or("");
    let n = units.len();
    let last = units.last().map(|u| u.text.as_str()).unwrap_or("");
    let second = units.get(1).map(|u| u.text.as_str()).unwrap_or("");
    let value_position = matches!(last, "=" | ",") || n == 0;
    let has_when = units
        .iter()
        .skip(1)
        .any(|u| u.kind == UnitKind::Word && u.text == "when");
    // Namespaces a reference may start with here (request values, templates).
    let mut value_namespaces = vec!["input", "env", "call"];
    if steps {
        value_namespaces.push("step");
    }
    match frame {
        Frame::Top if n == 0 => out.keywords(&["action"], frame),
        Frame::Cond => out.condition(units, steps, true, frame),
        Frame::Action | Frame::Step if has_when => {
            let outputs = head != "step" || units.iter().any(|u| u.text == "deferred");
            out.condition(units, steps, outputs, frame)
        }
        Frame::Action if head == "step" && n >= 2 => {
            if n == 2 {
                out.keywords(&["deferred", "when"], frame);
            } else if last == "deferred" {
                out.keywords(&["within", "when"], frame);
            } else if units.get(n - 2).is_some_and(|u| u.text == "within") {
                out.keywords(&["when"], frame);
            }
        }
        Frame::Action if head == "say" && n == 2 && units[1].kind == UnitKind::Str => {
            out.keywords(&["when"], frame)
        }
        Frame::Action if head == "follow_up" && n == 1 => out.keywords(&["when"], frame),
        Frame::Action => match head {
            "input" if last == ":" => out.types(),
            "request" if n == 1 => out.methods(),
            "invalidates" if n == 1 || last == "," => {
                let own = action.and_then(|a| a.name());
                let mut names = BTreeSet::new();
                for fv in files {
                    for a in &fv.analysis.actions {
                        if let Some(name) = a.name() {
                            if Some(name) != own {
                                names.insert(name.to_string());
                            }
                        }
                    }
                }
                for name in names {
                    out.push(&name, ItemKind::Action, Some("action".into()), None);
                }
            }
            "input" if last == "=" => out.constants(),
            _ => {}
        },
        Frame::TypeArgs { string: true } => {
            for format in ir::Format::ALL {
                out.push(
                    format.name(),
                    ItemKind::Type,
                    Some("string format".into()),
                    Some(format!("{}.", format.example())),
                );
            }
        }
        Frame::TypeItem => out.types(),
        Frame::Output => {
            if n == 2 && last == ":" {
                out.types();
            } else if has_when
                || (steps
                    && in_step.is_none()
                    && units.iter().any(|u| u.text == "=")
                    && last != "??")
            {
                // An expression over step values (actions with steps), or the `when` of an output.
                out.condition(units, steps, false, frame);
            } else if last == "=" {
                for name in docs::MAPPING_FNS {
                    out.push(
                        name,
                        ItemKind::Function,
                        Some("mapping function".into()),
                        docs::mapping_fn(name).map(str::to_string),
                    );
                }
            } else if last == "??" {
                out.constants();
            } else if n >= 5 && units.iter().any(|u| u.text == "=") {
                out.keywords(&["when"], frame);
            }
        }
        Frame::Outcome if last == "=" => out.constants(),
        Frame::Request => match head {
            "auth" if n == 1 => {
                out.keywords(&["bearer", "basic", "header", "query", "oauth2"], frame)
            }
            "auth" => out.namespaces(&["secret", "env", "input"]),
            "retry" if n == 2 => out.keywords(&["backoff"], frame),
            "query" | "header" if last == "=" => {
                out.namespaces(&["input", "env", "secret", "call"]);
                if steps {
                    out.namespaces(&["step"]);
                }
                out.constants();
            }
            "idempotency_key" if n == 1 => out.namespaces(&["input", "call"]),
            _ => {}
        },
        Frame::OAuth2 if n == 1 => out.namespaces(&["secret", "env"]),
        Frame::Cache => match head {
            "scope" if n == 1 => {
                out.push(
                    "call",
                    ItemKind::Value,
                    Some("one phone call".into()),
                    docs::keyword("scope", Frame::Cache).map(str::to_string),
                );
                out.push(
                    "global",
                    ItemKind::Value,
                    Some("shared by all calls".into()),
                    docs::keyword("scope", Frame::Cache).map(str::to_string),
                );
            }
            "key" if n == 1 || last == "," => out.namespaces(&["input"]),
            _ => {}
        },
        Frame::Test => match head {
            "upstream" if n == 1 => {
                out.keywords(&["timeout", "reset"], frame);
                out.steps(action);
            }
            "upstream" if n == 2 && units[1].kind == UnitKind::Word && !is_reply(second) => {
                out.keywords(&["timeout", "reset"], frame)
            }
            "upstream" if n == 2 && units[1].kind == UnitKind::Number => {
                out.keywords(&["headers"], frame)
            }
            "expect" if n == 1 => {
                for k in ["request", "fallback", "error", "say"] {
                    out.push(
                        k,
                        ItemKind::Keyword,
                        None,
                        docs::keyword(k, Frame::Test).map(str::to_string),
                    );
                }
            }
            "expect" if n == 2 && second == "request" => {
                out.methods();
                out.steps(action);
            }
            "expect" if n == 3 && second == "request" && !scan::is_method(&units[2].text) => {
                out.methods()
            }
            "expect" if n == 2 && second == "error" => {
                for r in ir::Reason::ALL {
                    out.push(
                        r.as_str(),
                        ItemKind::Value,
                        Some("error reason".into()),
                        docs::reason(r.as_str()).map(str::to_string),
                    );
                }
            }
            _ => {}
        },
        Frame::Value(role) => {
            if ctx.at_key {
                let keys = match role {
                    ValueRole::TestInput => action.map(|a| &a.inputs),
                    ValueRole::ExpectOutputs => action.map(|a| &a.outputs),
                    _ => None,
                };
                // Only the top level of `input {}` / `expect {}` names declarations.
                let top = ctx.frames.len() >= 2 && ctx.frames[ctx.frames.len() - 2] == Frame::Test;
                if let (Some(keys), true) = (keys, top) {
                    let kind = if role == ValueRole::TestInput {
                        ItemKind::Input
                    } else {
                        ItemKind::Output
                    };
                    for d in keys {
                        let ty = decl_parts(text, tokens, d)
                            .ty
                            .map(|t| snippet(text, t).to_string());
                        out.push(&d.name, kind, ty, None);
                    }
                }
            } else if value_position || last == ":" || last == "[" || last == "{" {
                if role == ValueRole::Template {
                    out.namespaces(&value_namespaces);
                }
                out.constants();
            }
        }
        _ => {}
    }
    out.items
}

/// Whether the action at `offset` has steps.
fn has_steps(f: &FileView, offset: usize) -> bool {
    f.analysis
        .action_at(offset)
        .and_then(|a| f.analysis.actions.get(a))
        .is_some_and(|a| !a.steps.is_empty())
}

/// `upstream` replies that are not step names.
fn is_reply(word: &str) -> bool {
    matches!(word, "timeout" | "reset" | "headers")
}

/// Members after `ns.` (`chain` is `[ns]`), or the values of a step after `step.NAME.`.
fn members(files: &[FileView], file: usize, chain: &[&str], offset: usize, out: &mut Completions) {
    let Some(f) = files.get(file) else {
        return;
    };
    let action = f
        .analysis
        .action_at(offset)
        .and_then(|a| f.analysis.actions.get(a));
    let tokens = &f.analysis.tokens;
    let ns = match chain {
        [ns] => *ns,
        ["step", step] => {
            let Some(s) = action.and_then(|a| a.step(step)) else {
                return;
            };
            for d in &s.outputs {
                let ty = decl_parts(f.text, tokens, d)
                    .ty
                    .map(|t| snippet(f.text, t).to_string());
                out.push(
                    &d.name,
                    ItemKind::Output,
                    ty,
                    Some(format!(
                        "A value of step `{step}` (`step.{step}.{}`).",
                        d.name
                    )),
                );
            }
            return;
        }
        _ => return,
    };
    match ns {
        "step" => {
            let Some(a) = action else {
                return;
            };
            for s in &a.steps {
                // The step being declared at the cursor is not offered.
                if s.decl.name_span.contains(offset) {
                    continue;
                }
                let values: Vec<&str> = s.outputs.iter().map(|d| d.name.as_str()).collect();
                let doc = if values.is_empty() {
                    format!("Step `{}` (no values).", s.decl.name)
                } else {
                    format!("Step `{}`: {}.", s.decl.name, values.join(", "))
                };
                out.push(
                    &s.decl.name,
                    ItemKind::Step,
                    Some(format!("step {}", s.decl.name)),
                    Some(doc),
                );
            }
        }
        "input" | "output" => {
            let Some(a) = action else {
                return;
            };
            let (list, kind) = if ns == "input" {
                (&a.inputs, ItemKind::Input)
            } else {
                (&a.outputs, ItemKind::Output)
            };
            for d in list {
                let parts = decl_parts(f.text, tokens, d);
                let ty = parts.ty.map(|t| snippet(f.text, t).to_string());
                let doc = parts.doc.map(|d| string_value(snippet(f.text, d)));
                out.push(&d.name, kind, ty, doc);
            }
        }
        "env" | "secret" => {
            let mut names = BTreeSet::new();
            for (i, fv) in files.iter().enumerate() {
                for m in &fv.analysis.marks {
                    if i == file && m.span.contains(offset) {
                        continue;
                    }
                    match (&m.kind, ns) {
                        (
                            Kind::Sym {
                                sym: Sym::Env(n), ..
                            },
                            "env",
                        )
                        | (
                            Kind::Sym {
                                sym: Sym::Secret(n),
                                ..
                            },
                            "secret",
                        ) => {
                            names.insert(n.clone());
                        }
                        _ => {}
                    }
                }
            }
            for n in names {
                out.push(
                    &n,
                    ItemKind::Variable,
                    Some(ns.to_string()),
                    docs::namespace(ns).map(str::to_string),
                );
            }
        }
        "call" => {
            for n in ["id", "from"] {
                out.push(
                    n,
                    ItemKind::Variable,
                    Some("call".into()),
                    docs::call_member(n).map(str::to_string),
                );
            }
        }
        _ => {}
    }
}

struct Completions {
    items: Vec<Completion>,
    replace: Span,
}

impl Completions {
    fn push(&mut self, label: &str, kind: ItemKind, detail: Option<String>, doc: Option<String>) {
        if self.items.iter().any(|i| i.label == label) {
            return;
        }
        self.items.push(Completion {
            label: label.to_string(),
            kind,
            detail,
            doc,
            replace: self.replace,
        });
    }

    fn keywords(&mut self, words: &[&str], frame: Frame) {
        for w in words {
            let doc = docs::keyword(w, frame);
            let detail = doc.and_then(|d| d.lines().nth(1)).map(str::to_string);
            self.push(w, ItemKind::Keyword, detail, doc.map(str::to_string));
        }
    }

    fn namespaces(&mut self, names: &[&str]) {
        for ns in names {
            self.push(
                ns,
                ItemKind::Namespace,
                Some(format!("{ns}.")),
                docs::namespace(ns).map(str::to_string),
            );
        }
    }

    fn types(&mut self) {
        for t in docs::TYPES {
            self.push(
                t,
                ItemKind::Type,
                Some("type".into()),
                docs::type_name(t).map(str::to_string),
            );
        }
    }

    fn methods(&mut self) {
        for m in ir::Method::ALL {
            self.push(
                m.as_str(),
                ItemKind::Method,
                Some("HTTP method".into()),
                docs::method(m.as_str()).map(str::to_string),
            );
        }
    }

    fn constants(&mut self) {
        for c in ["true", "false", "null"] {
            self.push(c, ItemKind::Value, None, None);
        }
    }

    /// The steps of an action, as bare names (`upstream STEP`, `expect request STEP`).
    fn steps(&mut self, action: Option<&scan::ActionInfo>) {
        for s in action.map(|a| a.steps.as_slice()).unwrap_or(&[]) {
            self.push(
                &s.decl.name,
                ItemKind::Step,
                Some("step".into()),
                docs::keyword("step", Frame::Action).map(str::to_string),
            );
        }
    }

    /// In a condition: operands (references, literals, `not`) after an operator, `and` / `or`
    /// after an operand. `outputs`: whether `output.X` may be read here.
    fn condition(&mut self, units: &[scan::Unit], steps: bool, outputs: bool, frame: Frame) {
        let operand_expected = units.last().is_none_or(|u| match u.kind {
            UnitKind::Punct => u.text != ")",
            UnitKind::Word => matches!(u.text.as_str(), "when" | "and" | "or" | "not"),
            UnitKind::Open(_) => true,
            _ => false,
        });
        if operand_expected {
            let mut ns = vec!["input"];
            if steps {
                ns.push("step");
            }
            if outputs {
                ns.push("output");
            }
            ns.extend(["call", "env"]);
            self.namespaces(&ns);
            self.constants();
            self.keywords(&["not"], frame);
        } else {
            self.keywords(&["and", "or"], frame);
            let has_when = units.iter().skip(1).any(|u| u.text == "when");
            if frame == Frame::Output && !has_when {
                self.keywords(&["when"], frame);
            }
        }
    }
}

// ---- outline ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolKind {
    Action,
    Input,
    Output,
    Block,
    Request,
    Step,
    Test,
    Text,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub detail: Option<String>,
    pub kind: SymbolKind,
    pub span: Span,
    pub selection: Span,
    pub children: Vec<Symbol>,
}

/// A few words of a statement after its keyword, on its first line.
fn statement_detail(text: &str, s: &scan::Stmt) -> Option<String> {
    let rest = text.get(s.head_span.end..s.span.end)?;
    let line = rest.lines().next().unwrap_or("").trim();
    let line = line.trim_end_matches('{').trim();
    if line.is_empty() {
        return None;
    }
    let mut d: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        d.push('…');
    }
    Some(d)
}

pub fn symbols(file: &FileView) -> Vec<Symbol> {
    let text = file.text;
    let tokens = &file.analysis.tokens;
    // An output of the action or a value of a step, with its type as detail.
    let output_symbol = |d: &crate::scan::Decl| Symbol {
        name: d.name.clone(),
        detail: decl_parts(text, tokens, d)
            .ty
            .map(|t| snippet(text, t).to_string()),
        kind: SymbolKind::Output,
        span: d.span,
        selection: d.name_span,
        children: Vec::new(),
    };
    let mut out = Vec::new();
    for a in &file.analysis.actions {
        let mut children = Vec::new();
        for s in &a.statements {
            let detail = statement_detail(text, s);
            let sym = |name: String, kind, detail, children| Symbol {
                name,
                detail,
                kind,
                span: s.span,
                selection: s.head_span,
                children,
            };
            match s.head.as_str() {
                "input" => {
                    if let Some(d) = a.inputs.iter().find(|d| s.span.contains(d.name_span.start)) {
                        let ty = decl_parts(text, tokens, d)
                            .ty
                            .map(|t| snippet(text, t).to_string());
                        children.push(Symbol {
                            name: d.name.clone(),
                            detail: ty,
                            kind: SymbolKind::Input,
                            span: d.span,
                            selection: d.name_span,
                            children: Vec::new(),
                        });
                    }
                }
                "output" => {
                    let fields = a
                        .outputs
                        .iter()
                        .filter(|d| s.span.contains(d.name_span.start))
                        .map(output_symbol)
                        .collect();
                    children.push(sym("output".into(), SymbolKind::Block, None, fields));
                }
                "request" => children.push(sym(
                    "request".into(),
                    SymbolKind::Request,
                    detail,
                    Vec::new(),
                )),
                "test" => {
                    let name = detail.clone().unwrap_or_default();
                    children.push(sym(
                        format!("test {name}"),
                        SymbolKind::Test,
                        None,
                        Vec::new(),
                    ));
                }
                "step" => {
                    let Some(step) = a
                        .steps
                        .iter()
                        .find(|st| s.span.contains(st.decl.name_span.start))
                    else {
                        children.push(sym("step".into(), SymbolKind::Step, None, Vec::new()));
                        continue;
                    };
                    let values = step.outputs.iter().map(output_symbol).collect();
                    // `deferred within 2h when ...`: the rest of the header.
                    let header = step_header(text, step);
                    let rest = header
                        .strip_prefix("step")
                        .map(str::trim_start)
                        .and_then(|r| r.strip_prefix(step.decl.name.as_str()))
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_string);
                    children.push(Symbol {
                        name: step.decl.name.clone(),
                        detail: rest,
                        kind: SymbolKind::Step,
                        span: s.span,
                        selection: step.decl.name_span,
                        children: values,
                    });
                }
                "description" | "say" => {
                    children.push(sym(s.head.clone(), SymbolKind::Text, detail, Vec::new()))
                }
                "on" | "fallback" | "cache" | "messages" => {
                    let name = match &detail {
                        Some(d) if s.head == "on" => format!("on {d}"),
                        _ => s.head.clone(),
                    };
                    children.push(sym(name, SymbolKind::Block, None, Vec::new()));
                }
                _ => children.push(sym(s.head.clone(), SymbolKind::Other, detail, Vec::new())),
            }
        }
        let (name, selection) = match &a.name {
            Some((n, s)) => (n.clone(), *s),
            None => ("(unnamed action)".to_string(), a.keyword),
        };
        out.push(Symbol {
            name,
            detail: None,
            kind: SymbolKind::Action,
            span: a.span,
            selection,
            children,
        });
    }
    out
}

// ---- semantic tokens ------------------------------------------------------------------------------

/// Semantic token types, in legend order.
pub const TOKEN_TYPES: &[&str] = &[
    "keyword",
    "comment",
    "string",
    "number",
    "regexp",
    "operator",
    "type",
    "enumMember",
    "function",
    "parameter",
    "property",
    "variable",
    "namespace",
    "method",
];

/// Semantic token modifiers, in legend order (bit positions).
pub const TOKEN_MODIFIERS: &[&str] = &["declaration", "readonly", "defaultLibrary"];

/// (span, type index, modifier bits) of every classified piece of the file, in order.
pub fn semantic_tokens(file: &FileView) -> Vec<(Span, u32, u32)> {
    let ty = |name: &str| TOKEN_TYPES.iter().position(|t| *t == name).unwrap_or(0) as u32;
    let mut out = Vec::new();
    for m in &file.analysis.marks {
        let word = snippet(file.text, m.span);
        let (t, mods) = match &m.kind {
            Kind::Keyword => (ty("keyword"), 0),
            Kind::Comment => (ty("comment"), 0),
            Kind::Str | Kind::EnumValue => (ty("string"), 0),
            Kind::Number | Kind::Status => (ty("number"), 0),
            Kind::Path => (ty("regexp"), 0),
            Kind::Operator => (ty("operator"), 0),
            Kind::TypeName => (ty("type"), 4),
            Kind::Format | Kind::Method | Kind::ErrorCode => (ty("enumMember"), 0),
            Kind::MappingFn => (ty("function"), 4),
            Kind::Constant if matches!(word, "true" | "false" | "null") => (ty("keyword"), 0),
            Kind::Constant => (ty("enumMember"), 0),
            Kind::Namespace => (ty("namespace"), 0),
            Kind::Property => (ty("property"), 0),
            Kind::Sym { sym, decl } => {
                let d = u32::from(*decl);
                match sym {
                    Sym::Input(_) => (ty("parameter"), d),
                    Sym::Output(_) => (ty("property"), d),
                    Sym::Action(_) => (ty("function"), d),
                    Sym::Env(_) | Sym::Secret(_) => (ty("variable"), 2),
                    Sym::Call(_) => (ty("variable"), 2 | 4),
                    Sym::Step(_) => (ty("method"), d),
                    Sym::StepValue { .. } => (ty("property"), d),
                }
            }
        };
        out.push((m.span, t, mods));
    }
    out
}
