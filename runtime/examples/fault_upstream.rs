//! A loopback upstream for load runs (`bench/load_faults.sh`): answers `{"value": "v"}` after
//! `LATENCY_MS`, except for `FAIL_PERCENT` of requests, half of them `503` and half a
//! connection reset. Prints its address, then serves until killed or for `MAX_SECONDS`.
//!
//! `cargo run --release -p mca-runtime --example fault_upstream -- LATENCY_MS FAIL_PERCENT [MAX_SECONDS]`

use std::time::Duration;

use mca_runtime::stub::{Reply, Stub};

fn main() -> std::io::Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or(0))
        .collect();
    let latency = Duration::from_millis(args.first().copied().unwrap_or(20));
    let fail_percent = args.get(1).copied().unwrap_or(10).min(100) as usize;
    let max_seconds = args.get(2).copied().unwrap_or(600);
    let ok = Reply::json(200, serde_json::json!({"value": "v"})).delayed(latency);
    // 200 slots: fail_percent% faults, half 503 and half reset.
    let faults = fail_percent * 2;
    let choices: Vec<Reply> = (0..200)
        .map(|i| match i {
            i if i < faults / 2 => Reply::status(503).delayed(latency),
            i if i < faults => Reply::Reset,
            _ => ok.clone(),
        })
        .collect();
    mca_runtime::block_on(async move {
        let stub = Stub::start(vec![Reply::Random(choices)]).await?;
        println!("{}", stub.addr());
        tokio::time::sleep(Duration::from_secs(max_seconds)).await;
        Ok(())
    })?
}
