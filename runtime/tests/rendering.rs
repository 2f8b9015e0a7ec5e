//! Values land in requests with the encoding of their place; unplaceable values never leave.

mod common;

use common::*;
use mca_compiler::ir::{Body, JsonTemplate, Namespace, Param};
use mca_runtime::stub::{Reply, Stub};
use serde_json::json;

/// Serves `a` against a stub upstream, with `env` set.
async fn serve(a: mca_compiler::ir::Action, env: &[(&str, &str)]) -> (Stub, Running) {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "v"}))])
        .await
        .unwrap();
    let mut cfg = config(&stub.url());
    for (name, value) in env {
        cfg.set_env(*name, *value);
    }
    let server = start(project(vec![a]), cfg).await;
    (stub, server)
}

async fn run(a: mca_compiler::ir::Action, input: serde_json::Value) -> (Stub, serde_json::Value) {
    let (stub, server) = serve(a, &[]).await;
    let (_, body) = call(&server, "a", input, None).await;
    (stub, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slash_in_a_path_input_never_adds_a_segment() {
    let mut a = action("a");
    a.req().url = url("/api/orders/{input.id}/items");
    let (stub, body) = run(a, json!({"id": "100/234?x=1#f"})).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(
        stub.requests()[0].path,
        "/api/orders/100%2F234%3Fx=1%23f/items"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dot_dot_path_input_is_refused_before_any_request() {
    let mut a = action("a");
    a.req().url = url("/api/orders/{input.id}");
    let (stub, body) = run(a, json!({"id": ".."})).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "invalid_request");
    assert_eq!(stub.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn query_values_are_query_encoded() {
    let mut a = action("a");
    a.req().query.push(Param {
        name: "q".into(),
        value: input_ref("id"),
    });
    let (stub, _) = run(a, json!({"id": "a b&c=d+e/é"})).await;
    assert_eq!(
        stub.requests()[0].path,
        "/thing?q=a%20b%26c%3Dd%2Be%2F%C3%A9"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_value_with_a_line_break_is_refused_before_any_request() {
    let mut a = action("a");
    a.req().headers.push(Param {
        name: "X-Note".into(),
        value: input_ref("id"),
    });
    let (stub, body) = run(a, json!({"id": "ok\r\nX-Injected: 1"})).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "invalid_request");
    assert_eq!(stub.connections(), 0);
}

/// A POST whose form body has one field, `id`, from the input of that name.
fn form_action() -> mca_compiler::ir::Action {
    let mut a = post_action("a");
    a.req().body = Some(Body::Form {
        fields: vec![Param {
            name: "id".into(),
            value: input_ref("id"),
        }],
    });
    a
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_header_replaces_the_one_a_form_body_sets() {
    let mut a = form_action();
    a.req().headers.push(Param {
        name: "Content-Type".into(),
        value: mca_compiler::ir::Expr::Literal(json!(
            "application/x-www-form-urlencoded; charset=utf-8"
        )),
    });
    let (stub, body) = run(a, json!({"id": "1"})).await;
    assert_eq!(body["status"], "ok", "{body}");
    let req = &stub.requests()[0];
    assert_eq!(
        req.header_all("content-type"),
        ["application/x-www-form-urlencoded; charset=utf-8"]
    );
    assert_eq!(&req.body[..], b"id=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_bodies_are_built_as_values_never_spliced() {
    let mut a = post_action("a");
    a.inputs.push(mca_compiler::ir::Input {
        name: "n".into(),
        ty: mca_compiler::ir::Ty::Int,
        default: Some(json!(3)),
        description: None,
    });
    a.req().body = Some(Body::Json {
        template: JsonTemplate::Object(vec![
            ("id".into(), JsonTemplate::Ref(r(Namespace::Input, "id"))),
            ("n".into(), JsonTemplate::Ref(r(Namespace::Input, "n"))),
            (
                "label".into(),
                JsonTemplate::Template(template(vec![
                    text("#"),
                    mca_compiler::ir::Part::Ref(r(Namespace::Input, "id")),
                ])),
            ),
            ("fixed".into(), JsonTemplate::Literal(json!([1, true]))),
        ]),
    });
    let evil = "x\", \"admin\": true, \"y\": \"";
    let (stub, body) = run(a, json!({ "id": evil })).await;
    assert_eq!(body["status"], "ok");
    let req = &stub.requests()[0];
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json().unwrap(),
        json!({"id": evil, "n": 3, "label": format!("#{evil}"), "fixed": [1, true]})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn form_bodies_are_form_encoded() {
    let a = form_action();
    let (stub, _) = run(a, json!({"id": "a&b=c"})).await;
    let req = &stub.requests()[0];
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(&req.body[..], b"id=a%26b%3Dc");
}

/// Headers that read only literals, `env` and `secret` values are rendered once at start-up;
/// every call must still send them, beside the headers rendered per call.
#[tokio::test(flavor = "multi_thread")]
async fn headers_of_env_secrets_and_literals_are_sent_on_every_call_beside_per_call_ones() {
    let mut a = action("a");
    a.env.push("TENANT".into());
    a.secrets = vec!["KEY".into()];
    let env = mca_compiler::ir::Expr::Template(template(vec![
        text("t-"),
        mca_compiler::ir::Part::Ref(r(Namespace::Env, "TENANT")),
    ]));
    for (name, value) in [
        ("X-Tenant", env),
        ("X-Key", secret_ref("KEY")),
        ("X-Version", mca_compiler::ir::Expr::Literal(json!(7))),
        ("X-List", mca_compiler::ir::Expr::Literal(json!(["a", 2]))),
        ("X-Id", input_ref("id")),
    ] {
        a.req().headers.push(Param {
            name: name.into(),
            value,
        });
    }
    let (stub, server) = serve(a, &[("TENANT", "acme"), ("KEY", "k-123")]).await;
    for id in ["1", "2"] {
        let (_, body) = call(&server, "a", json!({"id": id}), None).await;
        assert_eq!(body["status"], "ok", "{body}");
    }
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2);
    for (req, id) in reqs.iter().zip(["1", "2"]) {
        assert_eq!(req.header("x-tenant"), Some("t-acme"));
        assert_eq!(req.header("x-key"), Some("k-123"));
        assert_eq!(req.header("x-version"), Some("7"));
        assert_eq!(req.header("x-list"), Some("a, 2"));
        assert_eq!(req.header("x-id"), Some(id));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_env_header_value_with_a_line_break_is_refused_on_every_call_before_any_request() {
    let mut a = action("a");
    a.env.push("TENANT".into());
    a.req().headers.push(Param {
        name: "X-Tenant".into(),
        value: mca_compiler::ir::Expr::Template(template(vec![mca_compiler::ir::Part::Ref(r(
            Namespace::Env,
            "TENANT",
        ))])),
    });
    let (stub, server) = serve(a, &[("TENANT", "acme\r\nX-Injected: 1")]).await;
    for _ in 0..2 {
        let (_, body) = call(&server, "a", json!({"id": "1"}), None).await;
        assert_eq!(body["status"], "fallback", "{body}");
        assert_eq!(body["reason"], "invalid_request");
    }
    assert_eq!(stub.connections(), 0);
}
