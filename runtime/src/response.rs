//! What one execution of an action answers.
//!
//! An [`ActionResponse`] is either an [`Answer`] (HTTP 200: `status` is `ok` or `fallback`) or an
//! [`ErrorBody`] (400 body not an object, 422 invalid input, 404 unknown action, 502 when the
//! upstream failed and the action declares no `fallback`). Both serialize exactly as the contract
//! says; [`Answer::detail`] carries diagnostics that are never serialized.

use mca_compiler::ir::Reason;
use serde::Serialize;
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
    pub output: Map<String, Value>,
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
