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

use jsonpath_rust::query::js_path_process;
use mca_compiler::ir::MappingKind;
use serde_json::{Map, Value};

use crate::prepare::PreparedOutput;

pub(crate) fn map_outputs(
    outputs: &[PreparedOutput],
    body: &Value,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for o in outputs {
        let nodes =
            js_path_process(&o.query, body).map_err(|e| format!("output `{}`: {e}", o.name))?;
        let value = match o.kind {
            MappingKind::Exists => Value::Bool(!nodes.is_empty()),
            MappingKind::Count => Value::from(nodes.len()),
            MappingKind::First => nodes.first().map(|n| n.val.clone()).unwrap_or(Value::Null),
            MappingKind::Path if o.ty.is_list() && !o.singular => {
                Value::Array(nodes.iter().map(|n| n.val.clone()).collect())
            }
            MappingKind::Path => match nodes.as_slice() {
                [] => Value::Null,
                [one] => one.val.clone(),
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
            query: parse_json_path(path).unwrap(),
            singular,
            default: None,
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
