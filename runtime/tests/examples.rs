//! The canonical examples, compiled by the real compiler: their own `test` blocks pass against
//! the stub, and `serve --demo` (runtime + demo upstream) answers them offline.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::{demo, Config};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn every_example_test_block_passes_offline() {
    let project = examples();
    let reports = mca_runtime::testing::run_all(&project).await;
    assert!(reports.len() >= 7, "found {} tests", reports.len());
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{} / {}: {:?}", r.action, r.test, r.failures))
        .collect();
    assert!(failed.is_empty(), "failed tests:\n{}", failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_expectation_is_reported_with_its_location() {
    let mut project = examples();
    let action = project
        .actions
        .iter_mut()
        .find(|a| a.name == "order_status")
        .unwrap();
    action.tests[0]
        .expectations
        .push(mca_compiler::ir::Expectation {
            location: mca_compiler::ir::Location {
                line: 99,
                column: 5,
            },
            kind: mca_compiler::ir::ExpectationKind::Say {
                text: "something else".into(),
            },
        });
    let report = mca_runtime::testing::run_test(action, &action.tests[0]).await;
    assert!(!report.passed());
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].location.line, 99);
    assert!(
        report.failures[0]
            .message
            .contains("Order 100234 is shipped."),
        "{}",
        report.failures[0].message
    );
}

async fn demo_server() -> (demo::DemoHandle, Running) {
    let (addr, handle) = demo::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let mut config = Config {
        env: Some(Default::default()),
        ..Config::default()
    };
    demo::configure(&mut config, addr);
    assert!(!config.allow_private);
    let server = start(examples(), config).await;
    (handle, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_answers_lookup_customer() {
    let (_demo, server) = demo_server().await;
    let (status, body) = call(
        &server,
        "lookup_customer",
        json!({"phone": "+4930123456"}),
        Some("demo-call"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(
        body["output"],
        json!({"found": true, "customer_id": "c-1042", "name": "Max Mustermann",
               "company": "Beispiel GmbH", "open_tickets": 1})
    );
    assert_eq!(body["say"], "Found Max Mustermann from Beispiel GmbH.");

    let (_, unknown) = call(
        &server,
        "lookup_customer",
        json!({"phone": "+4930999999"}),
        Some("demo-call"),
    )
    .await;
    assert_eq!(unknown["output"]["found"], false);
    assert_eq!(unknown["output"]["customer_id"], json!(null));
    // A sentence with a missing name would be broken: say is null.
    assert_eq!(unknown["say"], json!(null));
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_answers_order_status_through_the_routed_literal_host() {
    let (_demo, server) = demo_server().await;
    let (_, shipped) = call(
        &server,
        "order_status",
        json!({"order_number": "100234"}),
        None,
    )
    .await;
    assert_eq!(shipped["status"], "ok", "{shipped}");
    assert_eq!(
        shipped["output"],
        json!({"status": "shipped", "carrier": "DHL", "eta": "2026-11-24",
               "items": ["Router X2", "Power cable"]})
    );
    assert_eq!(shipped["say"], "Order 100234 is shipped.");
    let (_, missing) = call(
        &server,
        "order_status",
        json!({"order_number": "1/2"}),
        None,
    )
    .await;
    assert_eq!(missing["output"]["status"], "not_found");
    assert_eq!(
        missing["say"],
        "I couldn't find an order with that number. Could you read it to me again?"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_creates_tickets_and_the_write_invalidates_lookup_customer() {
    let (_demo, server) = demo_server().await;
    let (_, first) = call(
        &server,
        "lookup_customer",
        json!({"phone": "+4930123456"}),
        Some("c9"),
    )
    .await;
    assert_eq!(first["cached"], false);
    let (_, hit) = call(
        &server,
        "lookup_customer",
        json!({"phone": "+4930123456"}),
        Some("c9"),
    )
    .await;
    assert_eq!(hit["cached"], true);
    let (_, ticket) = call(
        &server,
        "create_ticket",
        json!({"customer_id": "c-1042", "summary": "Router offline"}),
        Some("c9"),
    )
    .await;
    assert_eq!(ticket["status"], "ok", "{ticket}");
    let id = ticket["output"]["ticket_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("T-"), "{id}");
    assert_eq!(ticket["say"], format!("Your ticket number is {id}."));
    // Same call, same customer: the idempotency key gives the same ticket.
    let (_, again) = call(
        &server,
        "create_ticket",
        json!({"customer_id": "c-1042", "summary": "Router offline"}),
        Some("c9"),
    )
    .await;
    assert_eq!(again["output"]["ticket_id"], id.as_str());
    let (_, after) = call(
        &server,
        "lookup_customer",
        json!({"phone": "+4930123456"}),
        Some("c9"),
    )
    .await;
    assert_eq!(after["cached"], false, "invalidated by create_ticket");
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_against_a_hanging_upstream_fall_back_within_timeout_plus_50ms() {
    // lookup_customer has `timeout 2s`: the whole answer, retries included, within 2.05 s.
    let stub = Stub::start(vec![Reply::Hang]).await.unwrap();
    let mut config = Config {
        env: Some(Default::default()),
        allow_private: true,
        ..Config::default()
    };
    config.set_env("CRM_BASE_URL", stub.url());
    config.set_env("HELPDESK_URL", stub.url());
    for s in [
        "CRM_TOKEN",
        "HELPDESK_USER",
        "HELPDESK_TOKEN",
        "SHOP_API_KEY",
    ] {
        config.set_env(s, "x");
    }
    let server = start(examples(), config).await;
    let t = Instant::now();
    let (_, body) = call(
        &server,
        "lookup_customer",
        json!({"phone": "+4930123456"}),
        None,
    )
    .await;
    let took = t.elapsed();
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "timeout");
    assert_eq!(
        body["output"],
        json!({"found": false, "open_tickets": 0,
        "customer_id": null, "name": null, "company": null})
    );
    assert_eq!(body["say"], "I can't reach our customer records right now.");
    assert!(
        took >= Duration::from_secs(2) && took < ms(2050),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_mode_for_a_whole_project_fills_missing_variables_and_keeps_requests_local() {
    let (addr, _handle) = demo::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let mut other = action("elsewhere");
    other.env = vec!["BASE".into()];
    other.secrets = vec!["OTHER_KEY".into()];
    other.req().auth = Some(mca_compiler::ir::Auth::Bearer {
        token: secret_ref("OTHER_KEY"),
    });
    let mut project = examples();
    project.actions.push(other);
    let mut config = Config {
        env: Some(Default::default()),
        ..Config::default()
    };
    demo::configure_project(&mut config, addr, &project);
    let server = start(project, config).await;
    // The demo does not know this API: its 404 gives the fallback, without leaving the machine.
    let (_, body) = call(&server, "elsewhere", json!({"id": "1"}), None).await;
    assert_eq!(body["status"], "fallback");
    assert_eq!(body["reason"], "upstream_status");
    let (_, order) = call(
        &server,
        "order_status",
        json!({"order_number": "100234"}),
        None,
    )
    .await;
    assert_eq!(order["output"]["status"], "shipped");
}
