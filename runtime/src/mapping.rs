//! Mapping a response body to outputs.
//!
//! Per output, with its JSONPath parsed at start-up:
//! - `path`: a list-typed output with a non-singular path collects every selected node (nothing
//!   selected is an empty list); otherwise the one selected node, null when nothing is
//!   selected, and a failure when several are (use `first(...)`);
//! - `exists`: whether anything is selected; `count`: how many nodes are;
//! - `first`: the first selected node, null when none is.
//!
//! A null result takes the `?? default` if there is one. Every value is then checked against
//! the output's declared type, so a required output that matches nothing, or a value of the
//! wrong type, fails the mapping (reason `mapping`).

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use jsonpath_rust::query::js_path_process;
use mca_compiler::ir::MappingKind;
use serde_json::{Map, Value};

use crate::prepare::PreparedOutput;

/// How a parsed JSONPath is evaluated. Its leading name, index and wildcard selectors walk the
/// body directly (no allocation for a singular path); from the first other segment on
/// (filters, slices, unions, descendants) jsonpath-rust evaluates the rest on every node
/// reached, which selects the same nodes in the same order (RFC 9535 applies each segment to
/// each node of the list in turn). A rest that reads the root (`$` inside a filter) cannot be
/// evaluated from an inner node, and jsonpath-rust orders a union after several nodes its own
/// way, so such paths are evaluated whole by jsonpath-rust.
pub(crate) struct Plan {
    steps: Vec<Step>,
    /// Every step selects at most one node.
    singular: bool,
    rest: Option<JpQuery>,
}

enum Step {
    Name(String),
    Index(i64),
    Wildcard,
}

impl Plan {
    pub(crate) fn new(query: &JpQuery) -> Plan {
        let mut steps = Vec::new();
        for (i, segment) in query.segments.iter().enumerate() {
            let step = match segment {
                Segment::Selector(Selector::Name(n)) => Step::Name(n.clone()),
                Segment::Selector(Selector::Index(k)) => Step::Index(*k),
                Segment::Selector(Selector::Wildcard) => Step::Wildcard,
                _ => {
                    let rest = JpQuery::new(query.segments[i..].to_vec());
                    // jsonpath-rust applies a union (`['a','b']`) selector by selector to the
                    // whole node list, not node by node: keep its order by not splitting after
                    // a wildcard.
                    let union = |s: &Segment| match s {
                        Segment::Selectors(_) => true,
                        Segment::Descendant(inner) => matches!(**inner, Segment::Selectors(_)),
                        Segment::Selector(_) => false,
                    };
                    let several = steps.iter().any(|s| matches!(s, Step::Wildcard));
                    // A rest that may read the root, or a union after several nodes: evaluate
                    // the whole path.
                    if rest.to_string()[1..].contains('$')
                        || (several && rest.segments.iter().any(union))
                    {
                        return Plan {
                            steps: Vec::new(),
                            singular: true,
                            rest: Some(query.clone()),
                        };
                    }
                    return Plan::with(steps, Some(rest));
                }
            };
            steps.push(step);
        }
        Plan::with(steps, None)
    }

    fn with(steps: Vec<Step>, rest: Option<JpQuery>) -> Plan {
        let singular = !steps.iter().any(|s| matches!(s, Step::Wildcard));
        Plan {
            steps,
            singular,
            rest,
        }
    }

    /// The nodes the path selects, in order.
    pub(crate) fn select<'a>(&self, body: &'a Value) -> Result<Vec<&'a Value>, String> {
        let nodes: Vec<&Value> = if self.singular {
            let mut node = Some(body);
            for step in &self.steps {
                node = node.and_then(|n| child(n, step));
            }
            node.into_iter().collect()
        } else {
            let mut nodes = vec![body];
            for step in &self.steps {
                let mut next = Vec::with_capacity(nodes.len());
                for n in nodes {
                    match (step, n) {
                        (Step::Wildcard, Value::Array(items)) => next.extend(items.iter()),
                        (Step::Wildcard, Value::Object(members)) => next.extend(members.values()),
                        (Step::Wildcard, _) => {}
                        (step, n) => next.extend(child(n, step)),
                    }
                }
                nodes = next;
            }
            nodes
        };
        let Some(rest) = &self.rest else {
            return Ok(nodes);
        };
        let mut selected = Vec::new();
        for n in nodes {
            let found = js_path_process(rest, n).map_err(|e| e.to_string())?;
            selected.extend(found.into_iter().map(|q| q.val));
        }
        Ok(selected)
    }
}

/// The node a name or index selector selects from `node` (RFC 9535: negative indexes count
/// from the end; other types select nothing).
fn child<'a>(node: &'a Value, step: &Step) -> Option<&'a Value> {
    match (step, node) {
        (Step::Name(name), Value::Object(members)) => members.get(name),
        (Step::Index(i), Value::Array(items)) => {
            let i = if *i < 0 {
                items.len().checked_sub(i.unsigned_abs() as usize)?
            } else {
                *i as usize
            };
            items.get(i)
        }
        _ => None,
    }
}

pub(crate) fn map_outputs(
    outputs: &[PreparedOutput],
    body: &Value,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for o in outputs {
        let nodes = o
            .plan
            .select(body)
            .map_err(|e| format!("output `{}`: {e}", o.name))?;
        let value = match o.kind {
            MappingKind::Exists => Value::Bool(!nodes.is_empty()),
            MappingKind::Count => Value::from(nodes.len()),
            MappingKind::First => nodes.first().map(|n| (*n).clone()).unwrap_or(Value::Null),
            MappingKind::Path if o.ty.is_list() && !o.singular => {
                Value::Array(nodes.iter().map(|n| (*n).clone()).collect())
            }
            MappingKind::Path => match nodes.as_slice() {
                [] => Value::Null,
                [one] => (*one).clone(),
                many => {
                    return Err(format!(
                        "output `{}`: the path selects {} values where one is expected",
                        o.name,
                        many.len()
                    ))
                }
            },
        };
        let value = match (value, &o.default) {
            (Value::Null, Some(d)) => d.clone(),
            (v, _) => v,
        };
        if let Err(m) = o.ty.check(&value) {
            return Err(if value.is_null() {
                format!("required output `{}` matched nothing", o.name)
            } else {
                format!("output `{}`: {m}", o.name)
            });
        }
        out.insert(o.name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonpath_rust::parser::parse_json_path;
    use mca_compiler::ir::Ty;
    use serde_json::json;

    fn out(name: &str, ty: Ty, kind: MappingKind, path: &str, singular: bool) -> PreparedOutput {
        PreparedOutput {
            name: name.into(),
            ty,
            kind,
            plan: Plan::new(&parse_json_path(path).unwrap()),
            singular,
            default: None,
        }
    }

    /// The plan selects exactly what jsonpath-rust selects on the whole path.
    #[test]
    fn plans_select_what_the_whole_path_selects() {
        let body = json!({
            "data": [
                {"id": "a", "n": 1, "tags": ["x", "y"], "o": {"k": 1, "j": 2},
                 "tickets": [{"status": "open"}, {"status": "closed"}, {"status": "open"}]},
                {"id": "b", "n": 5, "tags": [], "o": {}, "tickets": []},
                {"id": "c", "n": 3, "tags": ["z"], "tickets": [{"status": "open"}]}
            ],
            "limit": 3, "m": {"a": {"v": 1}, "b": {"v": 2}}, "s": "text"
        });
        for path in [
            "$",
            "$.data",
            "$.data[0].id",
            "$.data[-1].id",
            "$.data[-3].id",
            "$.data[-4].id",
            "$.data[3].id",
            "$.data[0].tags[1]",
            "$.s.x",
            "$.s[0]",
            "$.data.id",
            "$['data'][1]['n']",
            "$.data[*].id",
            "$.data[*].tags[*]",
            "$.m.*.v",
            "$.*",
            "$.data[*].o.*",
            "$.s.*",
            "$.data[?@.n > 2].id",
            "$.data[0].tickets[?@.status == 'open']",
            "$.data[*].tickets[?@.status == 'open']",
            "$.data[?@.n == $.limit].id",
            "$.data[0:2].id",
            "$.data[*].tags[0:1]",
            "$..id",
            "$.data[0,2].id",
            "$.data[?length(@.tags) > 0].id",
            "$.data[*]['id','n']",
            "$.m[?@.v == 2].v",
            "$.data[0]['id','n']",
            "$.data[*]..['id','n']",
            "$.data[*]..id",
            "$.data[1:][?@.n > 1].id",
        ] {
            let query = parse_json_path(path).unwrap();
            let expected: Vec<&Value> = js_path_process(&query, &body)
                .unwrap()
                .into_iter()
                .map(|q| q.val)
                .collect();
            assert_eq!(Plan::new(&query).select(&body).unwrap(), expected, "{path}");
        }
    }

    fn string() -> Ty {
        Ty::String { format: None }
    }

    fn optional(t: Ty) -> Ty {
        Ty::Optional { inner: Box::new(t) }
    }

    fn customer_outputs() -> Vec<PreparedOutput> {
        vec![
            out("found", Ty::Bool, MappingKind::Exists, "$.data[0]", true),
            out(
                "customer_id",
                optional(string()),
                MappingKind::Path,
                "$.data[0].id",
                true,
            ),
            out(
                "name",
                optional(string()),
                MappingKind::Path,
                "$.data[0].name",
                true,
            ),
            out(
                "open_tickets",
                Ty::Int,
                MappingKind::Count,
                "$.data[0].tickets[?@.status == 'open']",
                false,
            ),
        ]
    }

    #[test]
    fn maps_the_known_caller() {
        let body = json!({"data": [{"id": "c-1042", "name": "Max",
            "tickets": [{"status": "open"}, {"status": "closed"}]}], "total": 1});
        let m = map_outputs(&customer_outputs(), &body).unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"found": true, "customer_id": "c-1042", "name": "Max", "open_tickets": 1})
        );
    }

    #[test]
    fn optional_outputs_that_match_nothing_are_null() {
        let m = map_outputs(&customer_outputs(), &json!({"data": [], "total": 0})).unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"found": false, "customer_id": null, "name": null, "open_tickets": 0})
        );
    }

    #[test]
    fn lists_collect_and_required_outputs_must_match() {
        let outs = vec![
            out(
                "status",
                string(),
                MappingKind::Path,
                "$.order.status",
                true,
            ),
            out(
                "items",
                Ty::List {
                    item: Box::new(string()),
                },
                MappingKind::Path,
                "$.order.items[*].name",
                false,
            ),
        ];
        let body = json!({"order": {"status": "shipped", "items": [{"name": "A"}, {"name": "B"}]}});
        let m = map_outputs(&outs, &body).unwrap();
        assert_eq!(m["items"], json!(["A", "B"]));
        let err = map_outputs(&outs, &json!({"order": {}})).unwrap_err();
        assert!(err.contains("status"), "{err}");
        let err = map_outputs(&outs, &json!({"order": {"status": 7}})).unwrap_err();
        assert!(err.contains("expected a string"), "{err}");
    }

    #[test]
    fn defaults_fill_nulls() {
        let mut o = out("n", Ty::Int, MappingKind::Path, "$.n", true);
        o.default = Some(json!(0));
        assert_eq!(
            map_outputs(&[o], &json!({"n": null})).unwrap()["n"],
            json!(0)
        );
    }
}
