//! Criterion benches of the runtime's hot paths (`cargo bench -p mca-runtime --bench paths`):
//!
//! - `render/*`: the `say` template and the request URL of lookup_customer;
//! - `mapping/{1KB,100KB,2MB}`: a CRM response of that size parsed and mapped to outputs
//!   (lookup_customer's outputs plus a list over every record and a filter count over every
//!   record), and `mapping_only/*` the mapping of the already parsed body;
//! - `execute/cache_hit`: `Runtime::execute` of lookup_customer answered from its cache (input
//!   validation, cache lookup, `say`, the answer), and `execute/cache_hit_json` with the answer
//!   serialized as the server sends it (`to_json_bytes`).
//!
//! The load benchmark over HTTP is `bench/run.sh`; results are in BENCHMARKS.md.

use std::collections::HashMap;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mca_compiler::{compile, ir, Source};
use mca_runtime::perf::{Mapper, Values};
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::{CallContext, Config, Runtime};
use serde_json::{json, Value};

fn example(name: &str) -> String {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn project(text: &str) -> ir::Project {
    let c = compile(&[Source::new("bench.mca", text)]);
    c.ir.unwrap_or_else(|| panic!("{:?}", c.diagnostics))
}

/// lookup_customer's outputs, plus outputs that read every record.
const MAPPING_ACTION: &str = r#"
action bench_mapping {
  description "Mapping benchmark"
  input phone: string(phone)
  request GET "https://crm.example.com/v1/customers" {
    query "phone" = input.phone
  }
  output {
    found: bool = exists($.data[0])
    customer_id: string? = $.data[0].id
    name: string? = $.data[0].name
    company: string? = $.data[0].company.name
    open_tickets: int = count($.data[0].tickets[?@.status == 'open'])
    ids: list<string> = $.data[*].id
    vip: int = count($.data[?@.tier == 'gold'])
    total: int = $.total
  }
}
"#;

/// A CRM answer of about `bytes` bytes: `data` holds customers with tickets.
fn crm_response(bytes: usize) -> Vec<u8> {
    let customer = |i: usize| {
        json!({
            "id": format!("c-{i}"),
            "name": format!("Customer {i}"),
            "email": format!("customer{i}@example.com"),
            "tier": if i % 7 == 0 { "gold" } else { "standard" },
            "company": {"id": format!("co-{i}"), "name": "Beispiel GmbH"},
            "tickets": [
                {"id": format!("t-{i}-1"), "status": "open", "subject": "Invoice question"},
                {"id": format!("t-{i}-2"), "status": "closed", "subject": "Password reset"}
            ]
        })
    };
    let one = serde_json::to_vec(&customer(0)).map_or(1, |v| v.len());
    let n = (bytes / one).max(1);
    serde_json::to_vec(&json!({"data": (0..n).map(customer).collect::<Vec<_>>(), "total": n}))
        .unwrap_or_default()
}

fn render(c: &mut Criterion) {
    let p = project(&example("lookup_customer.mca"));
    let action = &p.actions[0];
    let mut values = Values::default();
    values
        .inputs
        .insert("phone".into(), Value::from("+4930123456"));
    values.outputs = serde_json::from_value(json!({"found": true, "customer_id": "c-1042",
        "name": "Max Mustermann", "company": "Beispiel GmbH", "open_tickets": 2}))
    .unwrap_or_default();
    values.env = HashMap::from([(
        "CRM_BASE_URL".to_string(),
        "https://crm.example.com".to_string(),
    )]);
    let say = action
        .say
        .first()
        .map(|s| s.text.clone())
        .unwrap_or_else(|| panic!("say"));
    let mut g = c.benchmark_group("render");
    g.bench_function("say", |b| b.iter(|| values.say(&say)));
    let query = [("phone".to_string(), "+4930123456".to_string())];
    g.bench_function("url", |b| {
        b.iter(|| values.url(&action.request.as_ref().expect("request").url.parts, &query))
    });
    g.finish();
}

fn mapping(c: &mut Criterion) {
    let p = project(MAPPING_ACTION);
    let mapper = Mapper::new(&p.actions[0].outputs).unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("mapping");
    for (label, size) in [("1KB", 1 << 10), ("100KB", 100 << 10), ("2MB", 2 << 20)] {
        let body = crm_response(size);
        assert!(mapper.map_body(&body).is_ok());
        g.throughput(Throughput::Bytes(body.len() as u64));
        if size > 1 << 20 {
            g.sample_size(20);
        }
        g.bench_with_input(
            BenchmarkId::new("parse_and_map", label),
            &body,
            |b, body| b.iter(|| mapper.map_body(body)),
        );
        let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
        g.bench_with_input(BenchmarkId::new("map_only", label), &parsed, |b, v| {
            b.iter(|| mapper.map(v))
        });
    }
    g.finish();
}

fn cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let body = json!({"data": [{"id": "c-1042", "name": "Max Mustermann",
        "company": {"name": "Beispiel GmbH"},
        "tickets": [{"status": "open"}, {"status": "closed"}]}], "total": 1});
    let stub = rt
        .block_on(Stub::start(vec![Reply::json(200, body)]))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = Config {
        allow_private: true,
        env: Some(HashMap::from([
            ("CRM_BASE_URL".to_string(), stub.url()),
            ("CRM_TOKEN".to_string(), "bench-token".to_string()),
        ])),
        ..Config::default()
    };
    let runtime = Runtime::new(project(&example("lookup_customer.mca")), config)
        .unwrap_or_else(|e| panic!("{e}"));
    let call = CallContext::new(Some("bench-call".into()), None);
    let inputs = json!({"phone": "+4930123456"});
    let first = rt.block_on(runtime.execute("lookup_customer", inputs.clone(), call.clone()));
    assert_eq!(first.answer().map(|a| a.cached), Some(false), "{first:?}");
    let mut g = c.benchmark_group("execute");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("cache_hit", |b| {
        b.iter(|| {
            let r = rt.block_on(runtime.execute("lookup_customer", inputs.clone(), call.clone()));
            debug_assert!(r.answer().is_some_and(|a| a.cached));
            r
        })
    });
    g.bench_function("cache_hit_json", |b| {
        b.iter(|| {
            let r = rt.block_on(runtime.execute("lookup_customer", inputs.clone(), call.clone()));
            r.to_json_bytes()
        })
    });
    g.finish();
}

criterion_group!(benches, render, mapping, cache_hit);
criterion_main!(benches);
