//! Over 200 SSRF payloads against the guard. Two kinds:
//!
//! - **live**: every encoding of a local destination (127.0.0.0/8, 0.0.0.0, ::1, ::, IPv4-mapped
//!   and -compatible forms, `localhost`, names fixed to local addresses, userinfo tricks) is
//!   used as an action's upstream and called through the server; a listener on every local
//!   address (`[::]:PORT`, dual stack) counts the connections it gets: zero.
//! - **dry**: destinations that are not on this machine (private ranges, the metadata addresses
//!   169.254.169.254 and fd00:ec2::254, CGNAT, link-local, NAT64/6to4 wrappers, names fixed to
//!   them) are checked without sending anything: the rendered request is refused as `blocked`
//!   before any connection, and the resolver refuses names that lead there. Nothing is sent
//!   to such an address even if the guard were broken.
//!
//! And redirects: an allowed upstream answering 3xx towards the local listener is not
//! followed.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use mca_compiler::ir::{Namespace, UrlContext, UrlPart, UrlTemplate};
use mca_runtime::stub::{Reply, Stub};
use mca_runtime::{CallContext, Config, Runtime};
use serde_json::json;

/// A listener on every local address of a port; counts accepted connections.
struct Counter {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn counter() -> Counter {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_only_v6(false).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&SocketAddr::from(([0u16; 8], 0)).into())
        .unwrap();
    socket.listen(1024).unwrap();
    socket.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(socket.into()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    Counter {
        port,
        accepted,
        task,
    }
}

/// Hosts (as written in a URL) that all lead to this machine.
fn live_hosts() -> Vec<String> {
    let mut hosts: Vec<String> = [
        // 127.0.0.1 in every IPv4 notation the URL parser accepts.
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "127.000.000.001",
        "127.0.0.1.",
        "2130706433",
        "0x7f000001",
        "0X7F000001",
        "0x7F.0x0.0x0.0x1",
        "0x7f.0.0.1",
        "0x7f.1",
        "0x7f.0x1",
        "017700000001",
        "0177.0.0.1",
        "0177.1",
        "0177.0.1",
        "00177.0.0.01",
        "0177.0x0.0.1",
        "0x7f.0.0.0x1",
        "127.0.0.0x1",
        "127.0.0.01",
        "127.0x0.0.1",
        "127.00.0.1",
        "%31%32%37.0.0.1",
        "127%2e0%2e0%2e1",
        "127.0.0.1%2e",
        // Other loopback addresses.
        "127.0.0.2",
        "127.0.1.1",
        "127.1.2.3",
        "127.127.127.127",
        "127.255.255.254",
        "127.255.255.255",
        "2130706434",
        "0x7f000002",
        "0x7fffffff",
        "2147483647",
        "0x7f.0xff.0xff.0xfe",
        "0177.0377.0377.0376",
        // 0.0.0.0 (this host).
        "0.0.0.0",
        "0",
        "0x0",
        "00",
        "0.0",
        "0.0.0",
        "0x0.0x0.0x0.0x0",
        "000.000.000.000",
        "0.0.0.0.",
        // IPv6 loopback and unspecified.
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[0000:0000:0000:0000:0000:0000:0000:0001]",
        "[::0:1]",
        "[0::1]",
        "[::]",
        "[0:0:0:0:0:0:0:0]",
        // IPv4-mapped and -compatible loopback.
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[0:0:0:0:0:ffff:7f00:0001]",
        "[::ffff:127.1.2.3]",
        "[::ffff:0.0.0.0]",
        "[::ffff:0:0]",
        "[::127.0.0.1]",
        "[::7f00:1]",
        "[::0.0.0.1]",
        // Names in /etc/hosts. (Other names are given fixed answers below: the tests send
        // no DNS query, since the resolver configured here is not on this machine.)
        "localhost",
        "LOCALHOST",
        "LocalHost",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Names the runtime's resolver answers with local addresses (`Config::resolve`).
    for (name, _) in fixed_local() {
        hosts.push(format!("{name}."));
        hosts.push(name.to_uppercase());
        hosts.push(name);
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Names fixed to local addresses (like DNS names that resolve to them: rebinding services,
/// internal names).
fn fixed_local() -> Vec<(String, Vec<IpAddr>)> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    vec![
        ("rebind.attacker.example".into(), vec![ip("127.0.0.1")]),
        ("loopback6.attacker.example".into(), vec![ip("::1")]),
        ("zero.attacker.example".into(), vec![ip("0.0.0.0")]),
        (
            "mapped.attacker.example".into(),
            vec![ip("::ffff:127.0.0.1")],
        ),
        ("compat.attacker.example".into(), vec![ip("::127.0.0.1")]),
        ("unspec6.attacker.example".into(), vec![ip("::")]),
        (
            "two-local.attacker.example".into(),
            vec![ip("127.0.0.1"), ip("::1")],
        ),
        ("127.0.0.1.nip.example".into(), vec![ip("127.0.0.1")]),
        ("internal.corp.example".into(), vec![ip("127.10.0.5")]),
        ("localtest.me".into(), vec![ip("127.0.0.1")]),
        ("ip6-localhost".into(), vec![ip("::1")]),
        ("ip6-loopback".into(), vec![ip("::1")]),
        (
            "localhost.localdomain".into(),
            vec![ip("127.0.0.1"), ip("::1")],
        ),
    ]
}

/// URL origins built around a live host (userinfo and port tricks included).
fn live_origins(port: u16) -> Vec<String> {
    let mut origins = Vec::new();
    for host in live_hosts() {
        origins.push(format!("https://{host}:{port}"));
    }
    for host in ["127.0.0.1", "[::1]", "localhost", "2130706433"] {
        origins.push(format!("https://api.example.com@{host}:{port}"));
        origins.push(format!("https://user:pass@{host}:{port}"));
        origins.push(format!("https://{host}:{port}#@api.example.com"));
        origins.push(format!("https://{host}:{port}?@api.example.com"));
        origins.push(format!("https://{host}:0{port}"));
        origins.push(format!("HTTPS://{host}:{port}"));
        origins.push(format!("http://{host}:{port}"));
    }
    origins
}

/// An action `a{i}` whose origin is `env.BASE_{i}`.
fn action_at(i: usize, retries: u32) -> mca_compiler::ir::Action {
    let name = format!("BASE_{i}");
    let mut a = with_retry(action(&format!("a{i}")), retries, 1);
    a.req().url = UrlTemplate {
        parts: vec![
            UrlPart::Ref {
                r#ref: r(Namespace::Env, &name),
                at: UrlContext::Origin,
            },
            UrlPart::Text("/thing".into()),
        ],
    };
    a.env = vec![name];
    a
}

fn strict(origin: &str, resolve: HashMap<String, Vec<IpAddr>>) -> Config {
    Config {
        allow_private: false,
        env: Some(HashMap::from([("BASE".to_string(), origin.to_string())])),
        resolve,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_destinations_in_every_encoding_get_no_connection() {
    let counter = counter().await;
    let origins = live_origins(counter.port);
    let resolve: HashMap<_, _> = fixed_local().into_iter().collect();
    let mut problems = Vec::new();
    // One runtime (one HTTP client, as in `mca serve`) with one action per origin, each
    // reading its own `env.BASE_i`; called in-process through the execution path the server
    // uses, and every tenth through the HTTP server.
    let mut env = HashMap::new();
    let mut actions = Vec::new();
    for (i, origin) in origins.iter().enumerate() {
        env.insert(format!("BASE_{i}"), origin.clone());
        actions.push(action_at(i, 2));
    }
    let config = Config {
        allow_private: false,
        env: Some(env),
        resolve,
        ..Config::default()
    };
    let server = start(project(actions), config).await;
    for (i, origin) in origins.iter().enumerate() {
        let name = format!("a{i}");
        let answer = if i % 10 == 0 {
            call(&server, &name, json!({"id": "1"}), None).await.1
        } else {
            server
                .runtime
                .execute(&name, json!({"id": "1"}), CallContext::default())
                .await
                .to_json()
        };
        let reason = answer["reason"].as_str().unwrap_or("");
        // `blocked` (the guard) or `invalid_request` (a URL the parser refuses outright).
        if !matches!(reason, "blocked" | "invalid_request") {
            problems.push(format!("{origin}: {answer}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        counter.accepted.load(Ordering::SeqCst),
        0,
        "a refused address got a connection"
    );
    eprintln!("{} live payloads, 0 connections", origins.len());
    // Control: the listener does count, on IPv4 and IPv6 loopback alike.
    for origin in [
        format!("http://127.0.0.1:{}", counter.port),
        format!("http://[::1]:{}", counter.port),
    ] {
        let open = Config {
            allow_private: true,
            ..strict(&origin, HashMap::new())
        };
        let runtime = Runtime::new(project(vec![action("a")]), open).expect("runtime");
        runtime
            .execute("a", json!({"id": "1"}), CallContext::default())
            .await;
    }
    assert_eq!(counter.accepted.load(Ordering::SeqCst), 2, "control");
    assert!(origins.len() >= 100, "{}", origins.len());
}

/// Hosts that are not on this machine and must be refused before anything is sent.
fn dry_hosts() -> Vec<&'static str> {
    vec![
        // Metadata services.
        "169.254.169.254",
        "2852039166",
        "0xa9fea9fe",
        "0xA9.0xFE.0xA9.0xFE",
        "0251.0376.0251.0376",
        "169.254.43518",
        "169.16689662",
        "[::ffff:169.254.169.254]",
        "[::ffff:a9fe:a9fe]",
        "[::169.254.169.254]",
        "[64:ff9b::169.254.169.254]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:a9fe:a9fe::]",
        "[fd00:ec2::254]",
        "[FD00:EC2:0:0:0:0:0:254]",
        "169.254.170.2",
        "100.100.100.200",
        "192.0.0.192",
        // Private ranges.
        "10.0.0.1",
        "10.255.255.255",
        "167772161",
        "0xa000001",
        "012.0.0.1",
        "10.1",
        "172.16.0.1",
        "172.31.255.254",
        "2886729729",
        "0xac100001",
        "192.168.0.1",
        "192.168.1.1",
        "3232235777",
        "0xc0a80101",
        "0300.0250.01.01",
        "192.168.257",
        "[::ffff:10.0.0.1]",
        "[::ffff:192.168.1.1]",
        "[::ffff:172.16.0.1]",
        "[::10.0.0.1]",
        // Link-local, CGNAT, reserved, documentation, multicast, broadcast, benchmarking.
        "169.254.0.1",
        "[fe80::1]",
        "[fe80::a9fe:a9fe]",
        "100.64.0.1",
        "100.127.255.254",
        "240.0.0.1",
        "255.255.255.255",
        "4294967295",
        "224.0.0.1",
        "239.255.255.250",
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "198.18.0.1",
        "192.0.0.1",
        "[ff02::1]",
        "[2001:db8::1]",
        "[fc00::1]",
        "[fd12:3456:789a::1]",
        "[fec0::1]",
        "[64:ff9b::10.0.0.1]",
        "[2002:0a00:0001::]",
        "[2002:c0a8:0101::1]",
    ]
}

fn fixed_private() -> Vec<(String, Vec<IpAddr>)> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    vec![
        (
            "metadata.google.internal".into(),
            vec![ip("169.254.169.254")],
        ),
        ("instance-data".into(), vec![ip("169.254.169.254")]),
        ("metadata.ec2.example".into(), vec![ip("fd00:ec2::254")]),
        ("db.internal.example".into(), vec![ip("10.0.0.5")]),
        ("router.example".into(), vec![ip("192.168.0.1")]),
        ("k8s.example".into(), vec![ip("172.20.0.1")]),
        ("cgnat.example".into(), vec![ip("100.64.1.1")]),
        ("link.example".into(), vec![ip("fe80::1")]),
        ("ula.example".into(), vec![ip("fd00::1")]),
        (
            "mapped-meta.example".into(),
            vec![ip("::ffff:169.254.169.254")],
        ),
        ("nat64-meta.example".into(), vec![ip("64:ff9b::a9fe:a9fe")]),
        ("6to4-private.example".into(), vec![ip("2002:a00:1::")]),
        (
            "all-private.example".into(),
            vec![ip("10.0.0.1"), ip("169.254.169.254"), ip("::1")],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_private_and_metadata_destinations_are_refused_before_any_connection() {
    let mut problems = Vec::new();
    let mut count = 0;
    let resolve: HashMap<_, _> = fixed_private().into_iter().collect();
    let origins: Vec<String> = dry_hosts()
        .iter()
        .flat_map(|h| [format!("https://{h}"), format!("https://{h}:8443")])
        .collect();
    let config = Config {
        allow_private: false,
        env: Some(
            (0..origins.len())
                .map(|i| (format!("BASE_{i}"), origins[i].clone()))
                .collect(),
        ),
        ..Config::default()
    };
    let actions = (0..origins.len()).map(|i| action_at(i, 0)).collect();
    let runtime = Runtime::new(project(actions), config).expect("runtime");
    for (i, origin) in origins.iter().enumerate() {
        count += 1;
        // Rendering applies the address policy to IP literals: refused here, unsent.
        match runtime.render_request(&format!("a{i}"), json!({"id": "1"}), CallContext::default()) {
            Err(message) if message.contains("refused") || message.contains("not valid") => {}
            other => problems.push(format!("{origin}: {other:?}")),
        }
    }
    // Names whose addresses are private: the resolver (which every connection goes through)
    // leaves no address to connect to.
    let runtime = Runtime::new(
        project(vec![action("a")]),
        strict("https://api.example.com", resolve),
    )
    .expect("runtime");
    for (name, _) in fixed_private() {
        for n in [name.clone(), format!("{name}."), name.to_uppercase()] {
            count += 1;
            match runtime.resolve_upstream(&n).await {
                Err(message) if message.contains("refused") => {}
                other => problems.push(format!("{n}: {other:?}")),
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("{count} dry payloads refused");
    assert!(count >= 100, "{count}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_with_one_public_and_one_private_address_connects_only_to_the_public_one() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let resolve = HashMap::from([(
        "mixed.example".to_string(),
        vec![ip("127.0.0.1"), ip("93.184.216.34"), ip("169.254.169.254")],
    )]);
    let runtime = Runtime::new(
        project(vec![action("a")]),
        strict("https://api.example.com", resolve),
    )
    .expect("runtime");
    // Resolution only: nothing is sent to the public address either.
    assert_eq!(
        runtime.resolve_upstream("mixed.example").await,
        Ok(vec![ip("93.184.216.34")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_towards_local_addresses_are_never_followed() {
    let counter = counter().await;
    let p = counter.port;
    let mut cases = Vec::new();
    for status in [301, 302, 303, 307, 308] {
        for location in [
            format!("http://127.0.0.1:{p}/latest/meta-data/"),
            format!("https://127.0.0.1:{p}/"),
            format!("http://[::1]:{p}/"),
            format!("http://localhost:{p}/"),
            format!("http://2130706433:{p}/"),
            format!("//127.0.0.1:{p}/x"),
        ] {
            cases.push((status, location));
        }
    }
    // The upstreams themselves are explicitly routed (allowed); their redirects must not be.
    let mut stubs = Vec::new();
    let mut config = strict("https://unused.example.com", HashMap::new());
    let mut env = HashMap::new();
    for (i, (status, location)) in cases.iter().enumerate() {
        let stub = Stub::start(vec![
            Reply::status(*status).with_header("Location", location)
        ])
        .await
        .unwrap();
        let host = format!("r{i}.example.com");
        env.insert(format!("BASE_{i}"), format!("https://{host}"));
        config = config.route(host, stub.addr());
        stubs.push(stub);
    }
    config.env = Some(env);
    let actions = (0..cases.len()).map(|i| action_at(i, 2)).collect();
    let runtime = Runtime::new(project(actions), config).expect("runtime");
    for (i, (_, location)) in cases.iter().enumerate() {
        let answer = runtime
            .execute(&format!("a{i}"), json!({"id": "1"}), CallContext::default())
            .await
            .to_json();
        assert_eq!(answer["reason"], "upstream_status", "{location}: {answer}");
        assert_eq!(stubs[i].request_count(), 1);
    }
    let count = cases.len();
    assert_eq!(counter.accepted.load(Ordering::SeqCst), 0);
    eprintln!("{count} redirects, none followed");
}
