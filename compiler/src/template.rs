//! String literals: escapes, and `{expr}` holes in template positions.

use crate::ast::{Ident, RefExpr, Span, StrLit};
use crate::diagnostic::{Code, Diagnostic, FileId};

/// One piece of a template as written.
#[derive(Debug, Clone, PartialEq)]
pub enum TPart {
    Text(String),
    Ref(RefExpr),
}

/// Applies the escapes of a plain string (no holes: `{` is a character).
pub fn unescape(file: FileId, lit: &StrLit) -> Result<String, Box<Diagnostic>> {
    let parts = scan(file, lit, false)?;
    Ok(parts
        .into_iter()
        .map(|p| match p {
            TPart::Text(t) => t,
            TPart::Ref(_) => String::new(),
        })
        .collect())
}

/// Splits a template string into text and `{reference}` holes. `\{` and `\}` are literal braces.
pub fn parse(file: FileId, lit: &StrLit) -> Result<Vec<TPart>, Box<Diagnostic>> {
    scan(file, lit, true)
}

fn scan(file: FileId, lit: &StrLit, holes: bool) -> Result<Vec<TPart>, Box<Diagnostic>> {
    let base = lit.content_start();
    let raw = lit.raw.as_str();
    let bytes = raw.as_bytes();
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < raw.len() {
        // Copy the run of plain text up to the next escape or hole in one go.
        let run = bytes[i..]
            .iter()
            .position(|&b| b == b'\\' || (holes && b == b'{'))
            .unwrap_or(raw.len() - i);
        text.push_str(&raw[i..i + run]);
        i += run;
        if i == raw.len() {
            break;
        }
        if bytes[i] == b'\\' {
            let j = i + 1;
            let Some(e) = raw[j..].chars().next() else {
                return Err(bad_escape(file, raw, base, base + i, base + i + 1));
            };
            match e {
                '"' | '\\' | '/' | '{' | '}' => text.push(e),
                'n' => text.push('\n'),
                'r' => text.push('\r'),
                't' => text.push('\t'),
                'b' => text.push('\u{8}'),
                'f' => text.push('\u{c}'),
                'u' => {
                    let hex = raw.get(j + 1..j + 5).unwrap_or("");
                    let code = (hex.len() == 4)
                        .then(|| u32::from_str_radix(hex, 16).ok())
                        .flatten()
                        .and_then(char::from_u32);
                    match code {
                        Some(ch) => {
                            text.push(ch);
                            // The four hex digits (ASCII, since they parsed).
                            i = j + 5;
                            continue;
                        }
                        None => {
                            return Err(bad_escape(
                                file,
                                raw,
                                base,
                                base + i,
                                base + j + 1 + hex.len(),
                            ))
                        }
                    }
                }
                _ => {
                    return Err(bad_escape(
                        file,
                        raw,
                        base,
                        base + i,
                        base + j + e.len_utf8(),
                    ))
                }
            }
            i = j + e.len_utf8();
        } else {
            // A `{` in a template: the hole ends at the first `}`; a `{` before it means this one
            // was not closed.
            let close = raw[i + 1..].find(['{', '}']).map(|k| i + 1 + k);
            let Some(close) = close.filter(|&k| raw[k..].starts_with('}')) else {
                return Err(unclosed_hole(file, raw, base, i));
            };
            let inner = &raw[i + 1..close];
            let r = parse_ref(file, inner, base + i + 1)?;
            if !text.is_empty() {
                parts.push(TPart::Text(std::mem::take(&mut text)));
            }
            parts.push(TPart::Ref(r));
            i = close + 1;
        }
    }
    if !text.is_empty() || parts.is_empty() {
        parts.push(TPart::Text(text));
    }
    Ok(parts)
}

/// `{input.x` with no `}` before the next `{` or the end of the string.
fn unclosed_hole(file: FileId, raw: &str, base: usize, open: usize) -> Box<Diagnostic> {
    let rest = &raw[open + 1..];
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    let d = Diagnostic::new(
        Code::InvalidString,
        file,
        Span::new(base + open, base + open + 1 + name_len),
        "this `{` opens a template hole that is never closed",
    );
    Box::new(if name.contains('.') {
        d.label(format!("expected `}}` after `{name}`"))
            .hint(format!("write `{{{name}}}`, or `\\{{` for a literal brace"))
    } else {
        d.label("unclosed `{`")
            .hint("close it with `}`, or write `\\{` for a literal brace")
    })
}

fn bad_escape(file: FileId, raw: &str, base: usize, start: usize, end: usize) -> Box<Diagnostic> {
    let end = end.max(start + 1);
    let seq = raw
        .get(start - base..(end - base).min(raw.len()))
        .unwrap_or("\\");
    let plain = seq.strip_prefix('\\').unwrap_or("");
    let hint = if plain.len() == 1 && !plain.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        format!(
            "`{plain}` needs no escape: write it without the backslash, or `\\\\` for a backslash"
        )
    } else {
        "valid escapes: \\\" \\\\ \\n \\r \\t \\uXXXX \\{ \\}".to_string()
    };
    Box::new(
        Diagnostic::new(
            Code::InvalidString,
            file,
            Span::new(start, end),
            format!("unknown escape sequence `{seq}`"),
        )
        .label("not a valid escape")
        .hint(hint),
    )
}

/// Parses `input.name` inside a hole; `offset` is the file offset of `inner`.
fn parse_ref(file: FileId, inner: &str, offset: usize) -> Result<RefExpr, Box<Diagnostic>> {
    let lead = inner.len() - inner.trim_start().len();
    let trimmed = inner.trim();
    let start = offset + lead;
    let span = Span::new(start, start + trimmed.len());
    let mut segments = Vec::new();
    let mut pos = start;
    for seg in trimmed.split('.') {
        let valid = seg
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Box::new(Diagnostic::new(
                Code::InvalidString,
                file,
                if trimmed.is_empty() {
                    Span::new(offset.saturating_sub(1), offset + inner.len() + 1)
                } else {
                    span
                },
                format!("`{{{trimmed}}}` is not a reference"),
            )
            .label("expected a reference like `input.name`")
            .hint("template holes hold one reference: {input.x}, {output.x}, {env.X}, {call.id}; write `\\{` for a literal brace")));
        }
        segments.push(Ident {
            name: seg.to_string(),
            span: Span::new(pos, pos + seg.len()),
        });
        pos += seg.len() + 1;
    }
    if segments.len() < 2 {
        return Err(Box::new(Diagnostic::new(
            Code::InvalidString,
            file,
            span,
            format!("`{{{trimmed}}}` is not a reference"),
        )
        .label("expected a reference like `input.name`")
        .hint(format!("say what it names: `{{input.{trimmed}}}` for an input, `{{output.{trimmed}}}` for an output; write `\\{{` for a literal brace"))));
    }
    Ok(RefExpr { segments, span })
}
