//! Retell custom functions on `POST /retell/{action}`.
//!
//! The body is Retell's `{"name", "call": {...}, "args": {...}}`, or, with the function's
//! "payload: args only" setting (`args_at_root`), the arguments themselves. The envelope is
//! recognised by an `args` object next to a `call` object or a `name` equal to the action's.
//! `call.call_id` fills `call.id` and `call.from_number` fills `call.from` (the `X-Call-Id` and
//! `X-Call-From` headers, which a Retell function can be given, are used when the body has
//! none).
//!
//! The answer is `200` with the action's answer (as on `/actions`) plus `result`, the
//! [voice text](super::voice), which is what Retell's model reads. A call that produced no answer
//! (invalid arguments, an upstream failure without a fallback) is also `200`, with `result`
//! saying what went wrong and `error` as on `/actions`: a non-2xx status would make Retell
//! retry the whole call, twice, while the caller waits, and the model could not correct the
//! arguments. An unknown action is `404`, a body that is not JSON `400`.

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::voice::{error_text, voice_text};
use crate::execute::Runtime;
use crate::response::{ActionResponse, CallContext, ErrorBody};

/// Answers one Retell custom function call (status and JSON body).
pub(crate) async fn handle(
    runtime: &Runtime,
    action: &str,
    headers: CallContext,
    body: &[u8],
    arrived: Instant,
) -> (u16, Value) {
    if runtime.action(action).is_none() {
        let e = ErrorBody::new(
            404,
            "unknown_action",
            format!("there is no action named `{action}`"),
        );
        return (404, e.to_json());
    }
    let parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let e = ErrorBody::new(400, "invalid_body", format!("the body is not JSON: {e}"));
                return (400, e.to_json());
            }
        }
    };
    let (args, call) = split(action, parsed);
    let call = CallContext::new(call.id.or(headers.id), call.from.or(headers.from));
    let response = runtime.execute_since(action, args, call, arrived).await;
    let mut answer = response.to_json();
    let result = match &response {
        ActionResponse::Answer(a) => voice_text(a),
        ActionResponse::Error(e) => format!("{action} failed: {}", error_text(e)),
    };
    if let Value::Object(m) = &mut answer {
        m.insert("result".into(), json!(result));
    }
    let status = match &response {
        ActionResponse::Error(e) if e.http_status == 404 => 404,
        _ => 200,
    };
    (status, answer)
}

/// The arguments and the call of a Retell body (see the module documentation).
fn split(action: &str, body: Value) -> (Value, CallContext) {
    let Value::Object(mut m) = body else {
        return (body, CallContext::default());
    };
    let enveloped = m.get("args").is_some_and(Value::is_object)
        && (m.get("call").is_some_and(Value::is_object)
            || m.get("name").and_then(Value::as_str) == Some(action));
    if !enveloped {
        return (Value::Object(m), CallContext::default());
    }
    let call = m.remove("call").unwrap_or(Value::Null);
    let text = |k: &str| {
        call.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let ctx = CallContext::new(text("call_id"), text("from_number"));
    let args = m
        .remove("args")
        .unwrap_or_else(|| Value::Object(Map::new()));
    (args, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_or_args_at_root() {
        let (args, ctx) = split(
            "order_status",
            json!({"name": "order_status", "call": {"call_id": "c1", "from_number": "+1415"}, "args": {"order_number": "1"}}),
        );
        assert_eq!(args, json!({"order_number": "1"}));
        assert_eq!(
            ctx,
            CallContext::new(Some("c1".into()), Some("+1415".into()))
        );

        let (args, ctx) = split("order_status", json!({"order_number": "1"}));
        assert_eq!(args, json!({"order_number": "1"}));
        assert_eq!(ctx, CallContext::default());

        // An action with an input called `args` keeps it when the body is not an envelope.
        let (args, _) = split("x", json!({"args": {"a": 1}, "name": "someone"}));
        assert_eq!(args, json!({"args": {"a": 1}, "name": "someone"}));
    }
}
