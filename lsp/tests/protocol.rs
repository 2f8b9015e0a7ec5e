//! In-memory protocol sessions: what an editor sends, what the server answers.

mod common;

use common::*;
use serde_json::{json, Value};

const URI: &str = "file:///tmp/mca-protocol/lookup.mca";

/// A valid action used by several tests.
const LOOKUP: &str = r#"// Identify the caller.
action lookup_customer {
  description "Find the caller's customer record."

  input phone: string(phone) "Caller's phone number in E.164 format"
  input limit: int = 1

  request GET "https://crm.example.com/v1/customers/{input.phone}" {
    query "limit" = input.limit
    auth bearer secret.CRM_TOKEN
    timeout 2s
  }

  output {
    name: string? = $.data[0].name
    found: bool = exists($.data[0])
  }

  say "Found {output.name}."

  fallback {
    found = false
  }

  test "known caller" {
    input { phone: "+4930123456" }
    upstream 200 { "data": [{ "name": "Max" }] }
    expect { found: true, name: "Max" }
  }
}
"#;

#[test]
fn initialize_announces_the_features() {
    let client = Client::start(None);
    let caps = &client.capabilities;
    assert_eq!(caps["textDocumentSync"]["change"], 2, "incremental sync");
    assert_eq!(caps["textDocumentSync"]["openClose"], true);
    assert_eq!(caps["hoverProvider"], true);
    assert_eq!(caps["definitionProvider"], true);
    assert_eq!(caps["referencesProvider"], true);
    assert_eq!(caps["renameProvider"]["prepareProvider"], true);
    assert_eq!(caps["documentSymbolProvider"], true);
    assert_eq!(caps["documentFormattingProvider"], true);
    assert!(caps["completionProvider"]["triggerCharacters"]
        .as_array()
        .is_some_and(|t| t.contains(&json!("."))));
    assert!(caps["semanticTokensProvider"]["legend"]["tokenTypes"]
        .as_array()
        .is_some_and(|t| t.contains(&json!("keyword"))));
    client.shutdown();
}

#[test]
fn diagnostics_on_open_then_cleared_by_an_incremental_fix() {
    let mut client = Client::start(None);
    let text = LOOKUP.replace("{input.phone}", "{input.phnoe}");
    client.open(URI, &text);
    let diags = client.diagnostics(URI);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d["code"], "E0102");
    assert_eq!(d["severity"], 1);
    assert_eq!(d["source"], "mca");
    let message = d["message"].as_str().unwrap_or("");
    assert!(message.starts_with("unknown input `phnoe`"), "{message}");
    assert!(message.contains("hint: did you mean `phone`?"), "{message}");
    let start = after(&text, "{input.");
    assert_eq!(range_of(&d["range"]), (start, (start.0, start.1 + 5)));

    // Fix the typo with an incremental edit of just those five characters.
    client.change(
        URI,
        2,
        json!([{ "range": { "start": { "line": start.0, "character": start.1 },
                            "end": { "line": start.0, "character": start.1 + 5 } },
                 "text": "phone" }]),
    );
    assert_eq!(client.diagnostics(URI), Vec::<Value>::new());

    // Break it again on save-less typing, with two changes in one notification.
    client.change(
        URI,
        3,
        json!([
            { "range": { "start": { "line": start.0, "character": start.1 },
                         "end": { "line": start.0, "character": start.1 + 5 } }, "text": "ph" },
            { "range": { "start": { "line": start.0, "character": start.1 + 2 },
                         "end": { "line": start.0, "character": start.1 + 2 } }, "text": "x" }
        ]),
    );
    let diags = client.diagnostics(URI);
    let codes: Vec<&str> = diags.iter().filter_map(|d| d["code"].as_str()).collect();
    // `phone` is now unused (marked unnecessary), and the typo.
    assert_eq!(codes, ["W0602", "E0102"], "{diags:#?}");
    assert_eq!(diags[0]["tags"], json!([1]));
    assert!(diags[1]["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("unknown input `phx`"));
    client.notify(
        "textDocument/didSave",
        json!({ "textDocument": { "uri": URI } }),
    );
    client.shutdown();
}

#[test]
fn positions_are_utf16_on_lines_with_non_ascii_text() {
    let mut client = Client::start(None);
    // `ü` is 2 bytes and 1 UTF-16 unit, `😀` 4 bytes and 2 units: the error after them must
    // start at the UTF-16 column.
    let text = LOOKUP.replace(
        "say \"Found {output.name}.\"",
        "say \"Grüße 😀 {output.nmae}.\"",
    );
    client.open(URI, &text);
    let diags = client.diagnostics(URI);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let line = text.lines().position(|l| l.contains("Grüße")).unwrap_or(0) as u32;
    let col = "  say \"Grüße 😀 {output.".encode_utf16().count() as u32;
    assert_eq!(range_of(&diags[0]["range"]), ((line, col), (line, col + 4)));

    // An edit addressed in UTF-16 after the emoji lands on the right bytes.
    client.change(
        URI,
        2,
        json!([{ "range": { "start": { "line": line, "character": col },
                            "end": { "line": line, "character": col + 4 } },
                 "text": "name" }]),
    );
    assert_eq!(client.diagnostics(URI), Vec::<Value>::new());
    client.shutdown();
}

#[test]
fn secondary_labels_become_related_information() {
    let mut client = Client::start(None);
    let text = LOOKUP.replace(
        "  input limit: int = 1\n",
        "  input limit: int = 1\n  input phone: string\n",
    );
    client.open(URI, &text);
    let diags = client.diagnostics(URI);
    let dup = diags.iter().find(|d| d["code"] == "E0105");
    let Some(dup) = dup else {
        panic!("no E0105 in {diags:#?}");
    };
    let related = &dup["relatedInformation"][0];
    assert_eq!(related["message"], "first declared here");
    assert_eq!(related["location"]["uri"], URI);
    assert_eq!(
        range_of(&related["location"]["range"]).0,
        after(&text, "  input ")
    );
    client.shutdown();
}

#[test]
fn completion_after_namespaces_keywords_types_methods_and_invalidates() {
    let mut client = Client::start(None);
    let check = |client: &mut Client, marked: &str, expect: &[&str], absent: &[&str]| {
        let (text, pos) = cursor(marked);
        client.open(URI, &text);
        let labels = client.completion_labels(URI, pos);
        for e in expect {
            assert!(
                labels.iter().any(|l| l == e),
                "{e} missing in {labels:?} for\n{marked}"
            );
        }
        for a in absent {
            assert!(
                !labels.iter().any(|l| l == a),
                "{a} unexpected in {labels:?} for\n{marked}"
            );
        }
    };
    // Members after `input.`, in an action that does not parse (half typed).
    check(
        &mut client,
        "action a {\n  input phone: string\n  input limit: int\n  request GET \"u\" {\n    query \"p\" = input.$0\n",
        &["phone", "limit"],
        &["GET"],
    );
    // Inside a template hole.
    check(
        &mut client,
        "action a {\n  input phone: string\n  request GET \"https://x/{input.p$0\n}",
        &["phone"],
        &[],
    );
    check(
        &mut client,
        "action a {\n  say \"{$0\"\n}",
        &["input", "output", "env", "call"],
        &[],
    );
    // `output.` in `say`.
    check(
        &mut client,
        "action a {\n  output {\n    name: string = $.n\n  }\n  say \"Hi {output.$0}\"\n}",
        &["name"],
        &[],
    );
    check(
        &mut client,
        "action a {\n  say \"{call.$0}\"\n}",
        &["id", "from"],
        &[],
    );
    // env./secret. list names used anywhere in the project.
    check(
        &mut client,
        "action a {\n  request GET \"{env.CRM_URL}/x\" {\n    auth bearer secret.TOKEN\n    header \"A\" = env.$0\n  }\n}",
        &["CRM_URL"],
        &["TOKEN"],
    );
    // Keywords valid at the start of a statement, per block.
    check(
        &mut client,
        "action a {\n  request GET \"u\" {\n    ti$0\n  }\n}",
        &["timeout", "retry", "header", "auth", "read_only"],
        &["description", "ttl"],
    );
    check(
        &mut client,
        "action a {\n  $0\n}",
        &[
            "description",
            "input",
            "request",
            "output",
            "say",
            "on",
            "fallback",
            "cache",
            "invalidates",
            "test",
            "step",
            "timeout",
            "follow_up",
        ],
        &["retry", "per_try"],
    );
    check(&mut client, "$0", &["action"], &["input"]);
    check(
        &mut client,
        "action a {\n  cache {\n    $0\n  }\n}",
        &["ttl", "key", "scope", "stale_if_error"],
        &["input"],
    );
    check(
        &mut client,
        "action a {\n  test \"t\" {\n    $0\n  }\n}",
        &["input", "upstream", "expect", "env", "secret", "call"],
        &["request"],
    );
    check(
        &mut client,
        "action a {\n  test \"t\" {\n    expect $0\n  }\n}",
        &["request", "fallback", "error", "say"],
        &[],
    );
    check(
        &mut client,
        "action a {\n  test \"t\" {\n    expect error $0\n  }\n}",
        &["invalid_input", "timeout"],
        &[],
    );
    // Types and formats.
    check(
        &mut client,
        "action a {\n  input x: $0\n}",
        &["string", "int", "number", "bool", "enum", "list"],
        &[],
    );
    check(
        &mut client,
        "action a {\n  input x: string($0)\n}",
        &["phone", "email", "date", "datetime", "uuid", "url"],
        &["string"],
    );
    check(
        &mut client,
        "action a {\n  input x: list<$0>\n}",
        &["string", "int"],
        &[],
    );
    check(
        &mut client,
        "action a {\n  output {\n    x: $0\n  }\n}",
        &["string", "bool"],
        &[],
    );
    check(
        &mut client,
        "action a {\n  output {\n    x: bool = $0\n  }\n}",
        &["exists", "count", "first"],
        &[],
    );
    // HTTP methods.
    check(
        &mut client,
        "action a {\n  request $0\n}",
        &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        &[],
    );
    check(
        &mut client,
        "action a {\n  request GET \"u\" {\n    auth $0\n  }\n}",
        &["bearer", "basic", "oauth2"],
        &[],
    );
    // Test inputs and expectations name inputs and outputs.
    check(
        &mut client,
        "action a {\n  input phone: string\n  output {\n    found: bool = $.f\n  }\n  test \"t\" {\n    input { $0 }\n  }\n}",
        &["phone"],
        &["found"],
    );
    check(
        &mut client,
        "action a {\n  input phone: string\n  output {\n    found: bool = $.f\n  }\n  test \"t\" {\n    expect { found: true, $0 }\n  }\n}",
        &["found"],
        &["phone"],
    );
    // Outcome blocks: say and output names.
    check(
        &mut client,
        "action a {\n  output {\n    found: bool = $.f\n  }\n  fallback {\n    $0\n  }\n}",
        &["say", "found"],
        &[],
    );
    // Nothing inside comments.
    check(&mut client, "// act$0\n", &[], &["action"]);
    client.shutdown();
}

#[test]
fn completion_of_action_names_after_invalidates_spans_the_workspace() {
    let dir = TempDir::new(&[
        ("a.mca", "action create_ticket {\n  invalidates \n}\n"),
        ("sub/b.mca", "action lookup_customer {\n}\n"),
        ("sub/c.mca", "action order_status {\n}\n"),
    ]);
    let mut client = Client::start(Some(&dir.0));
    let uri = dir.uri("a.mca");
    client.open(&uri, "action create_ticket {\n  invalidates \n}\n");
    let labels = client.completion_labels(&uri, (1, 14));
    assert_eq!(labels, ["lookup_customer", "order_status"]);
    client.shutdown();
}

#[test]
fn hover_shows_types_descriptions_and_keyword_docs() {
    let mut client = Client::start(None);
    client.open(URI, LOOKUP);
    let hover = |client: &mut Client, pos| {
        let r = client
            .at("textDocument/hover", URI, pos)
            .unwrap_or_else(|e| panic!("hover: {e:?}"));
        r["contents"]["value"].as_str().unwrap_or("").to_string()
    };
    // An input used in a template hole.
    let h = hover(&mut client, after(LOOKUP, "{input.ph"));
    assert!(h.contains("input phone: string(phone)"), "{h}");
    assert!(h.contains("Caller's phone number in E.164 format"), "{h}");
    // An input with a default.
    let h = hover(&mut client, after(LOOKUP, "= input.li"));
    assert!(h.contains("input limit: int = 1"), "{h}");
    // An output.
    let h = hover(&mut client, after(LOOKUP, "{output.na"));
    assert!(h.contains("name: string? = $.data[0].name"), "{h}");
    // Keywords, types, formats, methods, mapping functions.
    let h = hover(&mut client, after(LOOKUP, "    timeo"));
    assert!(h.contains("timeout DURATION") && h.contains("5s"), "{h}");
    let h = hover(&mut client, after(LOOKUP, "string(ph"));
    assert!(h.contains("E.164"), "{h}");
    let h = hover(&mut client, after(LOOKUP, "request G"));
    assert!(h.contains("Idempotent"), "{h}");
    let h = hover(&mut client, after(LOOKUP, "exis"));
    assert!(h.contains("exists($.path)"), "{h}");
    let h = hover(&mut client, after(LOOKUP, "secret.CRM"));
    assert!(h.contains("secret.CRM_TOKEN"), "{h}");
    // Nothing on blank space.
    let r = client.at("textDocument/hover", URI, (3, 0));
    assert_eq!(r.ok(), Some(Value::Null));
    client.shutdown();
}

#[test]
fn definition_and_references_of_inputs_outputs_and_actions_across_files() {
    let a = "action create_ticket {\n  input customer_id: string\n  request POST \"https://h/{input.customer_id}\" {\n    body { \"id\": input.customer_id }\n  }\n  invalidates lookup_customer\n  test \"t\" {\n    input { customer_id: \"c-1\" }\n  }\n}\n";
    let b =
        "action lookup_customer {\n  description \"Find the caller.\"\n  input phone: string\n}\n";
    let dir = TempDir::new(&[("a.mca", a), ("b.mca", b)]);
    let mut client = Client::start(Some(&dir.0));
    let (ua, ub) = (dir.uri("a.mca"), dir.uri("b.mca"));
    client.open(&ua, a);
    // Definition of an input from a template hole.
    let r = client
        .at("textDocument/definition", &ua, after(a, "{input.cust"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(r["uri"], ua.as_str());
    assert_eq!(range_of(&r["range"]).0, after(a, "  input "));
    // Definition of an action in another file (never opened: read from disk).
    let r = client
        .at("textDocument/definition", &ua, after(a, "invalidates look"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(r["uri"], ub.as_str());
    assert_eq!(range_of(&r["range"]), ((0, 7), (0, 22)));
    // Hover on it shows the other file's description.
    let r = client
        .at("textDocument/hover", &ua, after(a, "invalidates look"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let h = r["contents"]["value"].as_str().unwrap_or("");
    assert!(
        h.contains("action lookup_customer(phone: string)") && h.contains("Find the caller."),
        "{h}"
    );
    // References of the input: declaration, URL hole, body, test input key.
    let r = client
        .request(
            "textDocument/references",
            json!({ "textDocument": { "uri": ua }, "position": { "line": 1, "character": 9 },
                    "context": { "includeDeclaration": true } }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let starts: Vec<(u32, u32)> = r
        .as_array()
        .map(|a| a.iter().map(|l| range_of(&l["range"]).0).collect())
        .unwrap_or_default();
    assert_eq!(
        starts,
        [
            (1, 8),
            after(a, "{input."),
            after(a, "\"id\": input."),
            after(a, "input { "),
        ]
    );
    // References of the action from its declaration, across files.
    client.open(&ub, b);
    let r = client
        .request(
            "textDocument/references",
            json!({ "textDocument": { "uri": ub }, "position": { "line": 0, "character": 10 },
                    "context": { "includeDeclaration": false } }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(r[0]["uri"], ua.as_str());
    assert_eq!(r.as_array().map(Vec::len), Some(1));
    client.shutdown();
}

#[test]
fn workspace_files_are_compiled_together() {
    let a =
        "action a {\n  description \"A.\"\n  request GET \"https://h/a\" { }\n  invalidates b\n}\n";
    let b = "action b {\n  description \"B.\"\n  request GET \"https://h/b\" { }\n}\n";
    let dir = TempDir::new(&[("a.mca", a), ("b.mca", b)]);
    let mut client = Client::start(Some(&dir.0));
    let (ua, ub) = (dir.uri("a.mca"), dir.uri("b.mca"));
    client.open(&ub, b);
    // Renaming `b` to `a` in the editor (not on disk): `a.mca` now invalidates an unknown
    // action... no: `a` exists (itself); and `b.mca` declares a duplicate of `a`.
    client.change(
        &ub,
        2,
        json!([{ "text": b.replace("action b", "action a") }]),
    );
    let diags = client.diagnostics(&ub);
    let dup = diags.iter().find(|d| d["code"] == "E0101");
    let Some(dup) = dup else {
        panic!("no E0101 in {diags:#?}");
    };
    assert_eq!(dup["relatedInformation"][0]["location"]["uri"], ua.as_str());
    client.shutdown();
}

#[test]
fn rename_an_input_everywhere_and_refuse_bad_names() {
    let mut client = Client::start(None);
    client.open(URI, LOOKUP);
    let pos = after(LOOKUP, "{input.ph");
    let r = client
        .at("textDocument/prepareRename", URI, pos)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(range_of(&r).0, after(LOOKUP, "{input."));
    let r = client
        .request(
            "textDocument/rename",
            json!({ "textDocument": { "uri": URI }, "position": { "line": pos.0, "character": pos.1 },
                    "newName": "caller_phone" }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let edits = r["changes"][URI].as_array().cloned().unwrap_or_default();
    // Declaration, URL hole, test input key.
    assert_eq!(edits.len(), 3, "{edits:#?}");
    let mut text = LOOKUP.to_string();
    let mut spans: Vec<(usize, usize)> = edits
        .iter()
        .map(|e| {
            let (s, t) = range_of(&e["range"]);
            (offset(&text, s), offset(&text, t))
        })
        .collect();
    spans.sort();
    for (s, e) in spans.into_iter().rev() {
        text.replace_range(s..e, "caller_phone");
    }
    assert!(text.contains("input caller_phone: string(phone)"));
    assert!(text.contains("{input.caller_phone}"));
    assert!(text.contains("input { caller_phone: \"+4930123456\" }"));
    assert!(mca_compiler::compile_one("x.mca", &text)
        .diagnostics
        .is_empty());
    // Rename of an output.
    let r = client
        .request(
            "textDocument/rename",
            json!({ "textDocument": { "uri": URI },
                    "position": { "line": after(LOOKUP, "    fou").0, "character": after(LOOKUP, "    fou").1 },
                    "newName": "exists_already" }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    // Declaration, fallback assignment, expectation key.
    assert_eq!(r["changes"][URI].as_array().map(Vec::len), Some(3));
    // Bad names and taken names are refused with an error response.
    for bad in ["1x", "a-b", "true", "limit"] {
        let r = client.request(
            "textDocument/rename",
            json!({ "textDocument": { "uri": URI }, "position": { "line": pos.0, "character": pos.1 },
                    "newName": bad }),
        );
        assert!(r.is_err(), "{bad} accepted");
    }
    // Not a symbol.
    assert!(client
        .at("textDocument/prepareRename", URI, (0, 3))
        .is_err());
    client.shutdown();
}

fn offset(text: &str, (line, col): (u32, u32)) -> usize {
    mca_compiler::LineIndex::new(text).offset_of_utf16(text, line, col)
}

#[test]
fn formatting_returns_the_canonical_layout() {
    let mut client = Client::start(None);
    let messy = "action  a{description \"A.\"\n input x:string\n request GET \"https://h/{input.x}\"{timeout 2s}}\n";
    client.open(URI, messy);
    let r = client
        .request(
            "textDocument/formatting",
            json!({ "textDocument": { "uri": URI }, "options": { "tabSize": 2, "insertSpaces": true } }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(r[0]["newText"], "action a {\n  description \"A.\"\n  input x: string\n  request GET \"https://h/{input.x}\" {\n    timeout 2s\n  }\n}\n");
    assert_eq!(range_of(&r[0]["range"]), ((0, 0), (3, 0)));
    // Already canonical: no edits. Syntax errors: nothing to do.
    client.open(URI, LOOKUP);
    let r = client.request("textDocument/formatting", json!({ "textDocument": { "uri": URI }, "options": { "tabSize": 2, "insertSpaces": true } }));
    assert_eq!(r.ok(), Some(json!([])));
    client.open(URI, "action a {\n  input x string\n}\n");
    let r = client.request("textDocument/formatting", json!({ "textDocument": { "uri": URI }, "options": { "tabSize": 2, "insertSpaces": true } }));
    assert_eq!(r.ok(), Some(Value::Null));
    client.shutdown();
}

#[test]
fn document_symbols_outline_actions() {
    let mut client = Client::start(None);
    client.open(URI, LOOKUP);
    let r = client
        .request(
            "textDocument/documentSymbol",
            json!({ "textDocument": { "uri": URI } }),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let action = &r[0];
    assert_eq!(action["name"], "lookup_customer");
    let names: Vec<&str> = action["children"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "description",
            "phone",
            "limit",
            "request",
            "output",
            "say",
            "fallback",
            "test \"known caller\""
        ]
    );
    let output = &action["children"][4];
    let fields: Vec<(&str, &str)> = output["children"]
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
    assert_eq!(fields, [("name", "string?"), ("found", "bool")]);
    assert_eq!(action["children"][1]["detail"], "string(phone)");
    client.shutdown();
}

#[test]
fn semantic_tokens_classify_the_text() {
    let mut client = Client::start(None);
    let text = "action a {\n  input x: string \"d\" // c\n  say \"é {input.x}\"\n}\n";
    client.open(URI, text);
    let got = semantic_tokens(&mut client, URI, text);
    let got: Vec<(&str, &str, u32)> = got
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
        .collect();
    assert_eq!(
        got,
        [
            ("action", "keyword", 0),
            ("a", "function", 1),
            ("input", "keyword", 0),
            ("x", "parameter", 1),
            ("string", "type", 4),
            ("\"d\"", "string", 0),
            ("// c", "comment", 0),
            ("say", "keyword", 0),
            ("\"é ", "string", 0),
            ("{", "operator", 0),
            ("input", "namespace", 0),
            ("x", "parameter", 0),
            ("}", "operator", 0),
            ("\"", "string", 0),
        ]
    );
    client.shutdown();
}

#[test]
fn requests_about_unknown_documents_get_an_error_response() {
    let mut client = Client::start(None);
    for method in [
        "textDocument/hover",
        "textDocument/completion",
        "textDocument/definition",
        "textDocument/prepareRename",
    ] {
        let r = client.at(method, "file:///nowhere/x.mca", (0, 0));
        let Err(e) = r else {
            panic!("{method}: no error for an unknown document");
        };
        assert_eq!(e.code, -32602, "{method}: {e:?}");
        assert!(e.message.contains("unknown document"), "{}", e.message);
    }
    let r = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": "file:///nowhere/x.mca" } }),
    );
    assert!(r.is_err());
    let r = client.request("textDocument/formatting", json!({ "textDocument": { "uri": "untitled:1" }, "options": { "tabSize": 2, "insertSpaces": true } }));
    assert!(r.is_err());
    // Malformed parameters and unknown methods are errors too, and the server lives on.
    let r = client.request("textDocument/hover", json!({ "nonsense": 1 }));
    assert_eq!(r.err().map(|e| e.code), Some(-32602));
    let r = client.request("mca/unknown", json!({}));
    assert_eq!(r.err().map(|e| e.code), Some(-32601));
    client.open(URI, LOOKUP);
    assert!(client.at("textDocument/hover", URI, (1, 2)).is_ok());
    client.shutdown();
}

#[test]
fn closing_a_document_clears_its_diagnostics() {
    let mut client = Client::start(None);
    client.open(URI, "action a {\n  input x string\n}\n");
    assert_eq!(client.diagnostics(URI).len(), 1);
    client.notify(
        "textDocument/didClose",
        json!({ "textDocument": { "uri": URI } }),
    );
    assert_eq!(client.diagnostics(URI), Vec::<Value>::new());
    client.shutdown();
}

/// Every prefix length of every example, typed into the editor, answered without a crash (a
/// panic would come back as an internal error).
#[test]
fn half_typed_prefixes_of_the_examples_never_fail() {
    let mut client = Client::start(None);
    let mut seed: u64 = 0x853c_49e6_748f_ea9b;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    for (path, text) in examples() {
        let uri = format!(
            "file:///tmp/mca-prefix/{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("x.mca")
        );
        client.open(&uri, "");
        let mut version = 1;
        for _ in 0..12 {
            let mut cut = next(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let prefix = &text[..cut];
            version += 1;
            client.change(&uri, version, json!([{ "text": prefix }]));
            let lines = prefix.lines().count().max(1);
            for _ in 0..6 {
                let line = next(lines) as u32;
                let character = next(80) as u32;
                for method in [
                    "textDocument/completion",
                    "textDocument/hover",
                    "textDocument/definition",
                    "textDocument/prepareRename",
                ] {
                    if let Err(e) = client.at(method, &uri, (line, character)) {
                        assert_ne!(
                            e.code, -32603,
                            "{method} at {line}:{character} of\n{prefix}\n{e:?}"
                        );
                    }
                }
                let r = client.request(
                    "textDocument/references",
                    json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character },
                            "context": { "includeDeclaration": true } }),
                );
                assert!(r.is_ok(), "{r:?}");
            }
            for method in [
                "textDocument/documentSymbol",
                "textDocument/semanticTokens/full",
            ] {
                let r = client.request(method, json!({ "textDocument": { "uri": uri } }));
                assert!(r.is_ok(), "{method}: {r:?}");
            }
            let r = client.request("textDocument/formatting", json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } }));
            assert!(r.is_ok(), "{r:?}");
        }
    }
    client.shutdown();
}
