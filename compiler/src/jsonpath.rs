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
    /// A well-formed path that breaks the function typing rules (E0303) rather than a syntax
    /// error (E0301).
    pub typing: bool,
}

pub struct Checked {
    pub singular: bool,
    /// Byte range in the path of the first segment that can select several nodes.
    pub first_plural: Option<(usize, usize)>,
}

pub fn check(path: &str) -> Result<Checked, PathError> {
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

fn parse_error(path: &str, e: JsonPathError) -> PathError {
    match e {
        JsonPathError::PestError(pe) => {
            use pest::error::{ErrorVariant, InputLocation};
            let pos = match pe.location {
                InputLocation::Pos(p) => p,
                InputLocation::Span((s, _)) => s,
            };
            let end = next_char_end(path, pos);
            let found = path.get(pos..end).unwrap_or("");
            let mut expected: Vec<&str> = Vec::new();
            if let ErrorVariant::ParsingError { positives, .. } = &pe.variant {
                for r in positives {
                    let words = describe_path_rule(&format!("{r:?}"));
                    if !expected.contains(&words) {
                        expected.push(words);
                    }
                }
            }
            let what = if expected.is_empty() {
                "a valid JSONPath".to_string()
            } else {
                expected.join(" or ")
            };
            let message = if found.is_empty() {
                format!("invalid JSONPath: expected {what} at the end of the path")
            } else {
                format!("invalid JSONPath: expected {what}, found `{found}`")
            };
            PathError {
                message,
                start: pos,
                end: end.max(pos),
                hint: Some(path_hint(path)),
                typing: false,
            }
        }
        JsonPathError::MaxNestingDepthExceeded(n) => PathError {
            message: format!("JSONPath nests deeper than {n} levels"),
            start: 0,
            end: path.len(),
            hint: None,
            typing: false,
        },
        other => {
            let text = other.to_string();
            // "Function match(...) is not comparable": point at the function.
            let at = ["match(", "search("]
                .iter()
                .filter(|_| text.contains("not comparable"))
                .find_map(|f| path.find(f).map(|i| (i, i + f.len() - 1)));
            match at {
                Some((s, e)) => PathError {
                    message: format!(
                        "`{}()` returns a logical result (RFC 9535 LogicalType) and cannot be compared",
                        &path[s..e]
                    ),
                    start: s,
                    end: e,
                    hint: Some(format!(
                        "use it as a test on its own, for example `[?{}(@.name, 'M.*')]`",
                        &path[s..e]
                    )),
                    typing: true,
                },
                None => PathError {
                    message: format!("invalid JSONPath: {text}"),
                    start: 0,
                    end: path.len(),
                    hint: Some(path_hint(path)),
                    typing: false,
                },
            }
        }
    }
}

fn path_hint(path: &str) -> String {
    if path.contains("?(") {
        "RFC 9535 filters are written `[?@.status == 'open']`".into()
    } else {
        "paths look like `$.data[0].name`, `$.items[*].id` or `$.items[?@.status == 'open']`".into()
    }
}

fn next_char_end(s: &str, pos: usize) -> usize {
    s.get(pos..)
        .and_then(|r| r.chars().next())
        .map_or(pos, |c| pos + c.len_utf8())
}

/// Words for the rules of jsonpath-rust's RFC 9535 grammar.
fn describe_path_rule(rule: &str) -> &'static str {
    match rule {
        "EOI" => "the end of the path",
        "segments" | "segment" | "child_segment" | "descendant_segment" => {
            "a segment like `.name` or `[0]`"
        }
        "selector" | "name_selector" | "index_selector" | "slice_selector"
        | "wildcard_selector" => {
            "a selector (a quoted name, an index, `*`, a slice or a `?` filter)"
        }
        "member_name_shorthand" => "a member name",
        "filter_selector" | "logical_expr" | "logical_expr_and" | "atom_expr" => {
            "a filter expression"
        }
        "comparable" | "literal" | "singular_query" => "a value or a singular query",
        "comp_op" => "a comparison operator",
        "string" => "a quoted string",
        "int" | "number" => "a number",
        "function_expr" => "a function",
        _ => "valid JSONPath syntax",
    }
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
                typing: false,
            },
            Err(e) => e,
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
        let e = err("$.a.");
        assert_eq!(e.start, 4, "{e:?}");
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
