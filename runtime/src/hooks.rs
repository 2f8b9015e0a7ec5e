//! Hooks for tests, benchmarks and fuzzing: the server's request decoding and the request
//! rendering of an action, callable without a network. Not a stable API.

use serde_json::{Map, Value};

use crate::execute::Runtime;
use crate::response::ErrorBody;

/// Decodes an inbound request body the way `POST /actions/{name}` does: empty or blank means
/// no inputs (`{}`), anything else must be JSON (`400 invalid_body`). serde_json refuses
/// nesting deeper than 128 levels, so no body can exhaust the stack.
pub fn decode_body(body: &[u8]) -> Result<Value, ErrorBody> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice::<Value>(body)
        .map_err(|e| ErrorBody::new(400, "invalid_body", format!("the body is not JSON: {e}")))
}

/// The server's decoding followed by the action's input validation (400/422, or the inputs
/// with defaults applied).
pub fn decode_inputs(
    runtime: &Runtime,
    action: &str,
    body: &[u8],
) -> Result<Map<String, Value>, ErrorBody> {
    let Some(action) = runtime.action(action) else {
        return Err(ErrorBody::new(404, "unknown_action", "no such action"));
    };
    crate::input::validate(action, decode_body(body)?)
}

/// An upstream request as the runtime would send it (after routes and the address policy).
#[derive(Debug, Clone)]
pub struct RenderedRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
}

impl RenderedRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// What the runtime still holds of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFootprint {
    /// Cache entries held in memory by every cache (all calls, after pending maintenance).
    pub cache_entries_held: u64,
    /// Cache entries of this call that a lookup would still find.
    pub cache_entries_of_call: usize,
    /// OAuth2 tokens that belong to this call.
    pub tokens_of_call: usize,
}
