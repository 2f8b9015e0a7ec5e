//! Template rendering of upstream requests: caller values in the path, query, headers, body and
//! form of `runtime/tests/fixtures/hostile.mca`. Whatever the values, rendering must not panic,
//! the host and the fixed path must not change, a value stays inside its own path segment, no
//! header value carries a control character, the JSON body stays JSON, and the secret travels
//! only in the auth header.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mca_runtime::{CallContext, Config, Runtime};
use serde_json::{json, Map, Value};

const SECRET: &str = "fuzz-secret-token-0123456789";

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let text = include_str!("../../runtime/tests/fixtures/hostile.mca");
        let ir = mca_compiler::compile_one("hostile.mca", text)
            .ir
            .expect("fixture compiles");
        let config = Config {
            env: Some(HashMap::from([
                ("API_TOKEN".to_string(), SECRET.to_string()),
                (
                    "BASE".to_string(),
                    "https://forms.example.com/base".to_string(),
                ),
            ])),
            ..Config::default()
        };
        Runtime::new(ir, config).expect("runtime")
    })
}

fn check_headers(r: &mca_runtime::hooks::RenderedRequest, caller_typed_secret: bool) {
    for (name, value) in &r.headers {
        assert!(
            !value.iter().any(|b| *b < 0x20 && *b != b'\t' || *b == 0x7f),
            "control character in header {name}"
        );
        let secret_allowed = matches!(name.as_str(), "authorization" | "x-key");
        if !secret_allowed && !caller_typed_secret {
            assert!(
                !String::from_utf8_lossy(value).contains(SECRET),
                "secret in header {name}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let rt = runtime();
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\u{1}');
    let mut next = || fields.next().map(str::to_string);
    let (a, b, c, d, e) = (next(), next(), next(), next(), next());
    let call = CallContext {
        id: next(),
        from: next(),
    };
    let mut inputs = Map::new();
    for (k, v) in [("a", &a), ("b", &b), ("c", &c), ("d", &d), ("e", &e)] {
        if let Some(v) = v {
            inputs.insert(k.into(), Value::String(v.clone()));
        }
    }
    if let Ok(r) = rt.render_request("echo_path", Value::Object(inputs), call.clone()) {
        let url = url::Url::parse(&r.url).expect("rendered URL parses");
        assert_eq!(url.host_str(), Some("api.example.com"), "{}", r.url);
        assert_eq!(url.scheme(), "https");
        let segments: Vec<&str> = url.path_segments().expect("path").collect();
        assert_eq!(segments.len(), 4, "{}", r.url);
        assert_eq!(segments[0], "fixed");
        assert_eq!(segments[2], "tail");
        for s in [segments[1], segments[3]] {
            assert!(!s.is_empty() && s != "." && s != "..", "{}", r.url);
        }
        assert!(url.fragment().is_none());
        // (libFuzzer learns the secret from the comparisons below: a caller may type it.)
        let typed = text.contains(SECRET);
        assert!(typed || !r.url.contains(SECRET));
        check_headers(&r, typed);
        let body: Value = serde_json::from_slice(r.body.as_deref().expect("body")).expect("JSON");
        assert_eq!(body["d"], json!(d));
    }
    // Typed inputs and a form body, decoded from the same bytes as JSON when they are JSON.
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        if let Ok(r) = rt.render_request("echo_form", v, call) {
            let url = url::Url::parse(&r.url).expect("rendered URL parses");
            assert_eq!(url.host_str(), Some("forms.example.com"));
            assert!(url.path().starts_with("/base/form/"), "{}", r.url);
            assert_eq!(url.path_segments().map(|s| s.count()), Some(3));
            check_headers(&r, text.contains(SECRET));
        }
    }
});
