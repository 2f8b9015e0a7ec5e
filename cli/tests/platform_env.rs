//! `mca serve` reads the platform credentials from the environment: a real process, real
//! HTTP, Retell and Vapi requests signed, unsigned and tampered.

use std::time::{SystemTime, UNIX_EPOCH};

mod common;

use mca_runtime::platforms::auth::sign_retell;
use serde_json::{json, Value};

fn serve(env: &[(&str, &str)]) -> common::Served {
    common::serve(&["examples/order_status.mca", "--demo"], env)
}

fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let (status, body) = common::http(addr, "POST", path, headers, body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}

#[test]
fn retell_signatures_are_checked_with_the_key_from_the_environment() {
    let s = serve(&[("MCA_RETELL_API_KEY", "key_from_env")]);
    let body = json!({
        "name": "order_status",
        "call": {"call_id": "call_1", "from_number": "+14155550100"},
        "args": {"order_number": "100234"}
    })
    .to_string();
    let (status, _) = post(&s.addr, "/retell/order_status", &[], &body);
    assert_eq!(status, 401, "unsigned");
    let sig = sign_retell("key_from_env", body.as_bytes(), now_ms());
    let tampered = body.replace("100234", "100235");
    let (status, _) = post(
        &s.addr,
        "/retell/order_status",
        &[("X-Retell-Signature", &sig)],
        &tampered,
    );
    assert_eq!(status, 401, "tampered");
    let (status, answer) = post(
        &s.addr,
        "/retell/order_status",
        &[("X-Retell-Signature", &sig)],
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], json!("Order 100234 is shipped."));
}

#[test]
fn the_vapi_secret_comes_from_the_environment() {
    let s = serve(&[("MCA_VAPI_SECRET", "vapi-env-secret")]);
    let body = json!({"message": {
        "type": "tool-calls",
        "call": {"id": "call-9"},
        "toolCallList": [{"id": "t1", "name": "order_status", "arguments": "{\"order_number\":\"100234\"}"}]
    }})
    .to_string();
    assert_eq!(post(&s.addr, "/vapi", &[], &body).0, 401);
    let (status, answer) = post(
        &s.addr,
        "/vapi",
        &[("X-Vapi-Secret", "vapi-env-secret")],
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"results": [{"toolCallId": "t1", "name": "order_status", "result": "Order 100234 is shipped."}]})
    );
}
