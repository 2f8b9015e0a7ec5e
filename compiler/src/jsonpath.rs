//! JSONPath checks on top of the RFC 9535 parser of `jsonpath-rust`: errors with positions inside
//! the path, singular-query detection, and the RFC 9535 function type rules (§2.4.3).

use jsonpath_rust::parser::errors::JsonPathError;
use jsonpath_rust::parser::model::{
    Comparable, Comparison, Filter, FilterAtom, FnArg, JpQuery, Segment, Selector, Test,
    TestFunction,
};

/// A problem in a path: a message and the byte range inside the path text it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub message: String,
    pub start: usize,
    pub end: usize,
    pub hint: Option<String>,
    /// The words under the primary span.
    pub label: String,
    /// A well-formed path that breaks the function typing rules (E0303) rather than a syntax
    /// error (E0301).
    pub typing: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    pub singular: bool,
    /// Byte range in the path of the first segment that can select several nodes.
    pub first_plural: Option<(usize, usize)>,
}

pub fn check(path: &str) -> Result<Checked, PathError> {
    match simple(path) {
        Some(checked) => Ok(checked),
        None => full_check(path),
    }
}

/// The paths most outputs use (`$.a.b[0].c`, `$.items[*].id`: `.name`, `.*`, `[index]` and `[*]`
/// segments, nothing else) checked by one scan, without the RFC 9535 parser. `None` for anything
/// else, including every path with an error: [`full_check`] decides those, with the same result
/// for the paths accepted here (a test compares both).
fn simple(path: &str) -> Option<Checked> {
    let b = path.as_bytes();
    if b.first() != Some(&b'$') {
        return None;
    }
    let mut first_plural = None;
    let mut i = 1;
    while i < b.len() {
        let start = i;
        let plural = match (b[i], b.get(i + 1).copied()) {
            (b'.', Some(b'*')) => {
                i += 2;
                true
            }
            (b'.', Some(c)) if c.is_ascii_alphabetic() || c == b'_' => {
                i += 2;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                false
            }
            (b'[', Some(b'*')) if b.get(i + 2) == Some(&b']') => {
                i += 3;
                true
            }
            (b'[', Some(b'0')) if b.get(i + 2) == Some(&b']') => {
                i += 3;
                false
            }
            (b'[', Some(b'1'..=b'9')) => {
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                // Up to 15 digits is always within RFC 9535's integer range.
                if digits > 15 || b.get(i + 1 + digits) != Some(&b']') {
                    return None;
                }
                i += digits + 2;
                false
            }
            _ => return None,
        };
        if plural && first_plural.is_none() {
            first_plural = Some((start, i));
        }
    }
    Some(Checked {
        singular: first_plural.is_none(),
        first_plural,
    })
}

/// Every path, through jsonpath-rust's RFC 9535 parser.
fn full_check(path: &str) -> Result<Checked, PathError> {
    let query = jsonpath_rust::parser::parse_json_path(path).map_err(|e| parse_error(path, e))?;
    check_functions_in_query(path, &query)?;
    let spans = segment_spans(path);
    let mut first_plural = None;
    let mut singular = true;
    for (i, seg) in query.segments.iter().enumerate() {
        if !is_singular_segment(seg) {
            singular = false;
            if first_plural.is_none() {
                first_plural = Some(
                    spans
                        .get(i)
                        .copied()
                        .filter(|_| spans.len() == query.segments.len())
                        .unwrap_or((0, path.len())),
                );
            }
        }
    }
    Ok(Checked {
        singular,
        first_plural,
    })
}

fn is_singular_segment(seg: &Segment) -> bool {
    matches!(
        seg,
        Segment::Selector(Selector::Name(_) | Selector::Index(_))
    ) || matches!(seg, Segment::Selectors(s) if s.len() == 1 && matches!(s[0], Selector::Name(_) | Selector::Index(_)))
}

const RFC_FUNCTIONS: [&str; 5] = ["length", "count", "match", "search", "value"];

fn parse_error(path: &str, e: JsonPathError) -> PathError {
    match e {
        JsonPathError::PestError(pe) => {
            use pest::error::{ErrorVariant, InputLocation};
            let pos = match pe.location {
                InputLocation::Pos(p) => p,
                InputLocation::Span((s, _)) => s,
            };
            if let Some(err) = unknown_function_at(path, pos) {
                return err;
            }
            if let Some(err) = extra_argument_at(path, pos) {
                return err;
            }
            let end = token_end(path, pos);
            let found = path.get(pos..end).unwrap_or("");
            let mut expected: Vec<&str> = Vec::new();
            if let ErrorVariant::ParsingError { positives, .. } = &pe.variant {
                for r in positives {
                    if let Some(words) = describe_path_rule(&format!("{r:?}")) {
                        if !expected.contains(&words) {
                            expected.push(words);
                        }
                    }
                }
            }
            // The most common slips, in the user's words.
            if found == "=" && path.get(end..end + 1) != Some("=") {
                return PathError {
                    message: "invalid JSONPath: `=` is not a comparison; write `==`".into(),
                    start: pos,
                    end,
                    hint: Some("filters compare with `==`, `!=`, `<`, `<=`, `>` or `>=`, for example `[?@.status == 'open']`".into()),
                    label: "write `==`".into(),
                    typing: false,
                };
            }
            let what = match expected.as_slice() {
                [] => "a valid JSONPath".to_string(),
                [one] => one.to_string(),
                [init @ .., last] => format!("{} or {last}", init.join(", ")),
            };
            let message = if found.is_empty() {
                format!("invalid JSONPath: expected {what} at the end of the path")
            } else {
                format!("invalid JSONPath: expected {what}, found `{found}`")
            };
            let in_brackets = path[..pos].ends_with('[') || path[..pos].ends_with(", ");
            let hint = if in_brackets && found.starts_with(|c: char| c.is_alphabetic() || c == '_')
            {
                format!("names in brackets are quoted: `['{found}']`, or write `.{found}`")
            } else if in_brackets && found.len() > 1 && found.starts_with('0') {
                "an index has no leading zeros: write `[0]`, `[1]`, ...".into()
            } else {
                path_hint(path)
            };
            let label = match expected.as_slice() {
                [one] => format!("expected {one}"),
                _ if found.is_empty() => "the path ends too early".into(),
                _ => "not valid here".into(),
            };
            // At the end of the path, underline its last character rather than what follows.
            let (start, end) = if found.is_empty() {
                let last = path[..pos.min(path.len())]
                    .chars()
                    .next_back()
                    .map_or(0, char::len_utf8);
                (pos - last, pos)
            } else {
                (pos, end)
            };
            PathError {
                message,
                start,
                end,
                hint: Some(hint),
                label,
                typing: false,
            }
        }
        JsonPathError::MaxNestingDepthExceeded(n) => PathError {
            message: format!("JSONPath nests deeper than {n} levels"),
            start: 0,
            end: path.len(),
            hint: None,
            label: "too deep".into(),
            typing: false,
        },
        other => {
            let text = other.to_string();
            // "Function match(...) is not comparable": point at the function.
            let not_comparable = ["match", "search"]
                .iter()
                .filter(|_| text.contains("not comparable"))
                .find(|f| path.contains(&format!("{f}(")));
            if let Some(f) = not_comparable {
                return typing_error(
                    path,
                    f,
                    format!("`{f}()` returns a logical result (RFC 9535 LogicalType) and cannot be compared"),
                    format!("use it as a test on its own, for example `[?{f}(@.name, 'M.*')]`"),
                );
            }
            // "Invalid argument for the function `count`: expected a node, got a literal".
            let bad_argument = ["count", "value", "length"]
                .iter()
                .find(|f| text.contains(&format!("Invalid argument for the function `{f}`")));
            if let Some(f) = bad_argument {
                let got = if text.contains("got a filter") {
                    "a logical expression"
                } else {
                    "a literal"
                };
                return typing_error(
                    path,
                    f,
                    format!("`{f}()` takes a query (RFC 9535 NodesType), not {got}"),
                    format!("pass a query, for example `{f}(@.items[*])`"),
                );
            }
            PathError {
                message: "invalid JSONPath".into(),
                start: 0,
                end: path.len(),
                hint: Some(path_hint(path)),
                label: "not a valid RFC 9535 JSONPath".into(),
                typing: false,
            }
        }
    }
}

/// `contains(@.name, 'x')`: a name followed by `(` where the parser gave up, that is not one of
/// the RFC 9535 functions.
fn unknown_function_at(path: &str, pos: usize) -> Option<PathError> {
    let rest = path.get(pos..)?;
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let name = &rest[..len];
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !rest[len..].trim_start().starts_with('(')
        || RFC_FUNCTIONS.contains(&name)
    {
        return None;
    }
    let suggestion = crate::suggest::closest(name, RFC_FUNCTIONS.into_iter());
    let hint = match suggestion {
        Some(s) => format!("did you mean `{s}()`?"),
        None if ["contains", "includes", "like", "startswith", "starts_with"]
            .contains(&name.to_ascii_lowercase().as_str()) =>
        {
            "to look for text inside a string use `search(@.name, 'Router')`; `match()` tests the whole string".into()
        }
        None => "RFC 9535 defines length(), count(), match(), search() and value()".into(),
    };
    Some(PathError {
        message: format!("`{name}()` is not a JSONPath function"),
        start: pos,
        end: pos + len,
        hint: Some(hint),
        label: "unknown function".into(),
        typing: true,
    })
}

/// `length(@.a, @.b)`: a `,` inside a one-argument function.
fn extra_argument_at(path: &str, pos: usize) -> Option<PathError> {
    if path.get(pos..pos + 1) != Some(",") {
        return None;
    }
    let (name, _) = open_call_before(path, pos)?;
    ["length", "count", "value"].contains(&name).then(|| {
        let e = typing_error(
            path,
            name,
            format!("`{name}()` takes one argument"),
            format!("for example `{name}(@.items)`"),
        );
        PathError {
            start: pos,
            end: pos + 1,
            label: "second argument".into(),
            ..e
        }
    })
}

/// The innermost function call still open at `pos`: its name and the offset of the name.
fn open_call_before(path: &str, pos: usize) -> Option<(&str, usize)> {
    let b = path.as_bytes();
    let mut stack: Vec<usize> = Vec::new();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < pos.min(b.len()) {
        let c = b[i];
        match quote {
            Some(_) if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'(' => stack.push(i),
                b')' => {
                    stack.pop();
                }
                _ => {}
            },
        }
        i += 1;
    }
    let open = *stack.last()?;
    let head = &path[..open];
    let start = head
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let name = &head[start..];
    (!name.is_empty()).then_some((name, start))
}

fn path_hint(path: &str) -> String {
    if path.contains("?(") && !path.contains("?(@") {
        "RFC 9535 filters are written `[?@.status == 'open']`".into()
    } else {
        "paths look like `$.data[0].name`, `$.items[*].id` or `$.items[?@.status == 'open']`".into()
    }
}

/// End of the token starting at `pos`: a whole word, or one character.
fn token_end(s: &str, pos: usize) -> usize {
    let Some(rest) = s.get(pos..) else {
        return pos;
    };
    let word = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if word > 0 {
        return pos + word;
    }
    rest.chars().next().map_or(pos, |c| pos + c.len_utf8())
}

/// Words for the rules of jsonpath-rust's RFC 9535 grammar; `None` for rules that would only
/// confuse.
fn describe_path_rule(rule: &str) -> Option<&'static str> {
    Some(match rule {
        "EOI" => "the end of the path",
        "segments" | "segment" | "child_segment" | "descendant_segment" | "name_segment"
        | "index_segment" => "a segment like `.name` or `[0]`",
        "selector" => "a selector (a quoted name, an index, `*`, a slice or a `?` filter)",
        "name_selector" | "string" => "a quoted string",
        "index_selector" | "int" => "an index",
        "slice_selector" => "a slice like `1:3`",
        "wildcard_selector" => "`*`",
        "member_name_shorthand" | "ALPHA" | "name_first" => "a member name",
        "filter_selector" | "logical_expr" | "logical_expr_and" | "atom_expr" | "paren_expr"
        | "test_expr" | "comp_expr" => "a filter expression",
        "comparable" | "literal" | "singular_query" => "a value or a singular query",
        "comp_op" => "a comparison operator (`==`, `!=`, `<`, `<=`, `>`, `>=`)",
        "number" => "a number",
        "function_expr" => "a function",
        _ => return None,
    })
}

/// Byte ranges of the top-level segments of a path (after `$`).
fn segment_spans(path: &str) -> Vec<(usize, usize)> {
    let b = path.as_bytes();
    let mut spans = Vec::new();
    let mut i = 1; // after `$`
    while i < b.len() {
        let start = i;
        if b[i] == b'.' {
            i += 1;
            if b.get(i) == Some(&b'.') {
                i += 1;
            }
            if b.get(i) == Some(&b'[') {
                i = skip_bracket(b, i);
            } else {
                while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                    i += 1;
                }
            }
        } else if b[i] == b'[' {
            i = skip_bracket(b, i);
        } else if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        } else {
            return Vec::new();
        }
        spans.push((start, i));
    }
    spans
}

fn skip_bracket(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                b'\'' | b'"' => quote = Some(c),
                b'[' | b'(' => depth += 1,
                b']' | b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    b.len()
}

// ---- RFC 9535 §2.4.3 well-typedness ------------------------------------------------------------

fn check_functions_in_query(path: &str, q: &JpQuery) -> Result<(), PathError> {
    check_segments(path, &q.segments)
}

fn check_segments(path: &str, segments: &[Segment]) -> Result<(), PathError> {
    for s in segments {
        check_segment(path, s)?;
    }
    Ok(())
}

fn check_segment(path: &str, s: &Segment) -> Result<(), PathError> {
    match s {
        Segment::Descendant(inner) => check_segment(path, inner),
        Segment::Selector(sel) => check_selector(path, sel),
        Segment::Selectors(sels) => sels.iter().try_for_each(|s| check_selector(path, s)),
    }
}

fn check_selector(path: &str, s: &Selector) -> Result<(), PathError> {
    match s {
        Selector::Filter(f) => check_filter(path, f),
        _ => Ok(()),
    }
}

fn check_filter(path: &str, f: &Filter) -> Result<(), PathError> {
    match f {
        Filter::Or(fs) | Filter::And(fs) => fs.iter().try_for_each(|f| check_filter(path, f)),
        Filter::Atom(a) => match a {
            FilterAtom::Filter { expr, .. } => check_filter(path, expr),
            FilterAtom::Test { expr, .. } => check_test_expr(path, expr),
            FilterAtom::Comparison(c) => check_comparison(path, c),
        },
    }
}

/// A test expression must be a query (existence test) or a LogicalType function.
fn check_test_expr(path: &str, t: &Test) -> Result<(), PathError> {
    match t {
        Test::RelQuery(segs) => check_segments(path, segs),
        Test::AbsQuery(q) => check_segments(path, &q.segments),
        Test::Function(f) => {
            check_function(path, f)?;
            match &**f {
                TestFunction::Length(_) | TestFunction::Count(_) | TestFunction::Value(_) => {
                    let name = function_name(f);
                    Err(typing_error(
                        path,
                        name,
                        format!("`{name}()` returns a value (RFC 9535 ValueType) and cannot stand alone as a filter test"),
                        format!("compare it, for example `[?{name}(@.items) > 0]`"),
                    ))
                }
                _ => Ok(()),
            }
        }
    }
}

fn check_comparison(path: &str, c: &Comparison) -> Result<(), PathError> {
    let (l, r) = c.vals();
    for side in [l, r] {
        if let Comparable::Function(f) = side {
            check_function(path, f)?;
        }
    }
    Ok(())
}

fn function_name(f: &TestFunction) -> &str {
    match f {
        TestFunction::Custom(n, _) => n.as_str(),
        TestFunction::Length(_) => "length",
        TestFunction::Value(_) => "value",
        TestFunction::Count(_) => "count",
        TestFunction::Search(..) => "search",
        TestFunction::Match(..) => "match",
    }
}

fn check_function(path: &str, f: &TestFunction) -> Result<(), PathError> {
    let name = function_name(f);
    match f {
        TestFunction::Custom(n, _) => Err(typing_error(
            path,
            n,
            format!("`{n}()` is not a JSONPath function"),
            "RFC 9535 defines length(), count(), match(), search() and value()".into(),
        )),
        TestFunction::Length(a) => value_arg(path, name, a),
        TestFunction::Count(a) | TestFunction::Value(a) => nodes_arg(path, name, a),
        TestFunction::Search(a, b) | TestFunction::Match(a, b) => {
            value_arg(path, name, a)?;
            value_arg(path, name, b)
        }
    }
}

/// A ValueType parameter takes a literal, a singular query or a ValueType function.
fn value_arg(path: &str, fname: &str, a: &FnArg) -> Result<(), PathError> {
    match a {
        FnArg::Literal(_) => Ok(()),
        FnArg::Filter(_) => Err(typing_error(
            path,
            fname,
            format!("`{fname}()` takes a value, not a logical expression"),
            "pass a literal or a singular query like `@.name`".into(),
        )),
        FnArg::Test(t) => match &**t {
            Test::RelQuery(segs) => {
                check_segments(path, segs)?;
                if segs.iter().all(is_singular_segment) {
                    Ok(())
                } else {
                    Err(typing_error(
                        path,
                        fname,
                        format!("`{fname}()` takes a single value, but its argument can select several nodes"),
                        "use a singular query (names and indexes only), or count() for node lists".into(),
                    ))
                }
            }
            Test::AbsQuery(q) => {
                check_segments(path, &q.segments)?;
                if q.segments.iter().all(is_singular_segment) {
                    Ok(())
                } else {
                    Err(typing_error(
                        path,
                        fname,
                        format!("`{fname}()` takes a single value, but its argument can select several nodes"),
                        "use a singular query (names and indexes only), or count() for node lists".into(),
                    ))
                }
            }
            Test::Function(inner) => {
                check_function(path, inner)?;
                match &**inner {
                    TestFunction::Match(..) | TestFunction::Search(..) => Err(typing_error(
                        path,
                        function_name(inner),
                        format!(
                            "`{}()` returns a logical result and cannot be the argument of `{fname}()`",
                            function_name(inner)
                        ),
                        "only length(), count() and value() produce values".into(),
                    )),
                    _ => Ok(()),
                }
            }
        },
    }
}

/// A NodesType parameter takes a query.
fn nodes_arg(path: &str, fname: &str, a: &FnArg) -> Result<(), PathError> {
    match a {
        FnArg::Test(t) => match &**t {
            Test::RelQuery(segs) => check_segments(path, segs),
            Test::AbsQuery(q) => check_segments(path, &q.segments),
            Test::Function(_) => Err(typing_error(
                path,
                fname,
                format!("`{fname}()` takes a query, not a function result"),
                "pass a query like `@.items[*]`".into(),
            )),
        },
        _ => Err(typing_error(
            path,
            fname,
            format!("`{fname}()` takes a query, not a literal or a logical expression"),
            "pass a query like `@.items[*]`".into(),
        )),
    }
}

fn typing_error(path: &str, fname: &str, message: String, hint: String) -> PathError {
    let needle = format!("{fname}(");
    let (start, end) = path
        .find(&needle)
        .map_or((0, path.len()), |i| (i, i + fname.len()));
    PathError {
        message,
        start,
        end,
        hint: Some(hint),
        label: "not allowed here by RFC 9535".into(),
        typing: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(path: &str) -> PathError {
        match check(path) {
            Ok(_) => PathError {
                message: "no error".into(),
                start: 0,
                end: 0,
                hint: None,
                label: String::new(),
                typing: false,
            },
            Err(e) => e,
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_rfc_9535_parser() {
        let parts = [
            ".a",
            ".b1",
            "._x",
            ".Z_9",
            ".*",
            "[0]",
            "[7]",
            "[12]",
            "[*]",
            "[01]",
            "[00]",
            "[-1]",
            "[-0]",
            "..a",
            "..*",
            "['a']",
            "[\"a\"]",
            "[ 0]",
            "[0 ]",
            "[0,1]",
            "[0:1]",
            "[?@.a]",
            ".",
            "[",
            "]",
            "*",
            ".1",
            ".é",
            "é",
            ".aé",
            "[999999999999999]",
            "[1000000000000000]",
            "[9007199254740991]",
            "[9007199254740992]",
            " ",
            ".true",
            ".a b",
            "$",
            "@",
            ".a-b",
            "[*",
            "[1",
            ".\t",
        ];
        let mut paths = vec!["$".to_string(), String::new(), "a".into(), "$$".into()];
        for a in parts {
            paths.push(format!("${a}"));
            for b in parts {
                paths.push(format!("${a}{b}"));
                for c in parts {
                    paths.push(format!("${a}{b}{c}"));
                }
            }
        }
        let mut fast = 0;
        for p in &paths {
            if let Some(c) = simple(p) {
                fast += 1;
                assert_eq!(full_check(p), Ok(c), "{p}");
            }
        }
        // The common shapes take the fast path.
        assert!(fast > 1_000, "{fast}");
        for p in [
            "$",
            "$.data[0].name",
            "$.items[*].id",
            "$.a.*",
            "$[3]",
            "$._x1[10].y",
        ] {
            assert!(simple(p).is_some(), "{p}");
        }
    }

    #[test]
    fn singular_paths_are_recognised() {
        for p in ["$", "$.a", "$.a[0].b", "$['a'][1]"] {
            assert!(check(p).is_ok_and(|c| c.singular), "{p}");
        }
        for (p, seg) in [
            ("$.a[*].b", "[*]"),
            ("$..a", "..a"),
            ("$.a[?@.x == 1]", "[?@.x == 1]"),
            ("$.a[0:2]", "[0:2]"),
            ("$.a[0,1]", "[0,1]"),
        ] {
            let c = check(p).ok();
            let (s, e) = c.as_ref().and_then(|c| c.first_plural).unwrap_or((0, 0));
            assert!(!c.is_some_and(|c| c.singular), "{p}");
            assert_eq!(&p[s..e], seg, "{p}");
        }
    }

    #[test]
    fn syntax_errors_point_inside_the_path() {
        let e = err("$.a[?@.x = 1]");
        assert!(!e.typing);
        assert!(e.start > 2, "{e:?}");
        // At the end of the path: the last character, not what follows it.
        let e = err("$.a.");
        assert_eq!((e.start, e.end), (3, 4), "{e:?}");
        assert!(e.message.contains("member name"), "{e:?}");
        // A single `=` says `==`.
        let e = err("$.a[?@.x = 1]");
        assert!(e.message.contains("`==`"), "{e:?}");
        assert_eq!((e.start, e.end), (9, 10), "{e:?}");
        // A bare name in brackets: the whole word, and the quoted form in the hint.
        let e = err("$.a[one]");
        assert_eq!((e.start, e.end), (4, 7), "{e:?}");
        assert!(e.hint.is_some_and(|h| h.contains("['one']")));
        // No grammar rule names ever reach the message.
        for p in [
            "$.a[?@.x == ]",
            "$.a[?@.x && ]",
            "$.a[01]",
            "$.a[?(@.x = 1)]",
            "$.a..",
        ] {
            let e = err(p);
            assert!(!e.message.contains('_'), "{p}: {e:?}");
            assert!(!e.message.contains("ALPHA"), "{p}: {e:?}");
        }
    }

    #[test]
    fn no_input_panics_and_every_error_lies_inside_the_path() {
        let seeds = [
            "$.a[?length(@.b, @.c) > 1]",
            "$.é[?contains(@.ü, 'x')]",
            "$.data[0].tickets[?@.status == 'open' && count(@.x[*]) > 1]",
            "$..a[?match(@.b, 'x') == true]",
            "$['a', 'b'][1:3:0]",
            "$.a[?(@.b = 'c')]",
        ];
        let inserts = ["(", ")", ",", "é", "'", "[", "]", "=", "?", "@", ".", "ü("];
        for seed in seeds {
            let chars: Vec<char> = seed.chars().collect();
            for cut in 0..=chars.len() {
                for ins in inserts {
                    let mut p: String = chars[..cut].iter().collect();
                    p.push_str(ins);
                    p.extend(chars[cut..].iter());
                    for q in [p.clone(), chars[..cut].iter().collect()] {
                        if let Err(e) = check(&q) {
                            assert!(e.start <= e.end && e.end <= q.len(), "{q}: {e:?}");
                            assert!(q.is_char_boundary(e.start) && q.is_char_boundary(e.end));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn function_misuse_points_at_the_function() {
        let p = "$.a[?contains(@.b, 'x')]";
        let e = err(p);
        assert!(e.typing, "{e:?}");
        assert_eq!(&p[e.start..e.end], "contains");
        assert!(e.hint.is_some_and(|h| h.contains("search(")));
        let p = "$.a[?lenght(@.b) > 1]";
        let e = err(p);
        assert!(e.hint.is_some_and(|h| h.contains("length()")), "{p}");
        let p = "$.a[?count(5) > 1]";
        let e = err(p);
        assert!(e.typing, "{e:?}");
        assert_eq!(&p[e.start..e.end], "count");
        let p = "$.a[?length(@.b, @.c) > 1]";
        let e = err(p);
        assert!(e.typing, "{e:?}");
        assert_eq!(&p[e.start..e.end], ",");
        assert!(e.message.contains("one argument"), "{e:?}");
        // Extensions of jsonpath-rust are not RFC 9535.
        assert!(err("$.a[?in(@.b, 'x')]").typing);
    }

    #[test]
    fn function_typing_follows_rfc_9535() {
        assert!(err("$.a[?count(@.b)]").typing);
        assert!(err("$.a[?length(@.*) > 1]").typing);
        assert!(err("$.a[?match(@.b, 'x') == true]").typing);
        assert!(err("$.a[?foo(@.b)]").typing);
        assert!(check("$.a[?count(@.b[*]) > 1]").is_ok());
        assert!(check("$.a[?match(@.b, 'x.*')]").is_ok());
        assert!(check("$.a[?length(@.b) >= 2]").is_ok());
    }
}
