//! Actions with steps, compiled from `.mca` source by the real compiler and served over real
//! HTTP against stub upstreams on loopback: chains and concurrency of live steps, the shared
//! deadline, conditions, step fallbacks and `on` blocks, deferred writes recorded in the store
//! and delivered by the worker, follow-ups when a call ends, and refused input.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use mca_compiler::ir::{self, Reason};
use mca_runtime::outbox::{JobKind, JobRecord, JobState, Outbox};
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::{CallContext, Config, Runtime, Status};
use serde_json::{json, Value};

/// Compiles one `.mca` file; panics with the diagnostics when it has errors.
fn compile(text: &str) -> ir::Project {
    let compiled = mca_compiler::compile(&[mca_compiler::Source::new("steps_test.mca", text)]);
    match compiled.ir {
        Some(project) => project,
        None => panic!(
            "the test source does not compile: {:#?}",
            compiled.diagnostics
        ),
    }
}

/// Loopback upstreams named by `env`, private addresses allowed, the store at `store`.
fn config_with(env: &[(&str, String)], store: Option<PathBuf>) -> Config {
    Config {
        allow_private: true,
        env: Some(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ),
        store,
        ..Config::default()
    }
}

async fn stub(replies: Vec<Reply>) -> Stub {
    Stub::start(replies).await.expect("stub starts")
}

/// Polls `cond` until it holds, for at most 15 s (the worker's first retry is about 1 s away).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every job of the store, read through a second, read-only handle (as `mca writes` does).
fn jobs(store: &Path) -> Vec<JobRecord> {
    Outbox::open_read_only(store)
        .expect("the store exists")
        .list(None, 100)
        .expect("the store lists its jobs")
}

/// The one job of the store, once it is in `state`.
async fn job_in_state(store: &Path, state: JobState) -> JobRecord {
    let mut found = None;
    eventually(&format!("the job is {state}"), || {
        let all = jobs(store);
        assert!(all.len() <= 1, "{all:#?}");
        found = all.into_iter().find(|j| j.state == state);
        found.is_some()
    })
    .await;
    found.unwrap()
}

/// Calls an action over HTTP while sampling how many requests the stubs answer at once;
/// returns the answer and the most requests seen in flight together.
async fn call_sampling_in_flight(
    server: &Running,
    action: &str,
    body: Value,
    stubs: &[&Stub],
) -> ((u16, Value), usize) {
    let client = server.client.clone();
    let url = server.url(&format!("/actions/{action}"));
    let request = tokio::spawn(async move {
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    });
    let mut most = 0;
    while !request.is_finished() {
        most = most.max(stubs.iter().map(|s| s.in_flight()).sum());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (request.await.expect("request task"), most)
}

async fn get_text(server: &Running, path: &str) -> (u16, String) {
    let resp = server
        .client
        .get(server.url(path))
        .send()
        .await
        .expect("request");
    (
        resp.status().as_u16(),
        resp.text().await.expect("text body"),
    )
}

/// `GET /metrics` once it has every line of `lines` (the worker's counters move just after
/// the store records a job's state); panics after 15 s.
async fn metrics_with(server: &Running, lines: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, text) = get_text(server, "/metrics").await;
        assert_eq!(status, 200, "{text}");
        if lines.iter().all(|want| text.lines().any(|l| l == *want)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics lacks one of {lines:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post_json(server: &Running, path: &str, body: Value) -> (u16, Value) {
    let resp = server
        .client
        .post(server.url(path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

// ---------------------------------------------------------------------------------------------
// Live steps

const CONTACT_DEALS: &str = r#"
action contact_deals {
  description "Find the caller's contact, then count their open deals."

  input phone: string(phone) "Caller's phone number"

  step contact {
    request GET "{env.CRM}/contacts" {
      query "phone" = input.phone
      timeout 2s
    }
    output {
      id: string? = $.results[0].id
      name: string? = $.results[0].name
    }
    on 404 {
      name = "stranger"
    }
  }

  step deals when step.contact.id != null {
    request GET "{env.DEALS}/contacts/{step.contact.id}/deals" {
      query "status" = "open"
      timeout 2s
    }
    output {
      count: int = count($.results[*])
    }
  }

  timeout 4s

  output {
    found: bool = step.contact.id != null
    name: string? = step.contact.name
    open_deals: int = step.deals.count ?? 0
    checked_deals: bool? = true when step.contact.id != null
  }

  say "{output.name} has {output.open_deals} open deals." when output.found and output.open_deals > 0
  say "Hello {output.name}, you have no open deals." when output.found
  say "Hello {output.name}, I couldn't find you." when output.name != null
  say "I couldn't find you."

  fallback {
    found = false
    open_deals = 0
    say "I can't reach our records."
  }
}
"#;

async fn contact_deals(contact: Vec<Reply>, deals: Vec<Reply>) -> (Stub, Stub, Running) {
    let contact = stub(contact).await;
    let deals = stub(deals).await;
    let cfg = config_with(&[("CRM", contact.url()), ("DEALS", deals.url())], None);
    let server = start(compile(CONTACT_DEALS), cfg).await;
    (contact, deals, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chained_step_sends_the_first_steps_value_percent_encoded_in_its_path() {
    let (contact, deals, server) = contact_deals(
        vec![Reply::json(
            200,
            json!({"results": [{"id": "c 1/x", "name": "Max"}]}),
        )],
        vec![Reply::json(
            200,
            json!({"results": [{"title": "Router"}, {"title": "Cables"}]}),
        )],
    )
    .await;
    let (status, body) = call(
        &server,
        "contact_deals",
        json!({"phone": "+4930123456"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("ok"), "{body}");
    assert_eq!(
        body["output"],
        json!({"found": true, "name": "Max", "open_deals": 2, "checked_deals": true})
    );
    assert_eq!(body["say"], json!("Max has 2 open deals."));

    let first = contact.requests();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].path, "/contacts?phone=%2B4930123456");
    let second = deals.requests();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].method, "GET");
    assert_eq!(
        second[0].path, "/contacts/c%201%2Fx/deals?status=open",
        "the contact's id fills one path segment, percent-encoded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_say_whose_condition_holds_is_spoken() {
    let (_contact, _deals, server) = contact_deals(
        vec![Reply::json(
            200,
            json!({"results": [{"id": "c1", "name": "Max"}]}),
        )],
        vec![Reply::json(200, json!({"results": []}))],
    )
    .await;
    let (status, body) = call(
        &server,
        "contact_deals",
        json!({"phone": "+4930123456"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["output"],
        json!({"found": true, "name": "Max", "open_deals": 0, "checked_deals": true})
    );
    assert_eq!(
        body["say"],
        json!("Hello Max, you have no open deals."),
        "the first case (open deals > 0) does not hold; the second does"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dependent_steps_are_never_in_flight_together() {
    let (contact, deals, server) = contact_deals(
        vec![Reply::json(200, json!({"results": [{"id": "c1", "name": "Max"}]})).delayed(ms(300))],
        vec![Reply::json(200, json!({"results": [{"title": "Router"}]})).delayed(ms(300))],
    )
    .await;
    let ((status, body), most) = call_sampling_in_flight(
        &server,
        "contact_deals",
        json!({"phone": "+4930123456"}),
        &[&contact, &deals],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"]["open_deals"], json!(1), "{body}");
    assert_eq!(most, 1, "deals waits for contact");
    assert_eq!((contact.request_count(), deals.request_count()), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_whose_condition_is_false_is_not_sent_and_its_values_are_null() {
    let (contact, deals, server) = contact_deals(
        vec![Reply::json(200, json!({"results": []}))],
        vec![Reply::json(200, json!({"results": [{"title": "never"}]}))],
    )
    .await;
    let (status, body) = call(
        &server,
        "contact_deals",
        json!({"phone": "+4930123456"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("ok"), "{body}");
    assert_eq!(
        body["output"],
        json!({"found": false, "name": null, "open_deals": 0, "checked_deals": null}),
        "the skipped step's count is null, so `?? 0` applies; the output's `when` nulls it"
    );
    assert_eq!(body["say"], json!("I couldn't find you."));
    assert_eq!(contact.request_count(), 1);
    assert_eq!(deals.request_count(), 0, "the skipped step sent nothing");

    // Through the runtime: the step's values are recorded as nulls, not missing.
    let runtime = Runtime::new(
        compile(CONTACT_DEALS),
        config_with(&[("CRM", contact.url()), ("DEALS", deals.url())], None),
    )
    .expect("runtime starts");
    let answer = runtime
        .execute(
            "contact_deals",
            json!({"phone": "+4930123456"}),
            CallContext::default(),
        )
        .await;
    let answer = answer.answer().expect("an answer");
    assert_eq!(answer.status, Status::Ok);
    assert_eq!(answer.output["open_deals"], json!(0));
    assert_eq!(deals.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_404_in_a_step_assigns_its_values_and_leaves_the_others_null() {
    let (contact, deals, server) = contact_deals(
        vec![Reply::json(404, json!({"error": "not found"}))],
        vec![Reply::json(200, json!({"results": []}))],
    )
    .await;
    let (status, body) = call(
        &server,
        "contact_deals",
        json!({"phone": "+4930123456"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["status"],
        json!("ok"),
        "an `on` block is an answer: {body}"
    );
    assert_eq!(
        body["output"],
        json!({"found": false, "name": "stranger", "open_deals": 0, "checked_deals": null})
    );
    assert_eq!(body["say"], json!("Hello stranger, I couldn't find you."));
    assert_eq!(contact.request_count(), 1);
    assert_eq!(
        deals.request_count(),
        0,
        "`id` was not assigned, so it is null and deals is skipped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chained_step_failing_without_fallback_answers_the_action_fallback_naming_it() {
    let (contact, deals, _server) = contact_deals(
        vec![Reply::json(
            200,
            json!({"results": [{"id": "c1", "name": "Max"}]}),
        )],
        vec![Reply::status(503)],
    )
    .await;
    let runtime = Runtime::new(
        compile(CONTACT_DEALS),
        config_with(&[("CRM", contact.url()), ("DEALS", deals.url())], None),
    )
    .expect("runtime starts");
    let response = runtime
        .execute(
            "contact_deals",
            json!({"phone": "+4930123456"}),
            CallContext::default(),
        )
        .await;
    let answer = response.answer().expect("a fallback answer");
    assert_eq!(answer.status, Status::Fallback);
    assert_eq!(answer.reason, Some(Reason::UpstreamStatus));
    assert_eq!(answer.detail.upstream_status, Some(503));
    let message = answer.detail.message.as_deref().unwrap_or("");
    assert!(message.contains("step `deals`"), "{message}");
    assert_eq!(answer.say.as_deref(), Some("I can't reach our records."));
    assert_eq!(answer.output["found"], json!(false));
    assert_eq!(answer.output["open_deals"], json!(0));
}

const STEP_FALLBACKS: &str = r#"
action profile {
  description "A customer's profile and, if the loyalty service answers, their points."

  input id: string "Customer id"

  step customer {
    request GET "{env.CUSTOMERS}/customers/{input.id}" {
      timeout 2s
    }
    output {
      name: string = $.name
    }
  }

  step loyalty {
    request GET "{env.LOYALTY}/points/{input.id}" {
      timeout 2s
    }
    output {
      points: int = $.points
      tier: string? = $.tier
    }
    fallback {
      points = 0
    }
  }

  timeout 3s

  output {
    name: string = step.customer.name
    points: int = step.loyalty.points ?? 0
    tier: string = step.loyalty.tier ?? "unknown"
  }

  say "{output.name} has {output.points} points."

  fallback {
    name = "unknown"
    points = 0
    tier = "unknown"
    say "I can't see your profile right now."
  }
}

action profile_strict {
  description "The same without any fallback."

  input id: string "Customer id"

  step customer {
    request GET "{env.CUSTOMERS}/customers/{input.id}" {
      timeout 2s
    }
    output {
      name: string = $.name
    }
  }

  timeout 3s

  output {
    name: string = step.customer.name
  }
}
"#;

async fn profile(customers: Vec<Reply>, loyalty: Vec<Reply>) -> (Stub, Stub, Running) {
    let customers = stub(customers).await;
    let loyalty = stub(loyalty).await;
    let cfg = config_with(
        &[("CUSTOMERS", customers.url()), ("LOYALTY", loyalty.url())],
        None,
    );
    let server = start(compile(STEP_FALLBACKS), cfg).await;
    (customers, loyalty, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_with_its_own_fallback_lets_the_action_answer_ok_with_those_values() {
    let (customers, loyalty, server) = profile(
        vec![Reply::json(200, json!({"name": "Lena"}))],
        vec![Reply::status(500)],
    )
    .await;
    let (status, body) = call(&server, "profile", json!({"id": "42"}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("ok"), "{body}");
    assert_eq!(
        body["output"],
        json!({"name": "Lena", "points": 0, "tier": "unknown"}),
        "the step fallback gives points = 0; tier is unassigned, hence null, hence `?? \"unknown\"`"
    );
    assert_eq!(body["say"], json!("Lena has 0 points."));
    assert_eq!(customers.request_count(), 1);
    assert!(loyalty.request_count() >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_whose_mapping_fails_also_takes_its_own_fallback() {
    let (_customers, _loyalty, server) = profile(
        vec![Reply::json(200, json!({"name": "Lena"}))],
        vec![Reply::json(200, json!({"points": "many"}))],
    )
    .await;
    let (status, body) = call(&server, "profile", json!({"id": "42"}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("ok"), "{body}");
    assert_eq!(body["output"]["points"], json!(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_without_fallback_answers_the_action_fallback_with_its_reason() {
    let (_customers, _loyalty, server) = profile(
        vec![Reply::json(200, json!({"nom": "Lena"}))],
        vec![Reply::json(200, json!({"points": 7, "tier": "gold"}))],
    )
    .await;
    let (status, body) = call(&server, "profile", json!({"id": "42"}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("fallback"), "{body}");
    assert_eq!(body["reason"], json!("mapping"));
    assert_eq!(
        body["output"],
        json!({"name": "unknown", "points": 0, "tier": "unknown"})
    );
    assert_eq!(body["say"], json!("I can't see your profile right now."));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_in_an_action_without_fallback_is_an_error_naming_the_step() {
    let (customers, _loyalty, server) = profile(vec![Reply::status(503)], vec![]).await;
    let (status, body) = call(&server, "profile_strict", json!({"id": "42"}), None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], json!("upstream_status"), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("step `customer`"), "{message}");
    assert!(customers.request_count() >= 1);
}

const TWO_LOOKUPS: &str = r#"
action two_lookups {
  description "Weather and traffic for a city, looked up at the same time."

  input city: string "City"

  step weather {
    request GET "{env.WEATHER}/weather/{input.city}" {
      timeout 4s
    }
    output {
      sky: string = $.value
    }
  }

  step traffic {
    request GET "{env.TRAFFIC}/traffic/{input.city}" {
      timeout 4s
    }
    output {
      jams: string = $.value
    }
  }

  timeout ACTION_TIMEOUT

  output {
    sky: string = step.weather.sky
    jams: string = step.traffic.jams
  }

  say "{output.sky} with {output.jams} traffic."

  fallback {
    sky = "unknown"
    jams = "unknown"
    say "I can't tell right now."
  }
}
"#;

fn two_lookups(timeout: &str) -> ir::Project {
    compile(&TWO_LOOKUPS.replace("ACTION_TIMEOUT", timeout))
}

#[tokio::test(flavor = "multi_thread")]
async fn independent_steps_are_in_flight_at_the_same_time() {
    let weather = stub(vec![
        Reply::json(200, json!({"value": "Sunny"})).delayed(ms(1500))
    ])
    .await;
    let traffic = stub(vec![
        Reply::json(200, json!({"value": "light"})).delayed(ms(1500))
    ])
    .await;
    let cfg = config_with(
        &[("WEATHER", weather.url()), ("TRAFFIC", traffic.url())],
        None,
    );
    let server = start(two_lookups("5s"), cfg).await;
    let ((status, body), most) = call_sampling_in_flight(
        &server,
        "two_lookups",
        json!({"city": "Bern"}),
        &[&weather, &traffic],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("ok"), "{body}");
    assert_eq!(body["say"], json!("Sunny with light traffic."));
    assert_eq!(
        most, 2,
        "both requests were being answered at the same moment"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_step_makes_the_action_answer_its_fallback_with_reason_timeout() {
    let weather = stub(vec![Reply::json(200, json!({"value": "Sunny"}))]).await;
    let traffic = stub(vec![
        Reply::json(200, json!({"value": "light"})).delayed(Duration::from_secs(8))
    ])
    .await;
    let cfg = config_with(
        &[("WEATHER", weather.url()), ("TRAFFIC", traffic.url())],
        None,
    );
    let server = start(two_lookups("1s"), cfg).await;
    let started = Instant::now();
    let (status, body) = call(&server, "two_lookups", json!({"city": "Bern"}), None).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("fallback"), "{body}");
    assert_eq!(body["reason"], json!("timeout"));
    assert_eq!(body["say"], json!("I can't tell right now."));
    // Loose: the step's own timeout (4 s) is longer than the action's (1 s); the action's
    // deadline wins.
    assert!(
        took < Duration::from_secs(3),
        "answered after {took:?}, the action's timeout is 1 s"
    );
    // The slow request is abandoned, not left running.
    eventually("the slow request is dropped", || traffic.in_flight() == 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_reaches_no_step_upstream() {
    let (contact, deals, server) = contact_deals(
        vec![Reply::json(200, json!({"results": [{"id": "c1"}]}))],
        vec![Reply::json(200, json!({"results": []}))],
    )
    .await;
    for bad in [
        json!({"phone": 4930123456u64}),
        json!({"phone": "not a phone"}),
        json!({}),
    ] {
        let (status, body) = call(&server, "contact_deals", bad.clone(), None).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["error"]["code"], json!("invalid_input"), "{body}");
    }
    assert_eq!(contact.request_count(), 0);
    assert_eq!(deals.request_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Deferred writes

const TICKET_NOTIFY: &str = r#"
action ticket_notify {
  description "Open a ticket, then tell the team afterwards."

  input summary: string "The problem"
  input notify: bool = true "Tell the team"

  step ticket {
    request POST "{env.TICKETS}/tickets" {
      idempotency_key "{call.id}-ticket"
      body { "subject": input.summary }
      timeout 2s
    }
    output {
      id: int = $.id
    }
  }

  step notify deferred within 1h when input.notify {
    request POST "{env.HOOK}/messages" {
      idempotency_key "{call.id}-notify"
      body { "text": "Ticket {output.ticket_id}: {input.summary}", "call": call.id, "ticket": step.ticket.id }
      timeout 2s
    }
  }

  timeout 3s

  output {
    ticket_id: int = step.ticket.id
  }

  say "Your ticket number is {output.ticket_id}."

  fallback {
    ticket_id = 0
    say "A colleague will open the ticket."
  }
}
"#;

struct Deferred {
    tickets: Stub,
    hook: Stub,
    server: Running,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

async fn ticket_notify(tickets: Vec<Reply>, hook: Vec<Reply>) -> Deferred {
    deferred(TICKET_NOTIFY, tickets, hook).await
}

/// Serves `source` (an action like ticket_notify) with a store and the two stub upstreams.
async fn deferred(source: &str, tickets: Vec<Reply>, hook: Vec<Reply>) -> Deferred {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store.sqlite");
    let tickets = stub(tickets).await;
    let hook = stub(hook).await;
    let cfg = config_with(
        &[("TICKETS", tickets.url()), ("HOOK", hook.url())],
        Some(store.clone()),
    );
    let server = start(compile(source), cfg).await;
    Deferred {
        tickets,
        hook,
        server,
        store,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deferred_write_is_recorded_before_the_answer_and_delivered_with_its_key() {
    // The hook answers slowly, so the job is certainly still pending when the answer arrives.
    let d = ticket_notify(
        vec![Reply::json(201, json!({"id": 4711}))],
        vec![Reply::json(200, json!({"ok": true})).delayed(ms(500))],
    )
    .await;
    let (status, body) = call(
        &d.server,
        "ticket_notify",
        json!({"summary": "Router offline"}),
        Some("call-7"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("ok"), "{body}");
    assert_eq!(body["output"], json!({"ticket_id": 4711}));
    assert_eq!(body["say"], json!("Your ticket number is 4711."));

    // Recorded when the answer was sent.
    let recorded = jobs(&d.store);
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    let job = &recorded[0];
    assert_eq!(job.kind, JobKind::Step);
    assert_eq!(job.action, "ticket_notify");
    assert_eq!(job.step.as_deref(), Some("notify"));
    assert_eq!(job.call_id.as_deref(), Some("call-7"));
    assert_eq!(job.idempotency_key, "call-7-notify");

    // Delivered by the server's worker.
    let delivered = job_in_state(&d.store, JobState::Delivered).await;
    assert_eq!(delivered.attempts, 1);
    let sent = d.hook.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].path, "/messages");
    assert_eq!(sent[0].header("idempotency-key"), Some("call-7-notify"));
    assert_eq!(
        sent[0].header_all("idempotency-key").len(),
        1,
        "one key header: {:?}",
        sent[0].headers
    );
    assert_eq!(
        sent[0].json(),
        Some(json!({"text": "Ticket 4711: Router offline", "call": "call-7", "ticket": 4711}))
    );
    assert_eq!(d.tickets.request_count(), 1);

    let metrics = metrics_with(
        &d.server,
        &[
            "mca_deferred_jobs{state=\"pending\"} 0",
            "mca_deferred_jobs{state=\"delivered\"} 1",
            "mca_deferred_jobs{state=\"failed\"} 0",
            "mca_deferred_attempts_total 1",
            "mca_deferred_delivered_total 1",
            "mca_deferred_failed_total 0",
        ],
    )
    .await;
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deferred_write_answered_503_is_retried_with_the_same_key_then_delivered() {
    let d = ticket_notify(
        vec![Reply::json(201, json!({"id": 12}))],
        vec![Reply::status(503), Reply::json(200, json!({"ok": true}))],
    )
    .await;
    let (status, body) = call(
        &d.server,
        "ticket_notify",
        json!({"summary": "No dial tone"}),
        Some("call-8"),
    )
    .await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    let delivered = job_in_state(&d.store, JobState::Delivered).await;
    assert_eq!(delivered.attempts, 2);
    let sent = d.hook.requests();
    assert_eq!(sent.len(), 2);
    for r in &sent {
        assert_eq!(r.header("idempotency-key"), Some("call-8-notify"));
        assert_eq!(
            r.json(),
            Some(json!({"text": "Ticket 12: No dial tone", "call": "call-8", "ticket": 12}))
        );
    }
}

/// A deferred step with `retry` retries within one delivery: the retry renders the request
/// again and must carry the key recorded with the write, once, and the same body.
#[tokio::test(flavor = "multi_thread")]
async fn a_deferred_write_retried_within_one_delivery_repeats_its_key_and_body() {
    let source = TICKET_NOTIFY.replace(
        r#"idempotency_key "{call.id}-notify""#,
        "idempotency_key \"{call.id}-notify\"\n      retry 1 backoff 10ms",
    );
    assert_ne!(source, TICKET_NOTIFY);
    let d = deferred(
        &source,
        vec![Reply::json(201, json!({"id": 14}))],
        vec![Reply::status(503), Reply::json(200, json!({"ok": true}))],
    )
    .await;
    let (status, body) = call(
        &d.server,
        "ticket_notify",
        json!({"summary": "Fax down"}),
        Some("call-9"),
    )
    .await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    let delivered = job_in_state(&d.store, JobState::Delivered).await;
    assert_eq!(delivered.attempts, 1, "one delivery, retried inside it");
    assert_eq!(delivered.idempotency_key, "call-9-notify");
    let sent = d.hook.requests();
    assert_eq!(sent.len(), 2);
    for r in &sent {
        assert_eq!(
            r.header_all("idempotency-key"),
            [delivered.idempotency_key.as_str()]
        );
        assert_eq!(
            r.json(),
            Some(json!({"text": "Ticket 14: Fax down", "call": "call-9", "ticket": 14}))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deferred_write_refused_with_400_ends_failed_without_retry() {
    let d = ticket_notify(
        vec![Reply::json(201, json!({"id": 13}))],
        vec![Reply::json(400, json!({"error": "bad channel"}))],
    )
    .await;
    let (status, body) = call(
        &d.server,
        "ticket_notify",
        json!({"summary": "Slow line"}),
        Some("call-9"),
    )
    .await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    let failed = job_in_state(&d.store, JobState::Failed).await;
    assert_eq!(failed.attempts, 1);
    let reason = failed.last_error.unwrap_or_default();
    assert!(reason.contains("400"), "{reason}");
    assert_eq!(d.hook.request_count(), 1);
    metrics_with(
        &d.server,
        &[
            "mca_deferred_jobs{state=\"failed\"} 1",
            "mca_deferred_failed_total 1",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fallback_answer_records_no_deferred_write() {
    let d = ticket_notify(vec![Reply::status(503)], vec![Reply::status(200)]).await;
    let (status, body) = call(
        &d.server,
        "ticket_notify",
        json!({"summary": "Router offline"}),
        Some("call-10"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("fallback"), "{body}");
    assert!(
        jobs(&d.store).is_empty(),
        "nothing promised, nothing recorded"
    );
    assert_eq!(d.hook.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deferred_write_whose_condition_is_false_is_not_recorded() {
    let d = ticket_notify(
        vec![Reply::json(201, json!({"id": 14}))],
        vec![Reply::status(200)],
    )
    .await;
    let (status, body) = call(
        &d.server,
        "ticket_notify",
        json!({"summary": "Router offline", "notify": false}),
        Some("call-11"),
    )
    .await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    assert!(jobs(&d.store).is_empty());
    assert_eq!(d.hook.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_reaches_no_upstream_and_records_no_write() {
    let d = ticket_notify(
        vec![Reply::json(201, json!({"id": 15}))],
        vec![Reply::status(200)],
    )
    .await;
    let (status, body) = call(
        &d.server,
        "ticket_notify",
        json!({"summary": 7, "notify": true}),
        Some("call-12"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], json!("summary"), "{body}");
    assert_eq!(d.tickets.request_count(), 0);
    assert_eq!(d.hook.request_count(), 0);
    assert!(jobs(&d.store).is_empty());
}

#[test]
fn a_store_that_cannot_be_created_stops_the_runtime_from_starting() {
    let cfg = config_with(
        &[
            ("TICKETS", "http://127.0.0.1:9".into()),
            ("HOOK", "http://127.0.0.1:9".into()),
        ],
        Some(PathBuf::from("/proc/mca-no-such-dir/store.sqlite")),
    );
    let err = match Runtime::new(compile(TICKET_NOTIFY), cfg) {
        Ok(_) => panic!("the runtime started without a usable store"),
        Err(e) => e,
    };
    let text = format!("{err:?}");
    assert!(text.contains("store"), "{text}");
    assert!(text.contains("/proc/mca-no-such-dir"), "{text}");
}

#[test]
fn a_project_without_deferred_steps_or_follow_ups_needs_no_store() {
    let cfg = config_with(
        &[
            ("CRM", "http://127.0.0.1:9".into()),
            ("DEALS", "http://127.0.0.1:9".into()),
        ],
        Some(PathBuf::from("/proc/mca-no-such-dir/store.sqlite")),
    );
    let runtime = Runtime::new(compile(CONTACT_DEALS), cfg).expect("runtime starts");
    assert!(runtime.outbox().is_none());
}

// ---------------------------------------------------------------------------------------------
// Follow-ups

const FOLLOW_UP: &str = r#"
action post_summary {
  description "After a call ends, post its summary to the team."

  input summary: string? "Summary of the call"
  input ended_reason: string? "Why the call ended"

  follow_up when input.summary != null

  request POST "{env.HOOK}/summaries" {
    idempotency_key "{call.id}-summary"
    body { "text": input.summary, "call": call.id, "from": call.from, "reason": input.ended_reason }
    timeout 2s
  }

  output {
    ok: bool = $.ok
  }
}

action lookup {
  description "Look a thing up."

  input id: string "Thing id"

  request GET "{env.HOOK}/things/{input.id}" {
    timeout 2s
  }

  output {
    value: string = $.value
  }

  say "It is {output.value}."
}
"#;

async fn follow_up_server(hook: Vec<Reply>) -> (Stub, Running, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store.sqlite");
    let hook = stub(hook).await;
    let cfg = config_with(&[("HOOK", hook.url())], Some(store.clone()));
    let server = start(compile(FOLLOW_UP), cfg).await;
    (hook, server, store, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_runs_after_delete_calls_with_the_summary() {
    let (hook, server, store, _dir) =
        follow_up_server(vec![Reply::json(200, json!({"ok": true}))]).await;
    let resp = server
        .client
        .delete(server.url("/calls/call-21"))
        .header("content-type", "application/json")
        .body(
            json!({"summary": "Router fixed", "ended_reason": "customer-ended-call", "from": "+4930123456"})
                .to_string(),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 204);

    assert_one_summary_delivered(
        &store,
        &hook,
        "call-21",
        json!({
            "text": "Router fixed",
            "call": "call-21",
            "from": "+4930123456",
            "reason": "customer-ended-call"
        }),
    )
    .await;
}

/// The store holds the call's follow-up, delivered: the summary hook got exactly one
/// `POST /summaries` with the call's idempotency key and this body.
async fn assert_one_summary_delivered(store: &Path, hook: &Stub, call: &str, body: Value) {
    let job = job_in_state(store, JobState::Delivered).await;
    assert_eq!(job.kind, JobKind::FollowUp);
    assert_eq!(job.action, "post_summary");
    assert_eq!(job.call_id.as_deref(), Some(call));
    let sent = hook.requests();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].path, "/summaries");
    let key = format!("{call}-summary");
    assert_eq!(sent[0].header("idempotency-key"), Some(key.as_str()));
    assert_eq!(sent[0].json(), Some(body));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_runs_after_a_vapi_end_of_call_report() {
    let (hook, server, store, _dir) =
        follow_up_server(vec![Reply::json(200, json!({"ok": true}))]).await;
    let report = json!({"message": {
        "type": "end-of-call-report",
        "endedReason": "customer-ended-call",
        "call": {"id": "call-v1"},
        "customer": {"number": "+4940555000"},
        "analysis": {"summary": "Caller asked about opening hours."},
        "artifact": {"transcript": "AI: Hello ..."}
    }});
    let (status, body) = post_json(&server, "/vapi", report).await;
    assert_eq!((status, body), (200, json!({})));

    assert_one_summary_delivered(
        &store,
        &hook,
        "call-v1",
        json!({
            "text": "Caller asked about opening hours.",
            "call": "call-v1",
            "from": "+4940555000",
            "reason": "customer-ended-call"
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_whose_condition_is_false_is_not_recorded() {
    let (hook, server, store, _dir) =
        follow_up_server(vec![Reply::json(200, json!({"ok": true}))]).await;
    // No body: no summary.
    let resp = server
        .client
        .delete(server.url("/calls/call-22"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 204);
    assert!(jobs(&store).is_empty());
    assert_eq!(hook.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_ups_are_not_offered_as_tools() {
    let (_hook, server, _store, _dir) =
        follow_up_server(vec![Reply::json(200, json!({"ok": true}))]).await;
    let (status, text) = get_text(&server, "/tools?format=openai").await;
    assert_eq!(status, 200, "{text}");
    let tools: Value = serde_json::from_str(&text).expect("JSON");
    let names: Vec<&str> = tools
        .as_array()
        .expect("a list of tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["lookup"]);

    let (status, list) = post_json(
        &server,
        "/mcp",
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("a list of tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["lookup"]);
}

// ---------------------------------------------------------------------------------------------
// More edges

#[tokio::test(flavor = "multi_thread")]
async fn a_say_case_that_holds_but_names_a_null_value_is_left_out() {
    let (_contact, deals, server) = contact_deals(
        vec![Reply::json(200, json!({"results": [{"id": "c1"}]}))],
        vec![Reply::json(200, json!({"results": []}))],
    )
    .await;
    let (status, body) = call(
        &server,
        "contact_deals",
        json!({"phone": "+4930123456"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["output"],
        json!({"found": true, "name": null, "open_deals": 0, "checked_deals": true})
    );
    assert_eq!(
        body["say"],
        Value::Null,
        "the chosen case names a null value; later cases are not tried"
    );
    assert_eq!(deals.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_fails_the_action_at_once_without_waiting_for_the_others() {
    let weather = stub(vec![Reply::status(503)]).await;
    let traffic = stub(vec![Reply::Hang]).await;
    let cfg = config_with(
        &[("WEATHER", weather.url()), ("TRAFFIC", traffic.url())],
        None,
    );
    let server = start(two_lookups("5s"), cfg).await;
    let (status, body) = call(&server, "two_lookups", json!({"city": "Bern"}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("fallback"), "{body}");
    assert_eq!(
        body["reason"],
        json!("upstream_status"),
        "the 503 decides, not the deadline the hanging step would have reached"
    );
    eventually("the hanging request is dropped", || {
        traffic.in_flight() == 0
    })
    .await;
}

const STEP_TIMEOUT: &str = r#"
action quote {
  description "A price, and a discount when the discount service is quick enough."

  input sku: string "Product"

  step price {
    request GET "{env.PRICES}/prices/{input.sku}" {
      timeout 2s
    }
    output {
      amount: number = $.amount
    }
  }

  step discount {
    request GET "{env.DISCOUNTS}/discounts/{input.sku}" {
      timeout 300ms
    }
    output {
      percent: int = $.percent
    }
    fallback {
      percent = 0
    }
  }

  timeout 4s

  output {
    amount: number = step.price.amount
    discount: int = step.discount.percent
  }

  say "It costs {output.amount} with {output.discount} percent off."

  fallback {
    amount = 0
    discount = 0
  }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_step_over_its_own_timeout_takes_its_fallback_within_the_action_deadline() {
    let prices = stub(vec![Reply::json(200, json!({"amount": 19.5}))]).await;
    let discounts = stub(vec![
        Reply::json(200, json!({"percent": 10})).delayed(Duration::from_secs(8))
    ])
    .await;
    let cfg = config_with(
        &[("PRICES", prices.url()), ("DISCOUNTS", discounts.url())],
        None,
    );
    let server = start(compile(STEP_TIMEOUT), cfg).await;
    let (status, body) = call(&server, "quote", json!({"sku": "A-1"}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("ok"), "{body}");
    assert_eq!(body["output"], json!({"amount": 19.5, "discount": 0}));
    assert_eq!(body["say"], json!("It costs 19.5 with 0 percent off."));
}

const UNGUARDED: &str = r#"
action unguarded {
  description "Reads an optional value of one step into the path of the next."

  input phone: string "Phone"

  step contact {
    request GET "{env.CRM}/contacts" {
      query "phone" = input.phone
      timeout 1s
    }
    output {
      id: string? = $.id
    }
  }

  step deals {
    request GET "{env.DEALS}/contacts/{step.contact.id}/deals" {
      timeout 1s
    }
    output {
      count: int = count($.results[*])
    }
  }

  timeout 2s

  output {
    count: int = step.deals.count
  }

  fallback {
    count = 0
  }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_null_step_value_in_a_path_fails_the_step_without_sending_it() {
    let contact = stub(vec![Reply::json(200, json!({}))]).await;
    let deals = stub(vec![Reply::json(200, json!({"results": []}))]).await;
    let cfg = config_with(&[("CRM", contact.url()), ("DEALS", deals.url())], None);
    let server = start(compile(UNGUARDED), cfg).await;
    let (status, body) = call(&server, "unguarded", json!({"phone": "1"}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("fallback"), "{body}");
    assert_eq!(body["reason"], json!("invalid_request"), "{body}");
    assert_eq!(contact.request_count(), 1);
    assert_eq!(deals.request_count(), 0);
}

const DEFERRED_ONLY: &str = r#"
action log_callback {
  description "Note that the caller wants a call back; the CRM is updated afterwards."

  input topic: string "What the call back is about"

  step note deferred {
    request POST "{env.HOOK}/callbacks" {
      idempotency_key "{call.id}-callback"
      body { "topic": input.topic, "call": call.id, "from": call.from }
      timeout 2s
    }
  }

  say "I've noted it: a colleague will call you back about {input.topic}."
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_action_of_deferred_steps_only_answers_at_once_and_delivers_afterwards() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store.sqlite");
    let hook = stub(vec![Reply::status(202)]).await;
    let cfg = config_with(&[("HOOK", hook.url())], Some(store.clone()));
    let server = start(compile(DEFERRED_ONLY), cfg).await;
    let resp = server
        .client
        .post(server.url("/actions/log_callback"))
        .header("content-type", "application/json")
        .header("x-call-id", "call-31")
        .header("x-call-from", "+4930123456")
        .body(json!({"topic": "billing"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["status"], json!("ok"), "{body}");
    assert_eq!(body["output"], json!({}));
    assert_eq!(
        body["say"],
        json!("I've noted it: a colleague will call you back about billing.")
    );
    let job = job_in_state(&store, JobState::Delivered).await;
    assert_eq!(job.idempotency_key, "call-31-callback");
    let sent = hook.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("idempotency-key"), Some("call-31-callback"));
    assert_eq!(
        sent[0].json(),
        Some(json!({"topic": "billing", "call": "call-31", "from": "+4930123456"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_whose_upstream_answers_503_is_run_again_until_it_answers() {
    let (hook, server, store, _dir) = follow_up_server(vec![
        Reply::status(503),
        Reply::json(200, json!({"ok": true})),
    ])
    .await;
    let resp = server
        .client
        .delete(server.url("/calls/call-23"))
        .body(json!({"summary": "Short call"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 204);
    let job = job_in_state(&store, JobState::Delivered).await;
    assert_eq!(job.attempts, 2);
    let sent = hook.requests();
    assert_eq!(sent.len(), 2);
    for r in &sent {
        assert_eq!(r.header("idempotency-key"), Some("call-23-summary"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_the_upstream_refuses_with_404_fails_without_running_again() {
    let (hook, server, store, _dir) = follow_up_server(vec![Reply::status(404)]).await;
    let resp = server
        .client
        .delete(server.url("/calls/call-25"))
        .body(json!({"summary": "Short call"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 204);
    let job = job_in_state(&store, JobState::Failed).await;
    assert_eq!(job.attempts, 1);
    let reason = job.last_error.unwrap_or_default();
    assert!(reason.contains("404"), "{reason}");
    assert_eq!(hook.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_with_invalid_inputs_fails_without_reaching_the_upstream() {
    let (hook, server, store, _dir) =
        follow_up_server(vec![Reply::json(200, json!({"ok": true}))]).await;
    let resp = server
        .client
        .delete(server.url("/calls/call-24"))
        .body(json!({"summary": 42}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 204);
    let job = job_in_state(&store, JobState::Failed).await;
    assert_eq!(job.attempts, 1);
    let reason = job.last_error.unwrap_or_default();
    assert!(reason.contains("invalid input"), "{reason}");
    assert_eq!(hook.request_count(), 0);
}

const FOLLOW_UP_DEFAULT: &str = r#"
action log_call_end {
  description "After a call ends, log it, unless told not to."

  input log: bool = true "Log this call"
  input note: string = "no note" "A note about the call"

  follow_up when input.log and input.note != "skip"

  request POST "{env.HOOK}/log" {
    idempotency_key "{call.id}-log"
    body { "note": input.note, "call": call.id }
    timeout 2s
  }

  output {
    ok: bool = $.ok
  }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_condition_sees_the_inputs_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store.sqlite");
    let hook = stub(vec![Reply::json(200, json!({"ok": true}))]).await;
    let cfg = config_with(&[("HOOK", hook.url())], Some(store.clone()));
    let server = start(compile(FOLLOW_UP_DEFAULT), cfg).await;
    // No body: `log` and `note` take their defaults, so the condition holds.
    let resp = server
        .client
        .delete(server.url("/calls/call-41"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 204);
    let job = job_in_state(&store, JobState::Delivered).await;
    assert_eq!(job.call_id.as_deref(), Some("call-41"));
    let sent = hook.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].json(),
        Some(json!({"note": "no note", "call": "call-41"}))
    );

    // Given values still decide.
    let resp = server
        .client
        .delete(server.url("/calls/call-42"))
        .body(json!({"log": false}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(jobs(&store).len(), 1, "call-42 asked not to be logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_the_store_cannot_record_answers_the_fallback_with_reason_store() {
    let d = ticket_notify(
        vec![Reply::json(201, json!({"id": 16}))],
        vec![Reply::status(200)],
    )
    .await;
    // Another writer holds the store's write lock (as a second `mca serve` on the same file
    // could): the runtime's write waits for its busy timeout, then gives up.
    let other = rusqlite::Connection::open(&d.store).expect("open the store");
    other
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    let (status, body) = call(
        &d.server,
        "ticket_notify",
        json!({"summary": "Router offline"}),
        Some("call-13"),
    )
    .await;
    other.execute_batch("ROLLBACK").expect("release the lock");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("fallback"), "{body}");
    assert_eq!(body["reason"], json!("store"), "{body}");
    assert_eq!(body["say"], json!("A colleague will open the ticket."));
    assert_eq!(d.tickets.request_count(), 1, "the live step did run");
    assert!(jobs(&d.store).is_empty(), "nothing was promised");
    assert_eq!(d.hook.request_count(), 0);
}
