//! Diagnostics for people (codespan-reporting, colored on a terminal only) and for tools (JSON).

use std::io::{IsTerminal, Write};

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;
use mca_compiler::{Diagnostic, LineIndex, Severity, Source};
use serde_json::json;

/// Writes diagnostics for a person to stderr, then a summary line.
pub fn human(sources: &[Source], diagnostics: &[Diagnostic]) {
    let mut files = SimpleFiles::new();
    for s in sources {
        files.add(s.name.as_str(), s.text.as_str());
    }
    let config = term::Config::default();
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let choice = if color {
        term::termcolor::ColorChoice::Auto
    } else {
        term::termcolor::ColorChoice::Never
    };
    let stream = term::termcolor::StandardStream::stderr(choice);
    let mut lock = stream.lock();
    let styles = term::Styles::default();
    let mut writer = term::StylesWriter::new(&mut lock, &styles);
    for d in diagnostics {
        let _ = term::emit_to_write_style(&mut writer, &config, &files, &to_codespan(d));
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let _ = writeln!(
        lock,
        "{} file{} checked: {errors} error{}, {warnings} warning{}",
        sources.len(),
        plural(sources.len()),
        plural(errors),
        plural(warnings)
    );
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn to_codespan(d: &Diagnostic) -> cs::Diagnostic<usize> {
    let severity = match d.severity {
        Severity::Error => cs::Severity::Error,
        Severity::Warning => cs::Severity::Warning,
    };
    let mut labels =
        vec![
            cs::Label::primary(d.primary.file, d.primary.span.start..d.primary.span.end)
                .with_message(&d.primary.message),
        ];
    for l in &d.secondary {
        labels
            .push(cs::Label::secondary(l.file, l.span.start..l.span.end).with_message(&l.message));
    }
    let mut out = cs::Diagnostic::new(severity)
        .with_code(d.code.as_str())
        .with_message(&d.message)
        .with_labels(labels);
    if let Some(h) = &d.hint {
        out = out.with_notes(vec![format!("hint: {h}")]);
    }
    out
}

/// The diagnostics as one JSON array (the `--format json` contract).
pub fn json(sources: &[Source], diagnostics: &[Diagnostic]) -> serde_json::Value {
    let indexes: Vec<LineIndex> = sources.iter().map(|s| LineIndex::new(&s.text)).collect();
    let items: Vec<serde_json::Value> = diagnostics
        .iter()
        .filter_map(|d| {
            let src = sources.get(d.primary.file)?;
            let idx = indexes.get(d.primary.file)?;
            let (line, column) = idx.line_col(&src.text, d.primary.span.start);
            let (end_line, end_column) = idx.line_col(&src.text, d.primary.span.end);
            Some(json!({
                "severity": d.severity.as_str(),
                "code": d.code.as_str(),
                "message": d.message,
                "file": src.name,
                "line": line,
                "column": column,
                "end_line": end_line,
                "end_column": end_column,
                "label": d.primary.message,
                "hint": d.hint,
            }))
        })
        .collect();
    serde_json::Value::Array(items)
}
