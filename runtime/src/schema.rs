//! JSON Schema (draft 2020-12) of action inputs and outputs, for `GET /actions` and MCP, and the
//! reduced dialects that function-calling platforms accept ([`tool_parameters`], used by
//! [`crate::platforms`]).

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
        "method": action.live_requests().next().map_or("POST", |r| r.method.as_str()),
        "inputs": inputs_schema(action),
        "outputs": outputs_schema(action),
        "cached": action.cache.is_some(),
        "timeout_ms": action.timeout_ms,
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

/// How far a tool-calling platform understands JSON Schema. [`Dialect::Full`] is the schema of
/// [`inputs_schema`]; the others are the conservative subsets that function-calling platforms
/// accept (see [`tool_parameters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// JSON Schema 2020-12 as [`inputs_schema`] writes it (MCP).
    Full,
    /// `type`, `description`, `enum`, `items`, `pattern` and the `format`s every function-calling
    /// API knows (`date`, `date-time`, `email`, `uuid`); optional types are simply not required;
    /// defaults and other formats are said in the description (Vapi, Retell, OpenAI Realtime).
    Tool,
    /// [`Dialect::Tool`], and OpenAI's strict mode: every property required,
    /// `additionalProperties: false`, inputs that may be omitted accept `null` (which the
    /// runtime treats as omitted: the default applies).
    Strict,
    /// Only `type`, `description`, `enum` and `items`, with a description on every property
    /// (ElevenLabs server tools).
    Minimal,
}

/// Formats that every function-calling platform accepts in its parameter schemas.
const PORTABLE_FORMATS: [&str; 4] = ["date", "date-time", "email", "uuid"];

/// The parameter schema of an action for a tool-calling platform, in one of the reduced
/// dialects (for [`Dialect::Full`] it is [`inputs_schema`]).
pub fn tool_parameters(action: &Action, dialect: Dialect) -> Value {
    if dialect == Dialect::Full {
        return inputs_schema(action);
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    for input in &action.inputs {
        let mut notes: Vec<String> = Vec::new();
        if let Some(d) = &input.description {
            notes.push(d.trim_end_matches('.').to_string());
        }
        let mut s = reduced_type(&input.ty, dialect, &mut notes);
        let may_omit = !input.required();
        if let Some(d) = &input.default {
            notes.push(format!("Default: {d}"));
        } else if may_omit && dialect == Dialect::Strict {
            notes.push("null when not known".to_string());
        }
        if notes.is_empty() {
            notes.push(input.name.replace('_', " "));
        }
        if dialect == Dialect::Strict && may_omit {
            make_nullable(&mut s);
        }
        if let Value::Object(m) = &mut s {
            m.insert("description".into(), json!(sentence(&notes)));
        }
        if input.required() || dialect == Dialect::Strict {
            required.push(json!(input.name));
        }
        properties.insert(input.name.clone(), s);
    }
    let mut schema = json!({"type": "object", "properties": properties, "required": required});
    if dialect == Dialect::Strict {
        if let Value::Object(m) = &mut schema {
            m.insert("additionalProperties".into(), json!(false));
        }
    }
    schema
}

/// Joins notes into one sentence-like description: "A. B. C."
fn sentence(notes: &[String]) -> String {
    let mut out = notes.join(". ");
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// A type in a reduced dialect; what the dialect cannot say goes into `notes`.
fn reduced_type(ty: &Ty, dialect: Dialect, notes: &mut Vec<String>) -> Value {
    match ty {
        Ty::String { format } => {
            let mut s = Map::new();
            s.insert("type".into(), json!("string"));
            if let Some(f) = format {
                let keyword = f
                    .json_schema_format()
                    .filter(|k| PORTABLE_FORMATS.contains(k) && dialect != Dialect::Minimal);
                match keyword {
                    Some(k) => {
                        s.insert("format".into(), json!(k));
                    }
                    None => {
                        // Unless the description already says it (phone numbers usually do).
                        let said = notes.iter().any(|n| {
                            let n = n.to_ascii_lowercase();
                            n.contains(f.name()) || (*f == Format::Phone && n.contains("e.164"))
                        });
                        if !said {
                            notes.push(format!("Format: {}", f.example()));
                        }
                    }
                }
                if *f == Format::Phone && dialect != Dialect::Minimal {
                    s.insert("pattern".into(), json!("^\\+[1-9][0-9]{6,14}$"));
                }
            }
            Value::Object(s)
        }
        Ty::Int => json!({"type": "integer"}),
        Ty::Number => json!({"type": "number"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Enum { values } => json!({"type": "string", "enum": values}),
        Ty::List { item } => {
            let mut item_notes = Vec::new();
            let mut items = reduced_type(item, dialect, &mut item_notes);
            if dialect == Dialect::Minimal {
                if item_notes.is_empty() {
                    item_notes.push("One item".to_string());
                }
                if let Value::Object(m) = &mut items {
                    m.insert("description".into(), json!(sentence(&item_notes)));
                }
            } else {
                notes.extend(item_notes.into_iter().map(|n| format!("Each item: {n}")));
            }
            json!({"type": "array", "items": items})
        }
        // Optional list items and nested optionals: the inner type (a null item is rare and
        // every platform's model sends a value anyway).
        Ty::Optional { inner } => reduced_type(inner, dialect, notes),
    }
}

/// `{"type": T}` becomes `{"type": [T, "null"]}` (and `null` joins an `enum`).
fn make_nullable(schema: &mut Value) {
    let Value::Object(m) = schema else { return };
    if let Some(Value::String(t)) = m.get("type").cloned() {
        m.insert("type".into(), json!([t, "null"]));
    }
    if let Some(Value::Array(values)) = m.get_mut("enum") {
        values.push(Value::Null);
    }
}
