#!/usr/bin/env bash
# Load and overload runs of `mca serve` against a fault-injecting upstream, all on loopback
# (docs/reliability.md records the figures). Not part of CI.
#
#   bench/load_faults.sh                 steady run (60 s) then the overload runs (2 x 20 s)
#   STEADY_SECONDS=10 bench/load_faults.sh   shorter
#
# 1. Steady: RATE requests/s for STEADY_SECONDS; the upstream answers in 20 ms and fails 10% of
#    requests (half 503, half connection reset). Expected: every call answered, no 5xx from
#    mca (failed calls are retried, or answered with their fallback), p99 reported.
# 2. Overload: mca with --max-in-flight 64 and an upstream answering in 100 ms has a capacity
#    of 64 / 0.1 s = 640 calls/s. A run at that rate, then one at 5x (3200/s). Expected: the
#    excess is shed with fast 503s (p99 reported), the rest answered as usual, and the
#    memory of mca stays flat (RSS sampled every second).
#
# Traffic goes only to 127.0.0.1; every run is bounded in requests and time; everything
# started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-500}
STEADY_SECONDS=${STEADY_SECONDS:-60}
OVERLOAD_SECONDS=${OVERLOAD_SECONDS:-20}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-64}
OVER_LATENCY_MS=${OVER_LATENCY_MS:-100}
PORT=${PORT:-18391}

echo "building (release): mca, the fault upstream and the load generator"
cargo build --release --quiet -p mca-cli
cargo build --release --quiet -p mca-runtime --example fault_upstream --example load
MCA=target/release/mca
UPSTREAM=target/release/examples/fault_upstream
LOAD=target/release/examples/load

# shellcheck source=bench/common.sh
. bench/common.sh

# upstream LATENCY_MS FAIL_PERCENT: starts one, sets UP_ADDR
upstream() {
  "$UPSTREAM" "$1" "$2" 900 >"$WORK/upstream.addr" &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$WORK/upstream.addr" ] && break; sleep 0.05; done
  UP_ADDR=$(head -1 "$WORK/upstream.addr")
}

# serve MAX_IN_FLIGHT: starts mca, sets MCA_PID
serve() {
  LOAD_UPSTREAM="http://$UP_ADDR" MCA_LOG=warn "$MCA" serve bench/load/load.mca --allow-private \
    --listen "127.0.0.1:$PORT" --max-in-flight "$1" 2>"$WORK/mca.log" &
  MCA_PID=$!
  PIDS+=("$MCA_PID")
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "mca did not start"; cat "$WORK/mca.log"; exit 1
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# run RATE SECONDS LABEL: load with RSS sampling; prints the summary and the memory
run() {
  local before after max=0 sampler
  before=$(rss_kb "$MCA_PID")
  ( while sleep 1; do rss_kb "$MCA_PID" >>"$WORK/rss.$3" 2>/dev/null || break; done ) &
  sampler=$!
  "$LOAD" "http://127.0.0.1:$PORT/actions/load" "$1" "$2" >"$WORK/out.$3"
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  after=$(rss_kb "$MCA_PID")
  max=$(sort -n "$WORK/rss.$3" 2>/dev/null | tail -1 || true)
  echo "== $3: $1 requests/s for $2 s"
  cat "$WORK/out.$3"
  echo "mca RSS: before ${before} kB, max ${max:-$after} kB, after ${after} kB"
  echo "mca shed counter: $(curl -fsS "http://127.0.0.1:$PORT/metrics" | grep '^mca_shed_total' || echo none)"
}

command -v curl >/dev/null 2>&1 || { apt-get install -y -qq curl >/dev/null; }

upstream 20 10
serve 1024
echo "upstream $UP_ADDR (20 ms, 10% failing: 503 and reset), mca on 127.0.0.1:$PORT"
run "$RATE" "$STEADY_SECONDS" steady
curl -fsS "http://127.0.0.1:$PORT/metrics" | grep -E '^mca_(upstream_attempts|upstream_retries|action_calls|breaker_state|retry_budget)' || true
kill "$MCA_PID"; wait "$MCA_PID" 2>/dev/null || true

upstream "$OVER_LATENCY_MS" 0
serve "$MAX_IN_FLIGHT"
CAPACITY=$((MAX_IN_FLIGHT * 1000 / OVER_LATENCY_MS))
echo "upstream $UP_ADDR ($OVER_LATENCY_MS ms), mca --max-in-flight $MAX_IN_FLIGHT: capacity $CAPACITY calls/s"
run "$CAPACITY" "$OVERLOAD_SECONDS" capacity
run $((CAPACITY * 5)) "$OVERLOAD_SECONDS" overload_5x
