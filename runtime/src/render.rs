//! Rendering templates, each with the encoding of the place it lands in.
//!
//! - URL origin (`{env.BASE}` before the path): inserted verbatim, trailing `/` trimmed.
//! - URL path segment: percent-encoded so that the value stays one segment: `/`, `?`, `#`, `%`
//!   and everything outside RFC 3986 `pchar` is encoded (`100/234?x=1` becomes
//!   `100%2F234%3Fx=1`). A segment that would be empty, `.` or `..` is refused.
//! - URL query (in the URL template, and `query` parameters): everything except RFC 3986
//!   unreserved characters is encoded (`+4930` becomes `%2B4930`).
//! - Header values: a value containing CR, LF or another control character is refused.
//! - JSON bodies: built as JSON values; a single reference keeps its JSON type.
//!
//! Values as text: strings as they are, numbers and booleans in JSON notation, lists joined
//! with `, ` (`,` in URLs), null as nothing. A query parameter, header or form field whose value
//! is null is left out; a list in a query parameter repeats the parameter.

use std::borrow::Cow;
use std::collections::HashMap;

use mca_compiler::ir::{
    CmpOp, Expr, JsonTemplate, Namespace, Part, Ref, Template, Term, UrlContext, UrlPart,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use crate::response::{CallContext, Outputs};

/// RFC 3986 unreserved characters stay; everything else is encoded.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Everything outside RFC 3986 `pchar` (unreserved, sub-delims, `:`, `@`), plus `%`.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Everything a reference can read during one execution.
pub(crate) struct Scope<'a> {
    pub inputs: &'a Map<String, Value>,
    pub call: &'a CallContext,
    pub env: &'a HashMap<String, String>,
    pub secrets: &'a HashMap<String, String>,
    pub outputs: Option<&'a Outputs>,
    /// The values of the live steps that have run (`step.NAME.VALUE`).
    pub steps: Option<&'a StepValues>,
}

/// The values of each step that has run, by step name.
pub(crate) type StepValues = HashMap<String, Map<String, Value>>;

/// The secrets of a scope that must not read any.
static NO_SECRETS: std::sync::LazyLock<HashMap<String, String>> =
    std::sync::LazyLock::new(HashMap::new);

impl<'a> Scope<'a> {
    /// A scope without secrets, for what is spoken, answered or decided (`say`, outputs,
    /// conditions): the compiler keeps secrets out of those, and this keeps them out at run time.
    pub(crate) fn public(
        inputs: &'a Map<String, Value>,
        call: &'a CallContext,
        env: &'a HashMap<String, String>,
        outputs: Option<&'a Outputs>,
        steps: Option<&'a StepValues>,
    ) -> Scope<'a> {
        Scope {
            inputs,
            call,
            env,
            secrets: &NO_SECRETS,
            outputs,
            steps,
        }
    }
}

impl Scope<'_> {
    fn step_value(&self, name: &str) -> Option<&Value> {
        let (step, field) = name.split_once('.')?;
        self.steps?.get(step)?.get(field)
    }

    /// Evaluates an expression of the condition language (typed by the compiler): a comparison
    /// with null is false except `== null` / `!= null`; `and`, `or`, `not` read null as false.
    pub(crate) fn eval(&self, t: &Term) -> Value {
        match t {
            Term::Ref { r#ref } => self.value(r#ref),
            Term::Literal { value } => value.clone(),
            Term::Not { term } => Value::Bool(!truthy(&self.eval(term))),
            Term::And { terms } => Value::Bool(terms.iter().all(|t| truthy(&self.eval(t)))),
            Term::Or { terms } => Value::Bool(terms.iter().any(|t| truthy(&self.eval(t)))),
            Term::Compare { op, left, right } => {
                let (l, r) = (self.eval(left), self.eval(right));
                Value::Bool(compare(*op, &l, &r))
            }
        }
    }

    /// Whether a condition holds.
    pub(crate) fn holds(&self, t: &Term) -> bool {
        truthy(&self.eval(t))
    }
    pub(crate) fn value(&self, r: &Ref) -> Value {
        let text = |s: Option<&String>| s.map(|s| Value::String(s.clone())).unwrap_or(Value::Null);
        match r.ns {
            Namespace::Input => self.inputs.get(&r.name).cloned().unwrap_or(Value::Null),
            Namespace::Env => text(self.env.get(&r.name)),
            Namespace::Secret => text(self.secrets.get(&r.name)),
            Namespace::Call => match r.name.as_str() {
                "id" => text(self.call.id.as_ref()),
                "from" => text(self.call.from.as_ref()),
                _ => Value::Null,
            },
            Namespace::Output => self
                .outputs
                .and_then(|o| o.get(&r.name))
                .cloned()
                .unwrap_or(Value::Null),
            Namespace::Step => self.step_value(&r.name).cloned().unwrap_or(Value::Null),
        }
    }

    /// A reference's text (as [`text`] makes it, lists joined with `list_sep`), borrowed when
    /// the value is a string; `None` when it is null.
    fn ref_text(&self, r: &Ref, list_sep: &str) -> Option<Cow<'_, str>> {
        let value = match r.ns {
            Namespace::Input => self.inputs.get(&r.name),
            Namespace::Output => self.outputs.and_then(|o| o.get(&r.name)),
            Namespace::Step => self.step_value(&r.name),
            Namespace::Env => return self.env.get(&r.name).map(|s| Cow::Borrowed(s.as_str())),
            Namespace::Secret => {
                return self.secrets.get(&r.name).map(|s| Cow::Borrowed(s.as_str()))
            }
            Namespace::Call => {
                let s = match r.name.as_str() {
                    "id" => self.call.id.as_deref(),
                    "from" => self.call.from.as_deref(),
                    _ => None,
                };
                return s.map(Cow::Borrowed);
            }
        };
        match value? {
            Value::String(s) => Some(Cow::Borrowed(s)),
            v => text(v, list_sep).map(Cow::Owned),
        }
    }

    /// Appends a reference's text (as [`text`] makes it, lists joined with `list_sep`) without
    /// copying the value first; `false` (and nothing appended) when it is null.
    fn push_ref(&self, out: &mut String, r: &Ref, list_sep: &str) -> bool {
        match self.ref_text(r, list_sep) {
            Some(s) => {
                out.push_str(&s);
                true
            }
            None => false,
        }
    }

    /// Renders a template; `None` if any reference is null.
    pub(crate) fn template_strict(&self, t: &Template) -> Option<String> {
        let mut out = String::with_capacity(text_len(t) + 32);
        for part in &t.parts {
            match part {
                Part::Text(s) => out.push_str(s),
                Part::Ref(r) => {
                    if !self.push_ref(&mut out, r, ", ") {
                        return None;
                    }
                }
            }
        }
        Some(out)
    }

    /// Renders a template; null references render as nothing.
    pub(crate) fn template(&self, t: &Template) -> String {
        let mut out = String::with_capacity(text_len(t) + 32);
        for part in &t.parts {
            match part {
                Part::Text(s) => out.push_str(s),
                Part::Ref(r) => {
                    self.push_ref(&mut out, r, ", ");
                }
            }
        }
        out
    }

    /// The JSON value of an expression (templates become strings).
    pub(crate) fn expr(&self, e: &Expr) -> Value {
        match e {
            Expr::Literal(v) => v.clone(),
            Expr::Ref(r) => self.value(r),
            Expr::Template(t) => Value::String(self.template(t)),
        }
    }

    /// Like [`Scope::expr`], but `None` when any reference is null.
    pub(crate) fn expr_strict(&self, e: &Expr) -> Option<Value> {
        match e {
            Expr::Literal(v) => Some(v.clone()),
            Expr::Ref(r) => Some(self.value(r)).filter(|v| !v.is_null()),
            Expr::Template(t) => self.template_strict(t).map(Value::String),
        }
    }

    pub(crate) fn json(&self, t: &JsonTemplate) -> Value {
        match t {
            JsonTemplate::Literal(v) => v.clone(),
            JsonTemplate::Ref(r) => self.value(r),
            JsonTemplate::Template(t) => Value::String(self.template(t)),
            JsonTemplate::Array(items) => {
                Value::Array(items.iter().map(|i| self.json(i)).collect())
            }
            JsonTemplate::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), self.json(v)))
                    .collect(),
            ),
        }
    }
}

fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// `l op r` for values of like types (the compiler checked them); null only equals null.
fn compare(op: CmpOp, l: &Value, r: &Value) -> bool {
    use std::cmp::Ordering;
    let eq = match (l, r) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => l == r,
    };
    match op {
        CmpOp::Eq => return eq,
        CmpOp::Ne => return !eq,
        _ => {}
    }
    let ord = match (l, r) {
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match (op, ord) {
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::Le, Some(o)) => o != Ordering::Greater,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    }
}

/// Whether an expression reads a secret (its header is then marked sensitive).
pub(crate) fn reads_secret(e: &Expr) -> bool {
    e.refs().iter().any(|r| r.ns == Namespace::Secret)
}

/// The length of a template's literal text (what its rendering holds at least).
fn text_len(t: &Template) -> usize {
    t.parts
        .iter()
        .map(|p| match p {
            Part::Text(s) => s.len(),
            Part::Ref(_) => 0,
        })
        .sum()
}

/// A value as text; `None` for null.
pub(crate) fn text(v: &Value, list_sep: &str) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| text(i, list_sep))
                .collect::<Vec<_>>()
                .join(list_sep),
        ),
        Value::Object(_) => Some(v.to_string()),
    }
}

/// Why a value could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaceError(pub String);

/// Renders the URL template and appends the query parameters (`extra_query` are already
/// rendered, unencoded name/value pairs). Returns the URL text.
pub(crate) fn url(
    scope: &Scope<'_>,
    parts: &[UrlPart],
    extra_query: &[(String, String)],
) -> Result<String, PlaceError> {
    let mut out = String::with_capacity(128);
    // Byte ranges of `out` that came from path references, to check their segments.
    let mut path_refs: Vec<(usize, usize)> = Vec::new();
    for part in parts {
        match part {
            UrlPart::Text(t) => out.push_str(t),
            UrlPart::Ref { r#ref, at } => {
                let v = scope.ref_text(r#ref, ",").unwrap_or_default();
                match at {
                    UrlContext::Origin => out.push_str(v.trim_end_matches('/')),
                    UrlContext::Path => {
                        let start = out.len();
                        out.extend(utf8_percent_encode(&v, PATH_SEGMENT));
                        path_refs.push((start, out.len()));
                    }
                    UrlContext::Query => out.extend(utf8_percent_encode(&v, QUERY)),
                    UrlContext::Fragment => out.extend(utf8_percent_encode(&v, PATH_SEGMENT)),
                }
            }
        }
    }
    for &(start, end) in &path_refs {
        let seg_start = out[..start].rfind('/').map(|i| i + 1).unwrap_or(0);
        let seg_end = out[end..]
            .find(['/', '?', '#'])
            .map(|i| end + i)
            .unwrap_or(out.len());
        let segment = &out[seg_start..seg_end];
        let lowered = segment.to_ascii_lowercase().replace("%2e", ".");
        if segment.is_empty() {
            return Err(PlaceError(
                "a path segment of the URL would be empty".into(),
            ));
        }
        if lowered == "." || lowered == ".." {
            return Err(PlaceError(
                "a path segment of the URL would be `.` or `..`".into(),
            ));
        }
    }
    if !extra_query.is_empty() {
        let fragment = out.find('#').map(|i| out.split_off(i));
        let mut sep = if out.contains('?') {
            if out.ends_with('?') || out.ends_with('&') {
                ""
            } else {
                "&"
            }
        } else {
            "?"
        };
        for (name, value) in extra_query {
            out.push_str(sep);
            out.extend(utf8_percent_encode(name, QUERY));
            out.push('=');
            out.extend(utf8_percent_encode(value, QUERY));
            sep = "&";
        }
        if let Some(fragment) = fragment {
            out.push_str(&fragment);
        }
    }
    Ok(out)
}

/// Renders one query or form parameter: null leaves it out, a list repeats it.
pub(crate) fn param_values(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().filter_map(|i| text(i, ",")).collect(),
        other => text(other, ",").into_iter().collect(),
    }
}

/// Checks a rendered header value: no CR, LF or other control characters (tab is allowed).
pub(crate) fn header_value(s: &str) -> Result<http::HeaderValue, PlaceError> {
    if s.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(PlaceError(
            "a header value would contain a line break or control character".into(),
        ));
    }
    http::HeaderValue::from_str(s)
        .map_err(|_| PlaceError("a header value is not valid in HTTP".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mca_compiler::ir::Ref;
    use serde_json::json;

    fn with_scope<R>(inputs: Value, f: impl FnOnce(&Scope<'_>) -> R) -> R {
        let inputs = inputs.as_object().cloned().unwrap_or_default();
        let call = CallContext::default();
        let env = HashMap::from([("BASE".to_string(), "https://api.example.com/".to_string())]);
        let secrets = HashMap::new();
        let scope = Scope {
            inputs: &inputs,
            call: &call,
            env: &env,
            secrets: &secrets,
            outputs: None,
            steps: None,
        };
        f(&scope)
    }

    fn r(ns: Namespace, name: &str) -> Ref {
        Ref {
            ns,
            name: name.into(),
        }
    }

    fn order_url() -> Vec<UrlPart> {
        vec![
            UrlPart::Ref {
                r#ref: r(Namespace::Env, "BASE"),
                at: UrlContext::Origin,
            },
            UrlPart::Text("/api/orders/".into()),
            UrlPart::Ref {
                r#ref: r(Namespace::Input, "n"),
                at: UrlContext::Path,
            },
        ]
    }

    #[test]
    fn path_segment_is_encoded_and_never_splits() {
        let u = with_scope(json!({"n": "100/234?x=1"}), |s| url(s, &order_url(), &[]));
        assert_eq!(
            u.unwrap(),
            "https://api.example.com/api/orders/100%2F234%3Fx=1"
        );
    }

    #[test]
    fn dot_segments_and_empty_segments_are_refused() {
        for bad in ["..", ".", ""] {
            let u = with_scope(json!({ "n": bad }), |s| url(s, &order_url(), &[]));
            assert!(u.is_err(), "{bad:?} was placed: {u:?}");
        }
        let ok = with_scope(json!({"n": "a..b"}), |s| url(s, &order_url(), &[]));
        assert_eq!(ok.unwrap(), "https://api.example.com/api/orders/a..b");
        // An encoded dot stays literal text: its `%` is encoded.
        let ok = with_scope(json!({"n": "%2e%2E"}), |s| url(s, &order_url(), &[]));
        assert_eq!(ok.unwrap(), "https://api.example.com/api/orders/%252e%252E");
    }

    #[test]
    fn query_parameters_are_query_encoded() {
        let u = with_scope(json!({"n": "1"}), |s| {
            url(s, &order_url(), &[("phone".into(), "+49 30&x=1".into())])
        });
        assert_eq!(
            u.unwrap(),
            "https://api.example.com/api/orders/1?phone=%2B49%2030%26x%3D1"
        );
    }

    #[test]
    fn url_queries_go_before_the_fragment_and_values_of_every_type_render_as_text() {
        let input = |name: &str, at| UrlPart::Ref {
            r#ref: r(Namespace::Input, name),
            at,
        };
        let text = |t: &str| UrlPart::Text(t.into());
        let parts = vec![
            UrlPart::Ref {
                r#ref: r(Namespace::Env, "BASE"),
                at: UrlContext::Origin,
            },
            text("/s/"),
            input("n", UrlContext::Path),
            text("/"),
            input("list", UrlContext::Path),
            text("?x="),
            input("q", UrlContext::Query),
            text("&missing="),
            input("none", UrlContext::Query),
            text("#"),
            input("f", UrlContext::Fragment),
        ];
        let inputs = json!({"n": 12.5, "list": ["a b", 2, true], "q": "a&b", "f": "p q"});
        let extra = [
            ("a".to_string(), "1 2".to_string()),
            ("b c".to_string(), "&".to_string()),
        ];
        let u = with_scope(inputs.clone(), |s| url(s, &parts, &extra));
        assert_eq!(
            u.unwrap(),
            "https://api.example.com/s/12.5/a%20b,2,true?x=a%26b&missing=&a=1%202&b%20c=%26#p%20q"
        );
        let u = with_scope(inputs, |s| url(s, &parts[..8], &extra));
        assert_eq!(
            u.unwrap(),
            "https://api.example.com/s/12.5/a%20b,2,true?x=a%26b&missing=&a=1%202&b%20c=%26"
        );
    }

    #[test]
    fn header_values_with_line_breaks_are_refused() {
        assert!(header_value("ok value").is_ok());
        assert!(header_value("a\r\nX-Evil: 1").is_err());
        assert!(header_value("a\nb").is_err());
    }

    #[test]
    fn strict_templates_give_nothing_when_a_value_is_null() {
        let t = Template {
            parts: vec![
                Part::Text("Found ".into()),
                Part::Ref(r(Namespace::Input, "name")),
                Part::Text(".".into()),
            ],
        };
        assert_eq!(
            with_scope(json!({"name": null}), |s| s.template_strict(&t)),
            None
        );
        assert_eq!(
            with_scope(json!({"name": "Max"}), |s| s.template_strict(&t)),
            Some("Found Max.".into())
        );
        assert_eq!(
            with_scope(json!({"name": ["a", "b"]}), |s| s.template(&t)),
            "Found a, b."
        );
    }
}
