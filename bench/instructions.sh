#!/usr/bin/env bash
# Instructions per cache miss: the baseline and `mca serve` with examples/lookup_customer.mca,
# each run under callgrind against the nginx upstream of bench/run.sh, counted only over the
# measured requests (callgrind starts with counting off; it is switched on after a warm-up and
# off again after the run). Unlike requests/s, the count is exact and does not move with other
# load on the machine: the figure to compare two builds with (MCA=path/to/mca). See BENCHMARKS.md.
#
# Usage: bench/instructions.sh   (about 1.5 minutes once built; DURATION=N seconds per run)
#        CACHE_SIM=1 bench/instructions.sh   also simulates the caches (callgrind's model: 32 KB
#        L1 caches) and prints L1 instruction, data-read and data-write misses per request
#
# Installs nginx, wrk and valgrind with apt-get when they are missing. Traffic goes only to
# 127.0.0.1; everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10} # seconds of measured requests per server (callgrind runs ~50x slower)
UP_PORT=${UP_PORT:-18190}
PORT=${PORT:-18191}
CACHE_SIM=${CACHE_SIM:-0}

# shellcheck source=bench/common.sh
. bench/common.sh
need wrk wrk
need valgrind valgrind
build_servers
start_nginx
export CRM_BASE_URL=http://127.0.0.1:$UP_PORT CRM_TOKEN=bench-token
URL=http://127.0.0.1:$PORT/actions/lookup_customer

declare -A R
# measure NAME COMMAND...: "requests errors instructions" of the measured run in R[NAME].
measure() {
  local name=$1 pid out total bad=0
  shift
  valgrind --tool=callgrind --instr-atstart=no --cache-sim="$([ "$CACHE_SIM" = 1 ] && echo yes || echo no)" \
    --callgrind-out-file="$WORK/$name.out" "$@" \
    2>"$WORK/$name.log" &
  pid=$!
  PIDS+=("$pid")
  for i in $(seq 300); do
    curl -sf --max-time 2 -X POST -H 'Content-Type: application/json' \
      -d '{"phone":"+4930123456"}' "$URL" >/dev/null 2>&1 && break
    [ "$i" = 300 ] && { echo "$name did not start" >&2; tail -n 5 "$WORK/$name.log" >&2; exit 1; }
    sleep 0.2
  done
  wrk -t1 -c8 -d3s --timeout 10s -s bench/miss.lua "$URL" -- 1 >/dev/null # warm-up
  callgrind_control -i on "$pid" >/dev/null 2>&1
  out=$(wrk -t1 -c8 -d"${DURATION}s" --timeout 10s -s bench/miss.lua "$URL" -- 2 |
    awk '/^RESULT/ { print $5, $6 }')
  callgrind_control -i off "$pid" >/dev/null 2>&1
  if [ "$name" = mca ]; then # answers that were not ok (fallbacks are cheaper)
    bad=$(curl -sf --max-time 5 "http://127.0.0.1:$PORT/metrics" |
      awk '/^mca_action_calls_total/ && !/outcome="ok"/ { n += $2 } END { print n + 0 }')
  fi
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  total=$(callgrind_annotate "$WORK/$name.out" 2>/dev/null |
    awk -v sim="$CACHE_SIM" '/PROGRAM TOTALS/ {
      gsub(",", "")
      # With the cache model the events are Ir Dr Dw I1mr D1mr D1mw ..., each with a share.
      if (sim == 1) print $1, $7, $9, $11; else print $1 }')
  R[$name]="$(echo "$out" | awk -v b="$bad" '{ print $1, $2 + b }') $total"
}

echo "measuring under callgrind: 3 s warm-up + ${DURATION} s per server, 8 connections, misses"
measure baseline "$BASELINE" "127.0.0.1:$PORT"
measure mca "$MCA" serve examples/lookup_customer.mca --listen "127.0.0.1:$PORT" --allow-private

echo
echo "lookup_customer cache misses under callgrind ($(date -u +%Y-%m-%d))"
echo
if [ "$CACHE_SIM" = 1 ]; then
  echo "| server   | requests | errors | instructions / request | ×baseline | L1i misses / req | L1d read misses / req | L1d write misses / req |"
  echo "|----------|---------:|-------:|-----------------------:|----------:|-----------------:|----------------------:|-----------------------:|"
else
  echo "| server   | requests | errors | instructions / request | ×baseline |"
  echo "|----------|---------:|-------:|-----------------------:|----------:|"
fi
base_per=$(echo "${R[baseline]}" | awk '{ printf "%.0f", $3 / $1 }')
for name in baseline mca; do
  echo "${R[$name]}" | awk -v n="$name" -v b="$base_per" '{
    p = $3 / $1; printf "| %-8s | %8d | %6d | %22.0f | %8.2fx |", n, $1, $2, p, p / b
    if (NF >= 6) printf " %16.0f | %21.0f | %22.0f |", $4 / $1, $5 / $1, $6 / $1
    printf "\n" }'
done
echo
echo "User-space instructions of the whole server process (hyper, reqwest, tokio, the allocator"
echo "included; the kernel's TCP work is not counted) divided by the requests answered."
if [ "$CACHE_SIM" = 1 ]; then
  echo "Cache misses are callgrind's model of 32 KB L1 caches, not the machine's: a miss there is"
  echo "memory a request touches that the previous requests did not keep close (copies of large"
  echo "futures, fresh allocations), so fewer is better even where the real caches are larger."
fi
