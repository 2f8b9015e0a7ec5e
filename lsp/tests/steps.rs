//! Steps, conditions and follow-ups in the editor: in-memory protocol sessions.

mod common;

use common::*;
use serde_json::{json, Value};

const URI: &str = "file:///tmp/mca-protocol/steps.mca";

/// A valid action with live steps, a deferred step, conditions and step-aware tests.
const STEPS: &str = r#"action contact_deals {
  description "Find the caller's contact, then their open deals."

  input phone: string(phone) "Caller's phone number"
  input include_won: bool = false "Also count won deals"

  step contact {
    request GET "https://crm.example.com/contacts" {
      query "phone" = input.phone
      timeout 2s
    }
    output {
      id: string? = $.results[0].id
      name: string? = $.results[0].name
    }
    on 404 {
      id = null
    }
  }

  step deals when step.contact.id != null {
    request GET "https://crm.example.com/contacts/{step.contact.id}/deals" {
      query "status" = "open"
      timeout 2s
    }
    output {
      count: int = count($.results[*])
      titles: list<string> = $.results[*].title
    }
    fallback {
      count = 0
      titles = []
    }
  }

  step note deferred within 2h when output.found {
    request POST "https://crm.example.com/notes" {
      idempotency_key "{call.id}-note"
      body { contact: step.contact.id, text: "Called about {output.open_deals} deals" }
    }
  }

  timeout 4s

  output {
    found: bool = step.contact.id != null
    name: string? = step.contact.name
    open_deals: int = step.deals.count ?? 0
    titles: list<string> = step.deals.titles ?? []
    won: bool? = input.include_won when input.include_won and step.contact.id != null
  }

  say "{output.name} has {output.open_deals} open deals." when output.found and output.open_deals > 0
  say "I found you, {output.name}, but there are no open deals." when output.found
  say "I couldn't find you in our CRM."

  fallback {
    found = false
    open_deals = 0
    titles = []
  }

  test "contact with deals" {
    input { phone: "+4930123456" }
    upstream contact 200 { "results": [{ "id": "c1", "name": "Max" }] }
    upstream deals 200 { "results": [{ "title": "Router" }] }
    expect request deals GET "/contacts/c1/deals?status=open"
    expect { found: true, open_deals: 1, titles: ["Router"] }
  }
}
"#;

/// Position just after the `n`-th (0-based) occurrence of `needle`.
fn after_nth(text: &str, needle: &str, n: usize) -> (u32, u32) {
    let i = text
        .match_indices(needle)
        .nth(n)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("{needle:?} #{n} not in text"));
    position(text, i + needle.len())
}

fn offset(text: &str, (line, col): (u32, u32)) -> usize {
    mca_compiler::LineIndex::new(text).offset_of_utf16(text, line, col)
}

/// Completion items at the `$0` of `marked`: (label, detail).
fn items(client: &mut Client, marked: &str) -> Vec<(String, String)> {
    let (text, pos) = cursor(marked);
    client.open(URI, &text);
    let r = client
        .at("textDocument/completion", URI, pos)
        .unwrap_or_else(|e| panic!("completion: {e:?}"));
    let list = r
        .as_array()
        .cloned()
        .or_else(|| r["items"].as_array().cloned())
        .unwrap_or_default();
    list.iter()
        .map(|i| {
            (
                i["label"].as_str().unwrap_or("").to_string(),
                i["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn labels(client: &mut Client, marked: &str) -> Vec<String> {
    items(client, marked).into_iter().map(|(l, _)| l).collect()
}

fn check(client: &mut Client, marked: &str, expect: &[&str], absent: &[&str]) {
    let got = labels(client, marked);
    for e in expect {
        assert!(
            got.iter().any(|l| l == e),
            "{e} missing in {got:?} for\n{marked}"
        );
    }
    for a in absent {
        assert!(
            !got.iter().any(|l| l == a),
            "{a} unexpected in {got:?} for\n{marked}"
        );
    }
}

/// `STEPS` with `$0` inserted just after `needle`.
fn marked_after(needle: &str) -> String {
    let i = STEPS
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in STEPS"))
        + needle.len();
    format!("{}$0{}", &STEPS[..i], &STEPS[i..])
}

fn hover(client: &mut Client, pos: (u32, u32)) -> String {
    let r = client
        .at("textDocument/hover", URI, pos)
        .unwrap_or_else(|e| panic!("hover: {e:?}"));
    r["contents"]["value"].as_str().unwrap_or("").to_string()
}

fn starts(r: &Value) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = r
        .as_array()
        .map(|a| a.iter().map(|l| range_of(&l["range"]).0).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn completion_after_step_dot_offers_step_names_then_typed_values() {
    let mut client = Client::start(None);
    // `step.` in a condition: the action's steps.
    check(
        &mut client,
        &marked_after("step deals when step."),
        &["contact", "deals", "note"],
        &["id", "phone"],
    );
    // `step.NAME.`: that step's values, with their types.
    let got = items(&mut client, &marked_after("open_deals: int = step.deals."));
    assert!(
        got.contains(&("count".to_string(), "int".to_string())),
        "{got:?}"
    );
    assert!(
        got.contains(&("titles".to_string(), "list<string>".to_string())),
        "{got:?}"
    );
    assert!(!got.iter().any(|(l, _)| l == "id"), "{got:?}");
    // Inside a template hole, in a half-typed action.
    check(
        &mut client,
        "action a {\n  step first {\n    output {\n      id: string = $.id\n    }\n  }\n  step second {\n    request GET \"https://h/{step.first.$0\n",
        &["id"],
        &[],
    );
    check(
        &mut client,
        "action a {\n  step first {\n    output {\n      id: string = $.id\n    }\n  }\n  step second {\n    request GET \"https://h/{step.$0\n",
        &["first"],
        &[],
    );
    client.shutdown();
}

#[test]
fn completion_offers_step_header_and_condition_keywords() {
    let mut client = Client::start(None);
    // Action items include the new ones.
    check(
        &mut client,
        "action a {\n  $0\n}",
        &["step", "timeout", "follow_up"],
        &[],
    );
    // Items of a step block.
    check(
        &mut client,
        "action a {\n  step s {\n    $0\n  }\n}",
        &["request", "output", "on", "fallback"],
        &["step", "say", "cache"],
    );
    // After a step's name: `deferred`, `when`; after `deferred`: `within`.
    check(
        &mut client,
        "action a {\n  step s $0\n}",
        &["deferred", "when"],
        &["within"],
    );
    check(
        &mut client,
        "action a {\n  step s deferred $0\n}",
        &["within", "when"],
        &["deferred"],
    );
    check(
        &mut client,
        "action a {\n  step s deferred within 2h $0\n}",
        &["when"],
        &["within"],
    );
    // Where a condition starts: operands and `not`; after an operand: `and`, `or`.
    check(
        &mut client,
        &marked_after("step deals when "),
        &["step", "input", "not", "null"],
        &["and", "request"],
    );
    check(
        &mut client,
        &marked_after("step deals when step.contact.id != null "),
        &["and", "or"],
        &["not"],
    );
    check(
        &mut client,
        &marked_after("when input.include_won and "),
        &["step", "input", "not"],
        &["and"],
    );
    // Inside parentheses.
    check(
        &mut client,
        "action a {\n  say \"x\" when not ($0\n}",
        &["output", "input", "not"],
        &[],
    );
    // `when` after a `say` text, after `follow_up`, after an output's mapping.
    check(
        &mut client,
        "action a {\n  say \"Hi.\" $0\n}",
        &["when"],
        &[],
    );
    check(&mut client, "action a {\n  follow_up $0\n}", &["when"], &[]);
    check(
        &mut client,
        "action a {\n  output {\n    n: int? = $.n $0\n  }\n}",
        &["when"],
        &[],
    );
    client.shutdown();
}

#[test]
fn completion_offers_the_step_namespace_where_references_are_allowed() {
    let mut client = Client::start(None);
    // A query value in a step's request.
    check(
        &mut client,
        &marked_after("query \"status\" = "),
        &["step", "input", "env"],
        &[],
    );
    // A template hole in a step's URL.
    check(
        &mut client,
        &marked_after("https://crm.example.com/contacts/{"),
        &["step", "input"],
        &[],
    );
    // An action output's expression.
    check(
        &mut client,
        &marked_after("found: bool = "),
        &["step", "input", "not"],
        &[],
    );
    // A request body value.
    check(
        &mut client,
        &marked_after("body { contact: "),
        &["step", "input"],
        &[],
    );
    // Not offered in an action without steps.
    check(
        &mut client,
        "action a {\n  request GET \"https://h/{$0\"\n}",
        &["input"],
        &["step"],
    );
    // Tests name steps: `upstream STEP`, `expect request STEP`.
    check(
        &mut client,
        &marked_after("upstream "),
        &["contact", "deals", "timeout"],
        &[],
    );
    check(
        &mut client,
        &marked_after("expect request "),
        &["GET", "deals"],
        &[],
    );
    client.shutdown();
}

#[test]
fn hover_shows_step_values_steps_and_new_keyword_docs() {
    let mut client = Client::start(None);
    client.open(URI, STEPS);
    // A step value: its declaration, its step, that it may be null.
    let h = hover(
        &mut client,
        after(STEPS, "open_deals: int = step.deals.cou"),
    );
    assert!(h.contains("count: int = count($.results[*])"), "{h}");
    assert!(h.contains("step `deals`"), "{h}");
    assert!(h.contains("Null when the step is skipped"), "{h}");
    let h = hover(&mut client, after(STEPS, "name: string? = step.contact.na"));
    assert!(h.contains("name: string? = $.results[0].name"), "{h}");
    assert!(!h.contains("Null when"), "{h}");
    // A step name in a reference: its header and values.
    let h = hover(&mut client, after(STEPS, "when step.cont"));
    assert!(h.contains("step contact"), "{h}");
    assert!(h.contains("id: string? = $.results[0].id"), "{h}");
    // The `step` namespace.
    let h = hover(&mut client, after(STEPS, "when ste"));
    assert!(h.contains("step.NAME.VALUE"), "{h}");
    // Keywords.
    for (needle, doc) in [
        ("  ste", "step NAME [deferred"),
        ("note defer", "delivered after"),
        ("within", "deferred within DURATION"),
        ("deals whe", "when CONDITION"),
        ("include_won an", "Both conditions"),
        ("\n  timeou", "deadline of an action with live steps"),
        ("upstream conta", "step"),
    ] {
        let h = hover(&mut client, after(STEPS, needle));
        assert!(h.contains(doc), "{needle}: {h}");
    }
    let text = "action a {\n  follow_up when not input.x\n}\n";
    client.open(URI, text);
    let h = hover(&mut client, after(text, "follow_"));
    assert!(h.contains("runs when the call has ended"), "{h}");
    let h = hover(&mut client, after(text, "when no"));
    assert!(h.contains("does not hold"), "{h}");
    client.shutdown();
}

#[test]
fn definition_and_references_of_steps_and_step_values() {
    let mut client = Client::start(None);
    client.open(URI, STEPS);
    // `step.contact` goes to the step's name.
    let r = client
        .at(
            "textDocument/definition",
            URI,
            after(STEPS, "when step.cont"),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        range_of(&r["range"]),
        (after(STEPS, "step "), after(STEPS, "step contact"))
    );
    // `step.contact.id` goes to the field of its `output { }`.
    let r = client
        .at(
            "textDocument/definition",
            URI,
            after(STEPS, "{step.contact.i"),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(range_of(&r["range"]).0, after(STEPS, "output {\n      "));
    // `upstream deals` goes to the step too.
    let r = client
        .at("textDocument/definition", URI, after(STEPS, "upstream dea"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(range_of(&r["range"]).0, after_nth(STEPS, "  step ", 1));
    // References of `contact.id`: declaration, `on 404` assignment, the `when`, the URL hole,
    // the deferred body, two output expressions.
    let r = client
        .request(
            "textDocument/references",
            json!({ "textDocument": { "uri": URI },
                    "position": { "line": after(STEPS, "{step.contact.i").0, "character": after(STEPS, "{step.contact.i").1 },
                    "context": { "includeDeclaration": true } }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let got = starts(&r);
    assert_eq!(got.len(), 7, "{got:?}");
    assert!(got.contains(&after(STEPS, "on 404 {\n      ")));
    assert!(got.contains(&after(
        STEPS,
        "won: bool? = input.include_won when input.include_won and step.contact."
    )));
    // References of step `deals`: the two output expressions and the test lines; `count` of
    // another step with the same field name would not be mixed in.
    let r = client
        .request(
            "textDocument/references",
            json!({ "textDocument": { "uri": URI },
                    "position": { "line": after(STEPS, "  step de").0, "character": after(STEPS, "  step de").1 },
                    "context": { "includeDeclaration": false } }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let got = starts(&r);
    assert_eq!(
        got,
        [
            after(STEPS, "open_deals: int = step."),
            after(STEPS, "titles: list<string> = step."),
            after_nth(STEPS, "upstream ", 1),
            after(STEPS, "expect request "),
        ]
    );
    client.shutdown();
}

#[test]
fn rename_a_step_renames_its_references_and_test_uses() {
    let mut client = Client::start(None);
    client.open(URI, STEPS);
    let pos = after(STEPS, "when step.cont");
    let r = client
        .at("textDocument/prepareRename", URI, pos)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(range_of(&r).0, after(STEPS, "when step."));
    let r = client
        .request(
            "textDocument/rename",
            json!({ "textDocument": { "uri": URI }, "position": { "line": pos.0, "character": pos.1 },
                    "newName": "person" }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let edits = r["changes"][URI].as_array().cloned().unwrap_or_default();
    let mut text = STEPS.to_string();
    let mut spans: Vec<(usize, usize)> = edits
        .iter()
        .map(|e| {
            let (s, t) = range_of(&e["range"]);
            (offset(STEPS, s), offset(STEPS, t))
        })
        .collect();
    spans.sort();
    for (s, e) in spans.into_iter().rev() {
        text.replace_range(s..e, "person");
    }
    assert!(!text.contains("contact."), "{text}");
    assert!(text.contains("step person {"));
    assert!(text.contains("upstream person 200"));
    let diags = mca_compiler::compile_one("x.mca", &text).diagnostics;
    assert!(diags.is_empty(), "{diags:#?}\n{text}");
    // A step value: declaration, the fallback's assignment and `step.deals.count`.
    let pos = after(STEPS, "step.deals.cou");
    let r = client
        .request(
            "textDocument/rename",
            json!({ "textDocument": { "uri": URI }, "position": { "line": pos.0, "character": pos.1 },
                    "newName": "total" }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(r["changes"][URI].as_array().map(Vec::len), Some(3), "{r}");
    // Taken names are refused: another step, another value of the same step.
    for (at, name) in [("when step.cont", "deals"), ("step.deals.cou", "titles")] {
        let pos = after(STEPS, at);
        let r = client.request(
            "textDocument/rename",
            json!({ "textDocument": { "uri": URI }, "position": { "line": pos.0, "character": pos.1 },
                    "newName": name }),
        );
        assert!(r.is_err(), "{name} accepted");
    }
    client.shutdown();
}

#[test]
fn document_symbols_list_steps_with_their_values() {
    let mut client = Client::start(None);
    client.open(URI, STEPS);
    let r = client
        .request(
            "textDocument/documentSymbol",
            json!({ "textDocument": { "uri": URI } }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let children = r[0]["children"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = children.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(
        names[..8],
        [
            "description",
            "phone",
            "include_won",
            "contact",
            "deals",
            "note",
            "timeout",
            "output"
        ]
    );
    let deals = &children[4];
    assert_eq!(deals["detail"], "when step.contact.id != null");
    let values: Vec<(&str, &str)> = deals["children"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or(""),
                        c["detail"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(values, [("count", "int"), ("titles", "list<string>")]);
    assert_eq!(
        children[5]["detail"],
        "deferred within 2h when output.found"
    );
    client.shutdown();
}

#[test]
fn semantic_tokens_colour_steps_condition_keywords_and_operators() {
    let mut client = Client::start(None);
    let text = "action a {\n  step s when not (step.t.n >= 2 or input.x < 3) {\n  }\n  follow_up when input.y == \"a\"\n}\n";
    client.open(URI, text);
    let got = semantic_tokens(&mut client, URI, text);
    let got: Vec<(&str, &str)> = got
        .iter()
        .map(|(a, b, _)| (a.as_str(), b.as_str()))
        .collect();
    for want in [
        ("step", "keyword"),
        ("s", "method"),
        ("when", "keyword"),
        ("not", "keyword"),
        ("t", "method"),
        ("n", "property"),
        (">=", "operator"),
        ("or", "keyword"),
        ("<", "operator"),
        ("follow_up", "keyword"),
        ("==", "operator"),
    ] {
        assert!(got.contains(&want), "{want:?} not in {got:?}");
    }
    client.shutdown();
}
