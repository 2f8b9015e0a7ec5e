//! Start-up checks: every missing variable is listed with the actions that need it, and other
//! problems are reported together.

mod common;

use std::collections::HashMap;

use common::*;
use mca_runtime::{Config, Runtime, StartupProblem};

fn env(pairs: &[(&str, &str)]) -> Config {
    Config {
        env: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        ),
        ..Config::default()
    }
}

#[test]
fn every_missing_variable_is_listed_with_the_actions_that_need_it() {
    let err = Runtime::new(examples(), env(&[("CRM_TOKEN", "t")]))
        .err()
        .expect("refuses to start");
    let missing = err.missing_variables();
    let names: Vec<&str> = missing.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "CRM_BASE_URL",
            "HELPDESK_TOKEN",
            "HELPDESK_URL",
            "HELPDESK_USER",
            "SHOP_API_KEY"
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("CRM_BASE_URL (env) is not set; needed by lookup_customer"),
        "{text}"
    );
    assert!(
        text.contains("SHOP_API_KEY (secret) is not set; needed by order_status"),
        "{text}"
    );
    assert!(text.contains("5 problems"), "{text}");
}

#[test]
fn a_variable_needed_by_several_actions_names_them_all() {
    let a = action("a");
    let b = action("b");
    let err = Runtime::new(project(vec![a, b]), env(&[])).err().unwrap();
    assert_eq!(
        err.problems,
        vec![StartupProblem::MissingVariable {
            name: "BASE".into(),
            secret: false,
            actions: vec!["a".into(), "b".into()],
        }]
    );
}

#[test]
fn empty_variables_count_as_missing() {
    let err = Runtime::new(project(vec![action("a")]), env(&[("BASE", "")]))
        .err()
        .unwrap();
    assert_eq!(err.missing_variables().len(), 1);
}

#[test]
fn a_base_url_without_a_scheme_is_refused_at_start() {
    let err = Runtime::new(
        project(vec![action("a")]),
        env(&[("BASE", "crm.example.com")]),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err.problems[0], StartupProblem::InvalidUrl { action, .. } if action == "a"),
        "{err}"
    );
}

#[test]
fn an_ir_of_another_version_is_refused() {
    let mut p = project(vec![action("a")]);
    p.ir_version += 1;
    let err = Runtime::new(p, env(&[("BASE", "https://x.example")]))
        .err()
        .unwrap();
    assert!(matches!(err.problems[0], StartupProblem::IrVersion { .. }));
}

#[test]
fn a_jsonpath_that_does_not_parse_is_refused() {
    let mut a = action("a");
    if let mca_compiler::ir::Source::Path(m) = &mut a.outputs[0].source {
        m.path = "$.[[".into();
    }
    let err = Runtime::new(project(vec![a]), env(&[("BASE", "https://x.example")]))
        .err()
        .unwrap();
    assert!(matches!(
        &err.problems[0],
        StartupProblem::InvalidJsonPath { output, .. } if output == "value"
    ));
}

#[test]
fn secret_values_never_appear_in_start_up_errors() {
    let mut a = action("a");
    a.secrets = vec!["KEY".into()];
    let err = Runtime::new(
        project(vec![a]),
        env(&[("BASE", "not a url"), ("KEY", "s3cret-start")]),
    )
    .err()
    .unwrap();
    assert!(!err.to_string().contains("s3cret-start"));
}

#[test]
fn the_examples_start_with_all_variables_set() {
    let vars = [
        ("CRM_BASE_URL", "https://crm.example.com"),
        ("HELPDESK_URL", "https://helpdesk.example.com"),
        ("CRM_TOKEN", "t"),
        ("HELPDESK_USER", "u"),
        ("HELPDESK_TOKEN", "p"),
        ("SHOP_API_KEY", "k"),
    ];
    let rt = Runtime::new(examples(), env(&vars)).expect("starts");
    let names: Vec<&str> = rt.actions().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["create_ticket", "lookup_customer", "order_status"]);
}
