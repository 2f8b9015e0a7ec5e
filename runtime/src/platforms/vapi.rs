//! Vapi server messages on `POST /vapi`.
//!
//! - `tool-calls`: every call in `message.toolCallList` runs concurrently; the answer lists one
//!   entry per call, in the order of the list: `{"toolCallId", "name", "result"}` with the
//!   [voice text](super::voice) (one line), or `{"toolCallId", "name", "error"}` when the call
//!   could not produce an answer (unknown tool, invalid arguments, an upstream failure without a
//!   fallback). A fallback is an answer: its `say` is the result. `arguments` may be an object
//!   or a JSON string; calls in the older OpenAI shape (`{"id", "function": {"name",
//!   "arguments"}}`) are understood too. `message.call.id` fills `call.id`, the customer's number
//!   (`message.customer.number`, or `message.call.customer.number`) fills `call.from`.
//! - `function-call` (Vapi's older single call, `message.functionCall`): `{"result": "..."}`.
//! - `end-of-call-report`, and `status-update` with status `ended`: the call's `scope call`
//!   cache entries are dropped; `200 {}`.
//! - any other message: `200 {}`.
//!
//! The answer is always HTTP 200 for a well-formed message (Vapi reads errors from the body);
//! a body that is not a Vapi message is `400`.

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::voice::response_text;
use crate::execute::Runtime;
use crate::response::{CallContext, ErrorBody};

/// Answers one Vapi server message (status and JSON body).
pub(crate) async fn handle(runtime: &Runtime, body: &[u8], arrived: Instant) -> (u16, Value) {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(format!("the body is not JSON: {e}")),
    };
    let Some(message) = parsed.get("message").and_then(Value::as_object) else {
        return bad("a Vapi server message has a `message` object".to_string());
    };
    let call = call_context(message);
    match message.get("type").and_then(Value::as_str).unwrap_or("") {
        "tool-calls" => (200, tool_calls(runtime, message, call, arrived).await),
        "function-call" => (200, function_call(runtime, message, call, arrived).await),
        "end-of-call-report" => {
            // The report's summary, transcript and reason are the follow-ups' inputs.
            let m = Value::Object(message.clone());
            let mut details = Map::new();
            for (name, paths) in [
                ("summary", &[&["analysis", "summary"][..], &["summary"]][..]),
                (
                    "transcript",
                    &[&["artifact", "transcript"][..], &["transcript"]],
                ),
                ("ended_reason", &[&["endedReason"][..]]),
                (
                    "recording_url",
                    &[&["artifact", "recordingUrl"][..], &["recordingUrl"]],
                ),
            ] {
                if let Some(v) = paths.iter().find_map(|p| text_at(&m, p)) {
                    details.insert(name.to_string(), json!(v));
                }
            }
            runtime.end_call_with(&call, &details).await;
            (200, json!({}))
        }
        "status-update" => {
            if message.get("status").and_then(Value::as_str) == Some("ended") {
                end_call(runtime, &call);
            }
            (200, json!({}))
        }
        _ => (200, json!({})),
    }
}

fn bad(message: String) -> (u16, Value) {
    (400, ErrorBody::new(400, "invalid_body", message).to_json())
}

fn end_call(runtime: &Runtime, call: &CallContext) {
    if let Some(id) = &call.id {
        runtime.end_call(id);
    }
}

fn text_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn call_context(message: &Map<String, Value>) -> CallContext {
    let m = Value::Object(message.clone());
    let id = text_at(&m, &["call", "id"]).map(str::to_string);
    let from = text_at(&m, &["customer", "number"])
        .or_else(|| text_at(&m, &["call", "customer", "number"]))
        .map(str::to_string);
    CallContext::new(id, from)
}

/// One tool call: its id, the tool's name and the arguments (parsed when given as a string).
struct ToolCall {
    id: Value,
    name: String,
    arguments: Result<Value, String>,
}

fn parse_call(item: &Value) -> ToolCall {
    let function = item.get("function");
    let name = item
        .get("name")
        .or_else(|| function.and_then(|f| f.get("name")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let raw = item
        .get("arguments")
        .or_else(|| function.and_then(|f| f.get("arguments")))
        .or_else(|| function.and_then(|f| f.get("parameters")))
        .or_else(|| item.get("parameters"));
    ToolCall {
        id: item.get("id").cloned().unwrap_or(Value::Null),
        name,
        arguments: arguments(raw),
    }
}

/// Arguments as an object, or a JSON string holding one; absent means none.
fn arguments(raw: Option<&Value>) -> Result<Value, String> {
    match raw {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(json!({})),
        Some(Value::String(s)) => {
            serde_json::from_str::<Value>(s).map_err(|e| format!("the arguments are not JSON: {e}"))
        }
        Some(v) => Ok(v.clone()),
    }
}

async fn run(
    runtime: &Runtime,
    call: &ToolCall,
    ctx: CallContext,
    arrived: Instant,
) -> Result<String, String> {
    if call.name.is_empty() {
        return Err("the tool call names no tool".to_string());
    }
    if runtime.action(&call.name).is_none() {
        return Err(format!("there is no tool named `{}`", call.name));
    }
    let arguments = call.arguments.clone()?;
    response_text(
        &runtime
            .execute_since(&call.name, arguments, ctx, arrived)
            .await,
    )
}

async fn tool_calls(
    runtime: &Runtime,
    message: &Map<String, Value>,
    ctx: CallContext,
    arrived: Instant,
) -> Value {
    // `toolCallList` (current), `toolCalls` (older), or the calls inside `toolWithToolCallList`.
    let list = message
        .get("toolCallList")
        .or_else(|| message.get("toolCalls"))
        .and_then(Value::as_array);
    let calls: Vec<ToolCall> = match list {
        Some(list) => list.iter().map(parse_call).collect(),
        None => message
            .get("toolWithToolCallList")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|t| t.get("toolCall"))
                    .map(parse_call)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let outcomes =
        futures_util::future::join_all(calls.iter().map(|c| run(runtime, c, ctx.clone(), arrived)))
            .await;
    let results: Vec<Value> = calls
        .iter()
        .zip(outcomes)
        .map(|(c, outcome)| match outcome {
            Ok(text) => json!({"toolCallId": c.id, "name": c.name, "result": text}),
            Err(text) => json!({"toolCallId": c.id, "name": c.name, "error": text}),
        })
        .collect();
    json!({ "results": results })
}

async fn function_call(
    runtime: &Runtime,
    message: &Map<String, Value>,
    ctx: CallContext,
    arrived: Instant,
) -> Value {
    let Some(item) = message.get("functionCall") else {
        return json!({"error": "the function-call message has no functionCall"});
    };
    let call = parse_call(item);
    match run(runtime, &call, ctx, arrived).await {
        Ok(text) => json!({ "result": text }),
        Err(text) => json!({ "error": text }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_as_object_or_string() {
        assert_eq!(arguments(Some(&json!({"a": 1}))), Ok(json!({"a": 1})));
        assert_eq!(arguments(Some(&json!("{\"a\": 1}"))), Ok(json!({"a": 1})));
        assert_eq!(arguments(None), Ok(json!({})));
        assert_eq!(arguments(Some(&json!(""))), Ok(json!({})));
        assert!(arguments(Some(&json!("{nope"))).is_err());
    }

    #[test]
    fn both_call_shapes() {
        let new = parse_call(&json!({"id": "c1", "name": "t", "arguments": {"x": 1}}));
        assert_eq!(
            (new.name.as_str(), new.arguments),
            ("t", Ok(json!({"x": 1})))
        );
        let old = parse_call(
            &json!({"id": "c2", "type": "function", "function": {"name": "u", "arguments": "{\"y\":2}"}}),
        );
        assert_eq!(
            (old.name.as_str(), old.arguments),
            ("u", Ok(json!({"y": 2})))
        );
    }

    #[test]
    fn call_context_from_call_and_customer() {
        let m = json!({"call": {"id": "call-1", "customer": {"number": "+4930"}}});
        let ctx = call_context(m.as_object().unwrap());
        assert_eq!(
            ctx,
            CallContext::new(Some("call-1".into()), Some("+4930".into()))
        );
        let m = json!({"call": {"id": "call-2"}, "customer": {"number": "+4940"}});
        let ctx = call_context(m.as_object().unwrap());
        assert_eq!(ctx.from.as_deref(), Some("+4940"));
    }
}
