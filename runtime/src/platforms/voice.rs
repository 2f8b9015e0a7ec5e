//! The text a voice platform hands its model (and usually speaks): one helper for every envelope.
//!
//! - an answer with a `say` (the action's, an `on STATUS` block's or the fallback's): that text;
//! - an answer without one: its outputs rendered compactly (`name: value; other: a, b`), null
//!   outputs left out;
//! - an error: its message.
//!
//! Always one line (line breaks and runs of whitespace become one space, control characters go)
//! and at most [`MAX_CHARS`] characters (cut at a word where possible, ending in `…`).

use serde_json::Value;

use crate::response::{ActionResponse, Answer, ErrorBody, Outputs};

/// Longest text handed to a platform, in characters.
pub const MAX_CHARS: usize = 500;

/// The text of an answer (see the module documentation).
pub fn voice_text(answer: &Answer) -> String {
    match answer.say.as_deref().map(str::trim) {
        Some(say) if !say.is_empty() => one_line(say, MAX_CHARS),
        _ => {
            let rendered = render_outputs(&answer.output);
            if rendered.is_empty() {
                match answer.reason {
                    Some(reason) => format!(
                        "{} could not be completed ({}).",
                        answer.action,
                        reason.as_str()
                    ),
                    None => "Done.".to_string(),
                }
            } else {
                one_line(&rendered, MAX_CHARS)
            }
        }
    }
}

/// The text of an error answer: its message, one line, bounded.
pub fn error_text(error: &ErrorBody) -> String {
    one_line(&error.message, MAX_CHARS)
}

/// [`voice_text`] for an answer, `Err(`[`error_text`]`)` for an error.
pub fn response_text(response: &ActionResponse) -> Result<String, String> {
    match response {
        ActionResponse::Answer(a) => Ok(voice_text(a)),
        ActionResponse::Error(e) => Err(error_text(e)),
    }
}

/// `name: value; other: a, b`, outputs in declaration order, nulls left out.
fn render_outputs(output: &Outputs) -> String {
    output
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| format!("{k}: {}", render_value(v)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            if items.is_empty() {
                "none".to_string()
            } else {
                items
                    .iter()
                    .map(render_value)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }
        Value::Bool(true) => "yes".to_string(),
        Value::Bool(false) => "no".to_string(),
        other => other.to_string(),
    }
}

/// One line of at most `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if !c.is_control() {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    if out.chars().count() <= max {
        return out;
    }
    let keep: String = out.chars().take(max.saturating_sub(1)).collect();
    let cut = match keep.rfind(' ') {
        Some(i) if i >= keep.len() / 2 => &keep[..i],
        _ => keep.as_str(),
    };
    format!("{}…", cut.trim_end_matches([',', ';', ' ']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{Detail, Status};
    use serde_json::json;

    fn answer(say: Option<&str>, output: Value) -> Answer {
        Answer {
            action: "a".into(),
            status: Status::Ok,
            output: output.as_object().cloned().unwrap_or_default().into(),
            say: say.map(str::to_string),
            cached: false,
            duration_ms: 1,
            reason: None,
            stale: false,
            detail: Detail::default(),
        }
    }

    #[test]
    fn say_wins_and_is_one_line() {
        let a = answer(Some("  Order 1 is\nshipped.\t "), json!({"x": 1}));
        assert_eq!(voice_text(&a), "Order 1 is shipped.");
    }

    #[test]
    fn outputs_render_compactly_without_nulls() {
        let a = answer(
            None,
            json!({"status": "shipped", "carrier": null, "items": ["Router", "Cable"], "found": true, "n": 2}),
        );
        assert_eq!(
            voice_text(&a),
            "status: shipped; items: Router, Cable; found: yes; n: 2"
        );
    }

    #[test]
    fn long_text_is_bounded_at_a_word() {
        let long = "word ".repeat(400);
        let t = one_line(&long, MAX_CHARS);
        assert!(t.chars().count() <= MAX_CHARS, "{}", t.chars().count());
        assert!(t.ends_with("word…"), "{t}");
        let unbroken = "x".repeat(1000);
        assert_eq!(one_line(&unbroken, 10).chars().count(), 10);
    }

    #[test]
    fn nothing_to_say() {
        assert_eq!(voice_text(&answer(None, json!({}))), "Done.");
        let mut a = answer(None, json!({"x": null}));
        a.reason = Some(mca_compiler::ir::Reason::Timeout);
        assert_eq!(voice_text(&a), "a could not be completed (timeout).");
    }
}
