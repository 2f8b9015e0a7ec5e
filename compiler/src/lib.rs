//! The `.mca` compiler: pure functions from source text to an AST, diagnostics and the checked IR.
//!
//! No IO, no async, no network. User mistakes become [`Diagnostic`]s, never panics or `Err`s, and
//! one mistake never hides another: every file and every action is checked.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod ast;
mod check;
pub mod diagnostic;
pub mod format;
pub mod formats;
pub mod ir;
mod jsonpath;
pub mod lines;
pub(crate) mod suggest;
pub mod syntax;
mod template;

use std::collections::{HashMap, HashSet};

pub use diagnostic::{Code, Diagnostic, FileId, Label, Severity};
pub use lines::LineIndex;

/// One input file: a name (shown in diagnostics and recorded in the IR) and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Everything one compilation produced.
#[derive(Debug, Clone)]
pub struct Compilation {
    /// One tree per source, in order (holding the actions that parsed).
    pub files: Vec<ast::File>,
    /// The checked IR; `None` when any error was reported.
    pub ir: Option<ir::Project>,
    /// Every diagnostic of every file, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Compiles a project: parses every source, checks every action against the whole project
/// (action names are unique across files), and lowers to IR when nothing is wrong.
pub fn compile(sources: &[Source]) -> Compilation {
    compile_parallel(sources, 1)
}

/// [`compile`] on up to `threads` threads (files are parsed and checked independently; the
/// result is the same as with one thread). The caller chooses the number: the compiler asks
/// nothing of the machine.
pub fn compile_parallel(sources: &[Source], threads: usize) -> Compilation {
    let threads = threads.clamp(1, sources.len().max(1));
    let parsed: Vec<(ast::File, Vec<Diagnostic>)> = per_file(sources.len(), threads, |id| {
        syntax::parse(id, &sources[id].text)
    });
    let mut diagnostics = Vec::new();
    let mut files = Vec::with_capacity(sources.len());
    for (file, diags) in parsed {
        diagnostics.extend(diags);
        files.push(file);
    }

    // Action names, unique across the project.
    let mut first_seen: HashMap<&str, (FileId, ast::Span)> = HashMap::new();
    let mut names = HashSet::new();
    let mut duplicate = HashSet::new();
    for (id, file) in files.iter().enumerate() {
        for action in &file.actions {
            let name = action.name.name.as_str();
            names.insert(name.to_string());
            match first_seen.get(name) {
                Some(&(first_file, first_span)) => {
                    duplicate.insert((id, action.name.span));
                    diagnostics.push(
                        Diagnostic::new(
                            Code::DuplicateAction,
                            id,
                            action.name.span,
                            format!("an action named `{name}` already exists"),
                        )
                        .label("second action of this name")
                        .secondary(first_file, first_span, "first declared here")
                        .hint("action names are unique across the project: they are the tool names platforms call"),
                    );
                }
                None => {
                    first_seen.insert(name, (id, action.name.span));
                }
            }
        }
    }

    let project = check::ProjectNames { actions: &names };
    let checked: Vec<(Vec<ir::Action>, Vec<Diagnostic>)> = per_file(sources.len(), threads, |id| {
        let src = &sources[id];
        let lines = LineIndex::new(&src.text);
        let mut diags = Vec::new();
        let mut actions = Vec::new();
        let mut cx = check::Ctx {
            file: id,
            file_name: &src.name,
            text: &src.text,
            lines: &lines,
            project: &project,
            diags: &mut diags,
        };
        for action in &files[id].actions {
            if let Some(ir) = check::check_action(&mut cx, action) {
                if !duplicate.contains(&(id, action.name.span)) {
                    actions.push(ir);
                }
            }
        }
        (actions, diags)
    });
    let mut actions = Vec::new();
    for (a, d) in checked {
        actions.extend(a);
        diagnostics.extend(d);
    }

    diagnostics.sort_by_key(|d| (d.primary.file, d.primary.span.start, d.code));
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    Compilation {
        files,
        ir: (!has_errors).then_some(ir::Project {
            ir_version: ir::IR_VERSION,
            actions,
        }),
        diagnostics,
    }
}

/// Runs `f` for every file index on `threads` scoped threads; results in index order.
fn per_file<T: Send>(count: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if threads <= 1 || count <= 1 {
        return (0..count).map(f).collect();
    }
    let f = &f;
    let mut slots: Vec<Option<T>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..count)
                        .step_by(threads)
                        .map(|id| (id, f(id)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            // A panic in a worker is a compiler bug; re-raise it on this thread.
            match h.join() {
                Ok(results) => {
                    for (id, r) in results {
                        slots[id] = Some(r);
                    }
                }
                Err(p) => std::panic::resume_unwind(p),
            }
        }
    });
    slots.into_iter().flatten().collect()
}

/// Compiles one source on its own (handy for tests and tools).
pub fn compile_one(name: &str, text: &str) -> Compilation {
    compile(&[Source::new(name, text)])
}
