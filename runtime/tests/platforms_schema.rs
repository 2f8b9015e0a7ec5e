//! Tool definitions for each platform (`mca schema`, `GET /tools`): the shapes each platform
//! documents, derived from the canonical examples and from an action with `messages`.

mod common;
mod platforms_common;

use common::*;
use mca_compiler::ir::{DelayedMessage, Messages};
use mca_runtime::platforms::{tool_definitions, ToolFormat};
use mca_runtime::stub::{Reply, Stub};
use platforms_common::*;
use serde_json::{json, Value};

const BASE: &str = "https://mca.example.com/";

fn with_messages() -> mca_compiler::ir::Action {
    let mut a = with_timeout(weather(), 3000);
    a.messages = Messages {
        start: Some("One moment, I'm checking the weather.".into()),
        delayed: Some(DelayedMessage {
            after_ms: 1500,
            text: "Still checking, thanks for your patience.".into(),
        }),
        failed: Some("Sorry, the weather service isn't answering.".into()),
    };
    a
}

fn each_property(schema: &Value, f: &mut dyn FnMut(&str, &Value)) {
    if let Some(props) = schema["properties"].as_object() {
        for (k, v) in props {
            f(k, v);
            each_property(v, f);
            if v["items"].is_object() {
                f(&format!("{k}[]"), &v["items"]);
            }
        }
    }
}

#[test]
fn vapi_tools_carry_the_server_url_timeout_and_messages() {
    let tools = tool_definitions([with_messages()].iter(), ToolFormat::Vapi, BASE);
    assert_eq!(
        tools,
        json!([{
            "type": "function",
            "async": false,
            "function": {
                "name": "get_weather",
                "description": "Retrieves the current weather for a specified location",
                "parameters": {
                    "type": "object",
                    "properties": {"location": {"type": "string", "description": "City name."}},
                    "required": ["location"]
                }
            },
            "server": {"url": "https://mca.example.com/vapi", "timeoutSeconds": 4},
            "messages": [
                {"type": "request-start", "content": "One moment, I'm checking the weather."},
                {"type": "request-response-delayed", "content": "Still checking, thanks for your patience.", "timingMilliseconds": 1500},
                {"type": "request-failed", "content": "Sorry, the weather service isn't answering."}
            ]
        }])
    );
}

#[test]
fn retell_custom_functions_speak_during_execution() {
    let tools = tool_definitions(
        [with_messages(), weather()].iter(),
        ToolFormat::Retell,
        BASE,
    );
    let t = &tools[0];
    assert_eq!(t["type"], json!("custom"));
    assert_eq!(
        t["url"],
        json!("https://mca.example.com/retell/get_weather")
    );
    assert_eq!(t["method"], json!("POST"));
    assert_eq!(t["args_at_root"], json!(false));
    assert_eq!(t["speak_during_execution"], json!(true));
    assert_eq!(
        t["execution_message_description"],
        json!("One moment, I'm checking the weather.")
    );
    assert_eq!(t["timeout_ms"], json!(4000));
    assert_eq!(t["parameters"]["type"], json!("object"));
    assert_eq!(tools[1]["speak_during_execution"], json!(false));
    assert!(tools[1].get("execution_message_description").is_none());
}

#[test]
fn every_format_covers_every_canonical_example() {
    let project = examples();
    for format in ToolFormat::ALL {
        let tools = tool_definitions(project.actions.iter(), format, BASE);
        let list = match format {
            ToolFormat::Mcp => tools["tools"].clone(),
            _ => tools.clone(),
        };
        assert_eq!(
            list.as_array().map(Vec::len),
            Some(project.actions.len()),
            "{}",
            format.name()
        );
        let text = tools.to_string();
        assert!(!text.contains("secret"), "{}: {text}", format.name());
    }
}

#[test]
fn openai_strict_schemas_follow_the_strict_rules() {
    let project = examples();
    let tools = tool_definitions(project.actions.iter(), ToolFormat::OpenAi, BASE);
    for t in tools.as_array().unwrap() {
        assert_eq!(t["type"], json!("function"));
        assert_eq!(t["strict"], json!(true));
        let p = &t["parameters"];
        assert_eq!(p["additionalProperties"], json!(false), "{t}");
        let props: Vec<&String> = p["properties"].as_object().unwrap().keys().collect();
        let required: Vec<&str> = p["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            props.len(),
            required.len(),
            "strict: every property required: {t}"
        );
        each_property(p, &mut |name, s| {
            assert!(s.get("default").is_none(), "{name}: strict has no default");
            assert!(s.get("anyOf").is_none(), "{name}");
        });
    }
    // create_ticket's priority has a default: nullable enum.
    let ticket = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == json!("create_ticket"))
        .expect("create_ticket");
    let priority = &ticket["parameters"]["properties"]["priority"];
    assert_eq!(priority["type"], json!(["string", "null"]));
    assert_eq!(priority["enum"], json!(["low", "normal", "urgent", null]));
    assert!(priority["description"]
        .as_str()
        .unwrap()
        .contains("Default: \"normal\""));
    let chat = tool_definitions(project.actions.iter(), ToolFormat::OpenAiChat, BASE);
    assert_eq!(chat[0]["function"]["parameters"], tools[0]["parameters"]);
}

#[test]
fn elevenlabs_webhook_tools_have_a_described_minimal_body_schema() {
    let project = examples();
    let tools = tool_definitions(project.actions.iter(), ToolFormat::ElevenLabs, BASE);
    for t in tools.as_array().unwrap() {
        let c = &t["tool_config"];
        assert_eq!(c["type"], json!("webhook"));
        let name = c["name"].as_str().unwrap();
        assert_eq!(
            c["api_schema"]["url"],
            json!(format!("https://mca.example.com/actions/{name}"))
        );
        assert_eq!(c["api_schema"]["method"], json!("POST"));
        let body = &c["api_schema"]["request_body_schema"];
        assert_eq!(body["type"], json!("object"));
        each_property(body, &mut |prop, s| {
            assert!(
                s["description"].is_string(),
                "{name}.{prop} needs a description"
            );
            for key in s.as_object().unwrap().keys() {
                assert!(
                    [
                        "type",
                        "description",
                        "enum",
                        "items",
                        "properties",
                        "required"
                    ]
                    .contains(&key.as_str()),
                    "{name}.{prop}: {key}"
                );
            }
        });
    }
}

#[test]
fn mcp_tools_have_input_and_output_schemas() {
    let project = examples();
    let tools = tool_definitions(project.actions.iter(), ToolFormat::Mcp, BASE);
    for t in tools["tools"].as_array().unwrap() {
        assert_eq!(t["inputSchema"]["type"], json!("object"));
        assert_eq!(t["outputSchema"]["type"], json!("object"));
        assert!(t["description"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_tools_serves_every_format_and_refuses_unknown_ones() {
    let stub = Stub::start(vec![Reply::json(200, json!({"value": "x"}))])
        .await
        .unwrap();
    let mut cfg = config(&stub.url());
    cfg.token = Some("tok".into());
    let server = start(project(vec![with_messages()]), cfg).await;
    let get = |path: &str, auth: bool| {
        let mut r = server.client.get(server.url(path));
        if auth {
            r = r.header("authorization", "Bearer tok");
        }
        r.send()
    };
    assert_eq!(
        get("/tools?format=vapi", false).await.unwrap().status(),
        401
    );
    let r = get("/tools?format=vapi", true).await.unwrap();
    assert_eq!(r.status(), 200);
    let tools: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        tools[0]["server"]["url"],
        json!(format!("http://{}/vapi", server.addr))
    );
    let r = get(
        "/tools?format=retell&base_url=https%3A%2F%2Fvoice.example.org",
        true,
    )
    .await
    .unwrap();
    let tools: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        tools[0]["url"],
        json!("https://voice.example.org/retell/get_weather")
    );
    for f in ToolFormat::ALL {
        let r = get(&format!("/tools?format={}", f.name()), true)
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", f.name());
    }
    let r = get("/tools?format=bogus", true).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = get("/tools", true).await.unwrap();
    assert_eq!(r.status(), 400);
}
