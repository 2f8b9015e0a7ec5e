//! An open-loop load generator for loopback runs (`bench/load_faults.sh`): sends `RATE`
//! requests per second for `SECONDS`, each at its scheduled time whatever the earlier ones are
//! doing (no coordinated omission: latency counts from the scheduled time), and prints one
//! summary line of JSON: requests, answers by HTTP status, fallbacks, transport errors,
//! latency percentiles overall and of `503`s.
//!
//! `cargo run --release -p mca-runtime --example load -- URL RATE SECONDS [BODY] [TOKEN]`
//!
//! Bounded: at most `RATE * SECONDS` requests, each with a 10 s client timeout, at most 4096
//! outstanding (more are counted as `not_sent`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    fallbacks: u64,
    errors: u64,
    not_sent: u64,
    latencies_us: Vec<u64>,
    shed_latencies_us: Vec<u64>,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080/actions/load".into());
    assert!(
        url.starts_with("http://127.") || url.starts_with("http://[::1]"),
        "loopback only"
    );
    let rate: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let body = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| r#"{"id": "1"}"#.into());
    let token = args.get(4).cloned();
    // reqwest is built without a default TLS crypto provider (plain HTTP here anyway).
    let _ = rustls::crypto::ring::default_provider().install_default();
    mca_runtime::block_on(async move {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(4096)
            .build()
            .expect("client");
        let tally = Arc::new(Mutex::new(Tally::default()));
        let outstanding = Arc::new(tokio::sync::Semaphore::new(4096));
        let total = rate * seconds;
        let start = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..total {
            let at = start + Duration::from_nanos(n * 1_000_000_000 / rate);
            tokio::time::sleep_until(at).await;
            let Ok(permit) = outstanding.clone().try_acquire_owned() else {
                tally.lock().unwrap().not_sent += 1;
                continue;
            };
            let (client, tally, url, body, token) = (
                client.clone(),
                tally.clone(),
                url.clone(),
                body.clone(),
                token.clone(),
            );
            tasks.spawn(async move {
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-call-id", format!("load-{}", n % 1000))
                    .body(body);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let result = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let bytes = resp.bytes().await.unwrap_or_default();
                        Some((status, bytes))
                    }
                    Err(_) => None,
                };
                let took = Instant::now().duration_since(at.into_std()).as_micros() as u64;
                let mut t = tally.lock().unwrap();
                match result {
                    Some((status, bytes)) => {
                        *t.statuses.entry(status).or_default() += 1;
                        let fallback = br#""status":"fallback""#;
                        if bytes.windows(fallback.len()).any(|w| w == fallback) {
                            t.fallbacks += 1;
                        }
                        if status == 503 {
                            t.shed_latencies_us.push(took);
                        }
                        t.latencies_us.push(took);
                    }
                    None => t.errors += 1,
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let elapsed = start.elapsed().as_secs_f64();
        let mut t = tally.lock().unwrap();
        t.latencies_us.sort_unstable();
        t.shed_latencies_us.sort_unstable();
        let statuses: Vec<String> = t
            .statuses
            .iter()
            .map(|(s, n)| format!("\"{s}\": {n}"))
            .collect();
        let answered: u64 = t.statuses.values().sum();
        let server_errors: u64 = t
            .statuses
            .iter()
            .filter(|(s, _)| **s >= 500 && **s != 503)
            .map(|(_, n)| n)
            .sum();
        println!(
            "{{\"requests\": {total}, \"answered\": {answered}, \"errors\": {}, \"not_sent\": {}, \"seconds\": {elapsed:.1}, \
             \"statuses\": {{{}}}, \"fallbacks\": {}, \"5xx_other_than_503\": {server_errors}, \
             \"p50_ms\": {:.2}, \"p90_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}, \
             \"shed_p50_ms\": {:.2}, \"shed_p99_ms\": {:.2}}}",
            t.errors,
            t.not_sent,
            statuses.join(", "),
            t.fallbacks,
            pct(&t.latencies_us, 0.50),
            pct(&t.latencies_us, 0.90),
            pct(&t.latencies_us, 0.99),
            pct(&t.latencies_us, 1.0),
            pct(&t.shed_latencies_us, 0.50),
            pct(&t.shed_latencies_us, 0.99),
        );
    })?;
    Ok(())
}
