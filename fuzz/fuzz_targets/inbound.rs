//! Inbound request decoding: the body of `POST /actions/{name}` goes through the server's JSON
//! decoding and each action's input validation (types, formats, enums, defaults). Any bytes:
//! no panic, no stack overflow (deep nesting), and an answer that is either the inputs or a
//! 4xx error naming what is wrong.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mca_runtime::{Config, Runtime};

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let sources = [
            (
                "hostile.mca",
                include_str!("../../runtime/tests/fixtures/hostile.mca"),
            ),
            (
                "order_status.mca",
                include_str!("../../examples/order_status.mca"),
            ),
            (
                "create_ticket.mca",
                include_str!("../../examples/create_ticket.mca"),
            ),
            (
                "lookup_customer.mca",
                include_str!("../../examples/lookup_customer.mca"),
            ),
        ]
        .map(|(n, t)| mca_compiler::Source::new(n.to_string(), t.to_string()));
        let ir = mca_compiler::compile(&sources)
            .ir
            .expect("fixtures compile");
        let mut env = HashMap::new();
        for a in &ir.actions {
            for n in a.env.iter().chain(&a.secrets) {
                env.insert(n.clone(), "https://placeholder.example.com".to_string());
            }
        }
        let config = Config {
            env: Some(env),
            ..Config::default()
        };
        Runtime::new(ir, config).expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let rt = runtime();
    let names: Vec<String> = rt.actions().map(|a| a.name.clone()).collect();
    for name in &names {
        match mca_runtime::hooks::decode_inputs(rt, name, data) {
            Ok(inputs) => {
                let action = rt.action(name).expect("action");
                // Exactly the declared inputs, each of its declared type.
                assert_eq!(inputs.len(), action.inputs.len());
                for input in &action.inputs {
                    let v = &inputs[&input.name];
                    assert!(
                        v.is_null() || input.ty.check(v).is_ok(),
                        "{name}.{}",
                        input.name
                    );
                }
            }
            Err(e) => assert!((400..500).contains(&e.http_status), "{}", e.http_status),
        }
    }
});
