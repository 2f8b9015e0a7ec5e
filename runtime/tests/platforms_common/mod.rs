//! Helpers shared by the `platforms_*` tests: a weather action like the platforms' documented
//! examples, raw HTTP posts, fixtures.
#![allow(dead_code)]

use mca_compiler::ir::{Action, Expr, Namespace, Param, Part};
use serde_json::Value;

use crate::common::*;

/// `get_weather(location)`: `GET {BASE}/thing` sending `call.id` and `call.from` as headers;
/// says "Weather in {input.location}: {output.value}.".
pub fn weather() -> Action {
    let mut a = action("get_weather");
    a.description = "Retrieves the current weather for a specified location".into();
    a.inputs[0].name = "location".into();
    a.inputs[0].description = Some("City name".into());
    a.req().headers = vec![
        Param {
            name: "X-Upstream-Call-Id".into(),
            value: Expr::Ref(r(Namespace::Call, "id")),
        },
        Param {
            name: "X-Upstream-Call-From".into(),
            value: Expr::Ref(r(Namespace::Call, "from")),
        },
    ];
    a.say = vec![mca_compiler::ir::Say {
        when: None,
        text: template(vec![
            text("Weather in "),
            Part::Ref(r(Namespace::Input, "location")),
            text(": "),
            Part::Ref(r(Namespace::Output, "value")),
            text("."),
        ]),
    }];
    a
}

pub fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/platforms")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// POSTs raw bytes with headers; status and JSON (null when the body is not JSON).
pub async fn post(
    server: &Running,
    path: &str,
    body: impl Into<Vec<u8>>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = server
        .client
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body.into());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}
