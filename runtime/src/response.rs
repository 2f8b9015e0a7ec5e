//! What one execution of an action answers.
//!
//! An [`ActionResponse`] is either an [`Answer`] (HTTP 200: `status` is `ok` or `fallback`) or an
//! [`ErrorBody`] (400 body not an object, 422 invalid input, 404 unknown action, 502 when the
//! upstream failed and the action declares no `fallback`). Both serialize exactly as the contract
//! says; [`Answer::detail`] carries diagnostics that are never serialized.

use std::sync::Arc;

use mca_compiler::ir::Reason;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Who is calling: filled from the `X-Call-Id` and `X-Call-From` headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    pub id: Option<String>,
    pub from: Option<String>,
}

impl CallContext {
    pub fn new(id: Option<String>, from: Option<String>) -> Self {
        CallContext { id, from }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Outputs mapped from a successful response, served from the cache, or produced by an
    /// `on STATUS` block.
    Ok,
    /// The `fallback` outcome; [`Answer::reason`] says why.
    Fallback,
}

/// The `200` answer of an action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub action: String,
    pub status: Status,
    pub output: Outputs,
    /// The rendered `say` template; `null` when the outcome has none, or when a value it
    /// refers to is null (a half-rendered sentence is worse than none).
    pub say: Option<String>,
    /// Answered without an upstream request of its own (a cache hit, a stale entry, or a
    /// concurrent identical request's result).
    pub cached: bool,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Served from an expired cache entry because the upstream failed (`stale_if_error`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// Diagnostics for logs, `mca run` and `mca test`; never serialized.
    #[serde(skip)]
    pub detail: Detail,
}

/// The outputs of an answer: one value per output of the action, in the action's order, under
/// its names. Serialized as a JSON object in that order. The names are the action's (shared,
/// not copied per answer) and the values may be shared with the cache entry they came from:
/// an answer from the cache copies neither.
#[derive(Clone, Default)]
pub struct Outputs {
    names: Arc<[String]>,
    values: Arc<[Value]>,
}

impl Outputs {
    /// `values[i]` is the value of `names[i]`; missing values are null, extra ones dropped.
    pub fn new(names: Arc<[String]>, values: Arc<[Value]>) -> Outputs {
        if values.len() == names.len() {
            return Outputs { names, values };
        }
        let values = (0..names.len())
            .map(|i| values.get(i).cloned().unwrap_or(Value::Null))
            .collect();
        Outputs { names, values }
    }

    /// The value of output `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let i = self.names.iter().position(|n| n == name)?;
        self.values.get(i)
    }

    /// Sets output `name` (an output the action declares; others are ignored).
    pub fn set(&mut self, name: &str, value: Value) {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            let mut values = self.values.to_vec();
            values[i] = value;
            self.values = values.into();
        }
    }

    /// Names and values, in the action's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The outputs as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }
}

impl From<Map<String, Value>> for Outputs {
    fn from(map: Map<String, Value>) -> Outputs {
        let (names, values): (Vec<String>, Vec<Value>) = map.into_iter().unzip();
        Outputs {
            names: names.into(),
            values: values.into(),
        }
    }
}

/// `outputs["name"]`: the value, null for a name the action does not declare.
impl std::ops::Index<&str> for Outputs {
    type Output = Value;

    fn index(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(name).unwrap_or(&NULL)
    }
}

impl PartialEq for Outputs {
    fn eq(&self, other: &Outputs) -> bool {
        self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'de> serde::Deserialize<'de> for Outputs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Outputs, D::Error> {
        Map::deserialize(d).map(Outputs::from)
    }
}

impl Serialize for Outputs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Diagnostics about how an answer came about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// Upstream requests sent for this answer (0 for cache hits and refused requests).
    pub attempts: u32,
    /// Status of the last upstream response, if one arrived.
    pub upstream_status: Option<u16>,
    /// Index into `Action::on_status` of the outcome used, if any.
    pub on_status: Option<usize>,
    /// What went wrong, for a fallback (secrets redacted).
    pub message: Option<String>,
}

/// An error answer: `{"error": {"code", "message", "field"}}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub http_status: u16,
    /// `invalid_body`, `invalid_input`, `unknown_action`, or a [`Reason`] name for an upstream
    /// failure without a fallback.
    pub code: String,
    pub message: String,
    /// The input the error is about, if any.
    pub field: Option<String>,
    /// Set when an upstream failure without a fallback produced the error.
    pub reason: Option<Reason>,
    /// The status of the last upstream response, if one arrived (not sent to callers).
    pub upstream_status: Option<u16>,
}

impl ErrorBody {
    pub fn new(http_status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            http_status,
            code: code.into(),
            message: message.into(),
            field: None,
            reason: None,
            upstream_status: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), Value::String(self.code.clone()));
        error.insert("message".into(), Value::String(self.message.clone()));
        if let Some(field) = &self.field {
            error.insert("field".into(), Value::String(field.clone()));
        }
        let mut outer = Map::new();
        outer.insert("error".into(), Value::Object(error));
        Value::Object(outer)
    }
}

/// What [`crate::Runtime::execute`] answers.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionResponse {
    Answer(Answer),
    Error(ErrorBody),
}

impl ActionResponse {
    /// The HTTP status the server answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ActionResponse::Answer(_) => 200,
            ActionResponse::Error(e) => e.http_status,
        }
    }

    /// The JSON body the server answers with.
    pub fn to_json(&self) -> Value {
        match self {
            ActionResponse::Answer(a) => serde_json::to_value(a).unwrap_or(Value::Null),
            ActionResponse::Error(e) => e.to_json(),
        }
    }

    /// [`ActionResponse::to_json`] as bytes, serialized directly (the server's body).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        match self {
            ActionResponse::Answer(a) => {
                // Most answers fit: one allocation instead of a doubling series.
                let mut out = Vec::with_capacity(512);
                match serde_json::to_writer(&mut out, a) {
                    Ok(()) => out,
                    Err(_) => b"null".to_vec(),
                }
            }
            ActionResponse::Error(e) => e.to_json().to_string().into_bytes(),
        }
    }

    pub fn answer(&self) -> Option<&Answer> {
        match self {
            ActionResponse::Answer(a) => Some(a),
            ActionResponse::Error(_) => None,
        }
    }

    pub fn error(&self) -> Option<&ErrorBody> {
        match self {
            ActionResponse::Answer(_) => None,
            ActionResponse::Error(e) => Some(e),
        }
    }

    /// Why the action did not produce mapped outputs: the fallback's reason, `invalid_input`
    /// for rejected inputs, or the reason of an upstream failure without a fallback.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            ActionResponse::Answer(a) => a.reason,
            ActionResponse::Error(e) if e.code == Reason::InvalidInput.as_str() => {
                Some(Reason::InvalidInput)
            }
            ActionResponse::Error(e) => e.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outputs(values: Vec<Value>) -> Outputs {
        let names: Arc<[String]> = ["found", "name", "open_tickets"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Outputs::new(names, values.into())
    }

    #[test]
    fn outputs_serialize_as_an_object_in_the_actions_order() {
        let o = outputs(vec![json!(true), json!("Max"), json!(2)]);
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"found":true,"name":"Max","open_tickets":2}"#
        );
        assert_eq!(o["name"], json!("Max"));
        assert_eq!(o["undeclared"], Value::Null);
        assert_eq!(o.get("undeclared"), None);
        assert_eq!(Outputs::from(o.to_map()), o);
    }

    #[test]
    fn missing_values_are_null_and_extra_ones_dropped() {
        assert_eq!(outputs(vec![json!(true)])["open_tickets"], Value::Null);
        assert_eq!(outputs(vec![json!(true)]).len(), 3);
        let extra = outputs(vec![json!(1), json!(2), json!(3), json!(4)]);
        assert_eq!(extra.iter().count(), 3);
    }

    /// An answer shares its values with the cache entry it came from: setting one output (a
    /// guard that does not hold) must not change the entry's.
    #[test]
    fn setting_an_output_leaves_outputs_sharing_its_values_unchanged() {
        let entry = outputs(vec![json!(true), json!("Max"), json!(2)]);
        let mut answer = entry.clone();
        answer.set("name", Value::Null);
        answer.set("undeclared", json!(1));
        assert_eq!(answer["name"], Value::Null);
        assert_eq!(answer.get("undeclared"), None);
        assert_eq!(entry["name"], json!("Max"));
    }
}
