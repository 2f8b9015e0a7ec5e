//! Tool definitions for each platform, derived from the actions (`mca schema`, `GET /tools`).
//!
//! | format | shape | where it goes |
//! |---|---|---|
//! | `openai` | `[{"type": "function", "name", "description", "parameters", "strict": true}]` | Responses API `tools` |
//! | `openai-chat` | `[{"type": "function", "function": {"name", "description", "parameters", "strict": true}}]` | Chat Completions `tools` |
//! | `openai-realtime` | `[{"type": "function", "name", "description", "parameters"}]` | Realtime session `tools` |
//! | `mcp` | `{"tools": [{"name", "title", "description", "inputSchema", "outputSchema", "annotations"}]}` | what `tools/list` answers |
//! | `vapi` | `[{"type": "function", "function", "server": {"url", "timeoutSeconds"}, "messages"}]` | each one the body of Vapi's `POST /tool` |
//! | `retell` | `[{"type": "custom", "name", "description", "url", "parameters", "speak_during_execution", ...}]` | a Retell LLM's `general_tools` |
//! | `elevenlabs` | `[{"tool_config": {"type": "webhook", "name", "description", "api_schema": {...}}}]` | each one the body of ElevenLabs' `POST /v1/convai/tools` |
//!
//! URLs are built from a base URL (where `mca serve` is reachable from the platform): Vapi calls
//! `BASE/vapi`, Retell `BASE/retell/{action}`, ElevenLabs `BASE/actions/{action}`. Timeouts given
//! to platforms are the action's `timeout` plus one second, so the platform never gives up
//! before the runtime's answer (which always comes by the deadline) arrives. The `messages`
//! block becomes Vapi's `request-start`, `request-response-delayed` (with
//! `timingMilliseconds`) and `request-failed` messages, and Retell's
//! `speak_during_execution` with the `start` text (Retell has no delayed or failed message).

use mca_compiler::ir::Action;
use serde_json::{json, Map, Value};

use crate::schema::{inputs_schema, outputs_schema, tool_parameters, Dialect};

/// A platform's tool format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    OpenAi,
    OpenAiChat,
    OpenAiRealtime,
    Mcp,
    Vapi,
    Retell,
    ElevenLabs,
}

impl ToolFormat {
    pub const ALL: [ToolFormat; 7] = [
        ToolFormat::OpenAi,
        ToolFormat::OpenAiChat,
        ToolFormat::OpenAiRealtime,
        ToolFormat::Mcp,
        ToolFormat::Vapi,
        ToolFormat::Retell,
        ToolFormat::ElevenLabs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ToolFormat::OpenAi => "openai",
            ToolFormat::OpenAiChat => "openai-chat",
            ToolFormat::OpenAiRealtime => "openai-realtime",
            ToolFormat::Mcp => "mcp",
            ToolFormat::Vapi => "vapi",
            ToolFormat::Retell => "retell",
            ToolFormat::ElevenLabs => "elevenlabs",
        }
    }

    pub fn from_name(name: &str) -> Option<ToolFormat> {
        let name = name.to_ascii_lowercase();
        ToolFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether the definitions contain the runtime's URL.
    pub fn needs_base_url(self) -> bool {
        matches!(
            self,
            ToolFormat::Vapi | ToolFormat::Retell | ToolFormat::ElevenLabs
        )
    }

    /// Every format's name, for messages.
    pub fn names() -> String {
        ToolFormat::ALL.map(ToolFormat::name).join(", ")
    }
}

/// The tool definitions of `actions` in `format` (see the module documentation). `base_url` is
/// where the platform reaches `mca serve` (a trailing `/` is ignored).
pub fn tool_definitions<'a>(
    actions: impl Iterator<Item = &'a Action>,
    format: ToolFormat,
    base_url: &str,
) -> Value {
    let base = base_url.trim_end_matches('/');
    // Follow-ups run when a call ends; the assistant never calls them.
    let tools: Vec<Value> = actions
        .filter(|a| a.follow_up.is_none())
        .map(|a| tool(a, format, base))
        .collect();
    match format {
        ToolFormat::Mcp => json!({ "tools": tools }),
        _ => Value::Array(tools),
    }
}

/// One action's tool definition.
pub fn tool(action: &Action, format: ToolFormat, base: &str) -> Value {
    match format {
        ToolFormat::OpenAi => json!({
            "type": "function",
            "name": action.name,
            "description": action.description,
            "parameters": tool_parameters(action, Dialect::Strict),
            "strict": true,
        }),
        ToolFormat::OpenAiChat => json!({
            "type": "function",
            "function": {
                "name": action.name,
                "description": action.description,
                "parameters": tool_parameters(action, Dialect::Strict),
                "strict": true,
            },
        }),
        ToolFormat::OpenAiRealtime => json!({
            "type": "function",
            "name": action.name,
            "description": action.description,
            "parameters": tool_parameters(action, Dialect::Tool),
        }),
        ToolFormat::Mcp => mcp_tool(action),
        ToolFormat::Vapi => vapi_tool(action, base),
        ToolFormat::Retell => retell_tool(action, base),
        ToolFormat::ElevenLabs => elevenlabs_tool(action, base),
    }
}

/// A platform's timeout for the action: its `timeout` plus a second, in whole seconds.
fn platform_timeout_secs(action: &Action, max: u64) -> u64 {
    action
        .timeout_ms
        .saturating_add(1000)
        .div_ceil(1000)
        .clamp(1, max)
}

/// An MCP `Tool` (specification 2025-06-18 and later: `title`, `outputSchema`, `annotations`).
pub fn mcp_tool(action: &Action) -> Value {
    let read_only = action.reads_only();
    let mut annotations = Map::new();
    annotations.insert("title".into(), json!(title(&action.name)));
    annotations.insert("readOnlyHint".into(), json!(read_only));
    if !read_only {
        annotations.insert("destructiveHint".into(), json!(false));
        annotations.insert("idempotentHint".into(), json!(action.idempotent()));
    }
    annotations.insert("openWorldHint".into(), json!(true));
    json!({
        "name": action.name,
        "title": title(&action.name),
        "description": action.description,
        "inputSchema": inputs_schema(action),
        "outputSchema": outputs_schema(action),
        "annotations": annotations,
    })
}

/// `order_status` → `Order status`.
fn title(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

/// A Vapi function tool (`POST /tool` body) whose server is `BASE/vapi`.
fn vapi_tool(action: &Action, base: &str) -> Value {
    let mut tool = json!({
        "type": "function",
        "async": false,
        "function": {
            "name": action.name,
            "description": action.description,
            "parameters": tool_parameters(action, Dialect::Tool),
        },
        "server": {
            "url": format!("{base}/vapi"),
            "timeoutSeconds": platform_timeout_secs(action, 300),
        },
    });
    let m = &action.messages;
    let mut messages = Vec::new();
    if let Some(text) = &m.start {
        messages.push(json!({"type": "request-start", "content": text}));
    }
    if let Some(delayed) = &m.delayed {
        messages.push(json!({
            "type": "request-response-delayed",
            "content": delayed.text,
            "timingMilliseconds": delayed.after_ms,
        }));
    }
    if let Some(text) = &m.failed {
        messages.push(json!({"type": "request-failed", "content": text}));
    }
    if !messages.is_empty() {
        if let Value::Object(t) = &mut tool {
            t.insert("messages".into(), Value::Array(messages));
        }
    }
    tool
}

/// A Retell custom function calling `BASE/retell/{action}` with `{name, call, args}`.
fn retell_tool(action: &Action, base: &str) -> Value {
    let mut tool = json!({
        "type": "custom",
        "name": action.name,
        "description": action.description,
        "url": format!("{base}/retell/{}", action.name),
        "method": "POST",
        "args_at_root": false,
        "parameters": tool_parameters(action, Dialect::Tool),
        "speak_during_execution": action.messages.start.is_some(),
        "speak_after_execution": true,
        "timeout_ms": platform_timeout_secs(action, 600) * 1000,
    });
    if let (Value::Object(t), Some(start)) = (&mut tool, &action.messages.start) {
        t.insert("execution_message_description".into(), json!(start));
        t.insert("execution_message_type".into(), json!("static_text"));
    }
    tool
}

/// An ElevenLabs server (webhook) tool posting the inputs to `BASE/actions/{action}`.
fn elevenlabs_tool(action: &Action, base: &str) -> Value {
    let mut body = tool_parameters(action, Dialect::Minimal);
    if let Value::Object(b) = &mut body {
        b.insert(
            "description".into(),
            json!(format!("The inputs of {}.", action.name)),
        );
    }
    json!({
        "tool_config": {
            "type": "webhook",
            "name": action.name,
            "description": action.description,
            "response_timeout_secs": platform_timeout_secs(action, 120),
            "api_schema": {
                "url": format!("{base}/actions/{}", action.name),
                "method": "POST",
                "request_body_schema": body,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in ToolFormat::ALL {
            assert_eq!(ToolFormat::from_name(f.name()), Some(f));
        }
        assert_eq!(ToolFormat::from_name("VAPI"), Some(ToolFormat::Vapi));
        assert_eq!(ToolFormat::from_name("nope"), None);
    }

    #[test]
    fn titles() {
        assert_eq!(title("order_status"), "Order status");
        assert_eq!(title(""), "");
    }
}
