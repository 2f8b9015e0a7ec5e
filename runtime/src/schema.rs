//! JSON Schema (draft 2020-12) of action inputs and outputs, for `GET /actions` (and for
//! platforms that register actions as tools/functions).

use mca_compiler::ir::{Action, Format, Ty};
use serde_json::{json, Map, Value};

/// The schema of one value type.
pub fn type_schema(ty: &Ty) -> Value {
    match ty {
        Ty::String { format } => {
            let mut s = Map::new();
            s.insert("type".into(), json!("string"));
            if let Some(f) = format {
                if let Some(name) = f.json_schema_format() {
                    s.insert("format".into(), json!(name));
                }
                if *f == Format::Phone {
                    s.insert("pattern".into(), json!("^\\+[1-9][0-9]{6,14}$"));
                }
            }
            Value::Object(s)
        }
        Ty::Int => json!({"type": "integer"}),
        Ty::Number => json!({"type": "number"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Enum { values } => json!({"type": "string", "enum": values}),
        Ty::List { item } => json!({"type": "array", "items": type_schema(item)}),
        Ty::Optional { inner } => json!({"anyOf": [type_schema(inner), {"type": "null"}]}),
    }
}

/// The object schema of an action's inputs: described, with defaults, required ones listed.
pub fn inputs_schema(action: &Action) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for input in &action.inputs {
        let mut s = type_schema(&input.ty);
        if let Value::Object(m) = &mut s {
            if let Some(d) = &input.description {
                m.insert("description".into(), json!(d));
            }
            if let Some(d) = &input.default {
                m.insert("default".into(), d.clone());
            }
        }
        if input.required() {
            required.push(json!(input.name));
        }
        properties.insert(input.name.clone(), s);
    }
    json!({"type": "object", "properties": properties, "required": required})
}

/// The object schema of an action's `output`: every output is present (null when optional and
/// absent); the non-optional ones are never null.
pub fn outputs_schema(action: &Action) -> Value {
    let mut properties = Map::new();
    for o in &action.outputs {
        properties.insert(o.name.clone(), type_schema(&o.ty));
    }
    let all: Vec<Value> = action.outputs.iter().map(|o| json!(o.name)).collect();
    json!({"type": "object", "properties": properties, "required": all})
}

/// One entry of `GET /actions`: name, description, input and output schemas, and what a
/// platform needs to drive the call (its timeout, and the `messages` to speak while waiting,
/// when the action has any).
pub fn describe(action: &Action) -> Value {
    let mut entry = json!({
        "name": action.name,
        "description": action.description,
        "method": action.request.method.as_str(),
        "inputs": inputs_schema(action),
        "outputs": outputs_schema(action),
        "cached": action.cache.is_some(),
        "timeout_ms": action.request.timeout_ms,
    });
    if !action.messages.is_empty() {
        if let (Value::Object(m), Ok(messages)) =
            (&mut entry, serde_json::to_value(&action.messages))
        {
            m.insert("messages".into(), messages);
        }
    }
    entry
}

/// The body of `GET /actions`.
pub fn describe_all<'a>(actions: impl Iterator<Item = &'a Action>) -> Value {
    let list: Vec<Value> = actions.map(describe).collect();
    json!({ "actions": list })
}
