//! Diagnostics of a project, recomputed incrementally: the same list as
//! `mca_compiler::compile(sources).diagnostics`, in a fraction of the time after a small edit.
//!
//! The compiler already parses and checks each top-level action on its own; only two facts are
//! project-wide (action names are unique, `invalidates` targets exist). So every file is cut where
//! the compiler cuts it (`split_pieces` follows `syntax::split_actions`), and each piece is
//! compiled alone together with stub actions that stand for the rest of the project:
//!
//! - before the piece, a stub of the same name when an action of that name comes earlier in the
//!   project (so the piece gets its E0101 "already exists", with the label mapped back to the real
//!   first declaration);
//! - after it, one stub per other action name, when the piece mentions `invalidates` (so targets
//!   resolve and "did you mean" sees every name).
//!
//! Diagnostics of the stubs are dropped, spans are shifted back into the file. Results are cached
//! by (piece text, context), so typing in one action recompiles that action only. A test checks
//! this against `compile` on every example, UI case and many broken variants of them.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use mca_compiler::ast::Span;
use mca_compiler::{compile, Diagnostic, FileId, Label, Source};

/// Word that follows a piece that is not the last of its file, so that the compiler sees "the next
/// `action`" after it exactly as in the whole file.
const SENTINEL: &str = "action";

#[derive(Default)]
pub struct Diagnostics {
    /// Name (and its span in the piece) of the action a piece holds, when it parses.
    names: HashMap<String, Option<(String, Span)>>,
    /// Diagnostics of a piece in a context, spans relative to the piece.
    checked: HashMap<Key, Vec<Diagnostic>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    text: String,
    last: bool,
    /// Hash of the other action names, when the piece needs them.
    names: u64,
    earlier_duplicate: bool,
}

struct Piece<'a> {
    file: FileId,
    start: usize,
    text: &'a str,
    last: bool,
}

impl Diagnostics {
    pub fn new() -> Diagnostics {
        Diagnostics::default()
    }

    /// Every diagnostic of the project, as `compile(sources).diagnostics` reports them.
    pub fn compute(&mut self, sources: &[Source]) -> Vec<Diagnostic> {
        let mut pieces = Vec::new();
        for (file, src) in sources.iter().enumerate() {
            let starts = split_pieces(&src.text);
            for (k, &start) in starts.iter().enumerate() {
                let end = starts.get(k + 1).copied().unwrap_or(src.text.len());
                let text = src.text.get(start..end).unwrap_or("");
                if text.trim().is_empty() {
                    continue;
                }
                pieces.push(Piece {
                    file,
                    start,
                    text,
                    last: k + 1 == starts.len(),
                });
            }
        }

        // The action each piece declares (when it parses), in project order.
        let mut names_used = HashMap::new();
        let mut declared: Vec<Option<(String, FileId, Span)>> = Vec::with_capacity(pieces.len());
        for p in &pieces {
            let name = match self.names.get(p.text) {
                Some(n) => n.clone(),
                None => {
                    let (file, _) = mca_compiler::syntax::parse(0, p.text);
                    file.actions
                        .first()
                        .map(|a| (a.name.name.clone(), a.name.span))
                }
            };
            names_used.insert(p.text.to_string(), name.clone());
            declared.push(
                name.map(|(n, s)| (n, p.file, Span::new(s.start + p.start, s.end + p.start))),
            );
        }
        self.names = names_used;

        let mut all: Vec<&str> = declared
            .iter()
            .flatten()
            .map(|(n, _, _)| n.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        all.sort_unstable();
        let names_hash = {
            let mut h = DefaultHasher::new();
            all.hash(&mut h);
            h.finish()
        };
        let mut first: HashMap<&str, (FileId, Span)> = HashMap::new();

        let mut out = Vec::new();
        let mut checked = HashMap::new();
        for (p, decl) in pieces.iter().zip(&declared) {
            let own = decl.as_ref().map(|(n, _, _)| n.as_str());
            let earlier = own.and_then(|n| first.get(n).copied());
            if let Some((n, f, s)) = decl {
                first.entry(n.as_str()).or_insert((*f, *s));
            }
            // Only `invalidates` looks at other actions' names.
            let needs_names = p.text.contains("invalidates");
            let key = Key {
                text: p.text.to_string(),
                last: p.last,
                names: if needs_names { names_hash } else { 0 },
                earlier_duplicate: earlier.is_some(),
            };
            let diags = match self.checked.remove(&key) {
                Some(d) => d,
                None => check_piece(p, own, earlier.is_some(), needs_names.then_some(&all)),
            };
            for d in &diags {
                out.push(relocate(d, p, earlier));
            }
            checked.insert(key, diags);
        }
        self.checked = checked;
        out.sort_by_key(|d| (d.primary.file, d.primary.span.start, d.code));
        out
    }
}

/// File ids inside one piece's compilation.
const BEFORE: FileId = 0;
const PIECE: FileId = 1;
const AFTER: FileId = 2;

/// Compiles one piece with its stubs; returns its diagnostics with spans relative to the piece
/// and labels into stubs kept as they are (mapped by `relocate`).
fn check_piece(
    p: &Piece,
    own: Option<&str>,
    earlier_duplicate: bool,
    names: Option<&Vec<&str>>,
) -> Vec<Diagnostic> {
    let before = match (own, earlier_duplicate) {
        (Some(n), true) => stub(n),
        _ => String::new(),
    };
    let mut after = String::new();
    for n in names.into_iter().flatten() {
        if Some(*n) != own {
            after.push_str(&stub(n));
        }
    }
    let mut text = p.text.to_string();
    if !p.last {
        text.push_str(SENTINEL);
    }
    let sources = [
        Source::new("before", before),
        Source::new("piece", text),
        Source::new("after", after),
    ];
    let len = p.text.len();
    compile(&sources)
        .diagnostics
        .into_iter()
        .filter(|d| d.primary.file == PIECE && d.primary.span.start <= len)
        .collect()
}

fn stub(name: &str) -> String {
    format!("action {name} {{}}\n")
}

/// Puts a piece's diagnostic back into its file.
fn relocate(d: &Diagnostic, p: &Piece, earlier: Option<(FileId, Span)>) -> Diagnostic {
    let shift = |l: &Label| -> Option<Label> {
        match l.file {
            PIECE => Some(Label {
                file: p.file,
                span: Span::new(l.span.start + p.start, l.span.end + p.start),
                message: l.message.clone(),
            }),
            BEFORE => earlier.map(|(file, span)| Label {
                file,
                span,
                message: l.message.clone(),
            }),
            // No diagnostic points into the other stubs today; drop rather than mislead.
            AFTER => None,
            _ => None,
        }
    };
    let mut d = d.clone();
    if let Some(primary) = shift(&d.primary) {
        d.primary = primary;
    }
    d.secondary = d.secondary.iter().filter_map(shift).collect();
    d
}

/// Start offsets of the pieces of a file: 0, then every place where the compiler starts an
/// action (`syntax::action_starts`), so each piece compiles exactly as it would in the whole file
/// (`same_diagnostics_as_compile*` below check it).
pub fn split_pieces(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(
        mca_compiler::syntax::action_starts(text)
            .into_iter()
            .filter(|&s| s > 0),
    );
    starts
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// Projects to compare on: all examples together, and every UI case.
    fn projects() -> Vec<Vec<Source>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |files: Vec<PathBuf>| -> Vec<Source> {
            files
                .into_iter()
                .map(|f| {
                    let text = std::fs::read_to_string(&f).unwrap_or_default();
                    Source::new(f.display().to_string(), text)
                })
                .collect()
        };
        let mut out = Vec::new();
        let mut examples = Vec::new();
        mca_files(&root.join("examples"), &mut examples);
        assert!(!examples.is_empty());
        out.push(read(examples.clone()));
        for e in examples {
            out.push(read(vec![e]));
        }
        let Ok(entries) = std::fs::read_dir(root.join("tests/ui")) else {
            return out;
        };
        let mut cases: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        cases.sort();
        for c in cases {
            let mut files = Vec::new();
            if c.is_dir() {
                mca_files(&c, &mut files);
            } else if c.extension().is_some_and(|x| x == "mca") {
                files.push(c);
            }
            if !files.is_empty() {
                out.push(read(files));
            }
        }
        out
    }

    fn key(d: &Diagnostic) -> String {
        format!("{d:?}")
    }

    fn same(cache: &mut Diagnostics, sources: &[Source]) {
        let mut want: Vec<String> = compile(sources).diagnostics.iter().map(key).collect();
        let mut got: Vec<String> = cache.compute(sources).iter().map(key).collect();
        want.sort();
        got.sort();
        if want != got {
            let texts: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
            assert_eq!(want, got, "on {texts:#?}");
        }
    }

    #[test]
    fn same_diagnostics_as_compile() {
        let mut cache = Diagnostics::new();
        for project in projects() {
            same(&mut cache, &project);
            // Cached: the same again.
            same(&mut cache, &project);
        }
    }

    #[test]
    fn same_diagnostics_as_compile_on_edits() {
        // Deletions, insertions and duplications of pieces of every file, fed through one cache
        // as an editor would.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        let inserts = [
            "}",
            "{",
            "action",
            "\naction dup {\n",
            "\"",
            "/*",
            "invalidates x\n",
            "input.",
            " ",
            "action lookup_customer {}\n",
            "ü",
        ];
        for project in projects() {
            let mut cache = Diagnostics::new();
            let mut sources = project.clone();
            for _ in 0..12 {
                let f = next(sources.len());
                let text = &sources[f].text;
                let mut at = next(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut edited = text.clone();
                match next(3) {
                    0 => {
                        let mut end = (at + next(40)).min(text.len());
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        edited.replace_range(at..end, "");
                    }
                    1 => edited.insert_str(at, inserts[next(inserts.len())]),
                    _ => {
                        let piece = text[at..].to_string();
                        edited.push_str(&piece);
                    }
                }
                sources[f].text = edited;
                same(&mut cache, &sources);
            }
        }
    }
}
