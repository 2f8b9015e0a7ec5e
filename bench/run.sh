#!/usr/bin/env bash
# Load benchmark: `mca serve` with examples/lookup_customer.mca against a hand-written Rust
# baseline doing the same job (bench/baseline), both calling the same nginx upstream, all on
# loopback, measured with wrk in one run. Prints one table (requests/s, p50, p99, ratio to the
# baseline) and the server's memory. See BENCHMARKS.md.
#
# Usage: bench/run.sh            (about 5 minutes once built; DURATION=N seconds per run,
#                                ROUNDS=N rounds: each measured run is repeated N times,
#                                baseline and mca alternating, and the table shows medians)
#
# Installs nginx and wrk with apt-get when they are missing. Sends traffic only to 127.0.0.1;
# every load run is bounded in time (wrk -d), and everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10} # seconds per measured run
ROUNDS=${ROUNDS:-3}      # rounds of runs, baseline and mca alternating; the table shows medians
WARMUP=${WARMUP:-2}      # seconds of unmeasured load before each measured run
FILL=${FILL:-100000}     # cache entries made before measuring the memory they take
UP_PORT=${UP_PORT:-18180}
BASE_PORT=${BASE_PORT:-18181}
MCA_PORT=${MCA_PORT:-18182}
TOKEN=bench-token

# shellcheck source=bench/common.sh
. bench/common.sh
need wrk wrk
build_servers
start_nginx
UP_PID=$NGINX_PID

export CRM_BASE_URL=http://127.0.0.1:$UP_PORT CRM_TOKEN=$TOKEN
"$BASELINE" "127.0.0.1:$BASE_PORT" 2>"$WORK/baseline.log" &
PIDS+=($!)
BASE_PID=$!
# The default log level (info), as `mca serve` runs in production; the log goes to a file.
"$MCA" serve examples/lookup_customer.mca --listen "127.0.0.1:$MCA_PORT" --allow-private \
  --cache-capacity "$FILL" 2>"$WORK/mca.log" &
PIDS+=($!)
MCA_PID=$!

BASE_URL=http://127.0.0.1:$BASE_PORT/actions/lookup_customer
MCA_URL=http://127.0.0.1:$MCA_PORT/actions/lookup_customer
UP_URL="http://127.0.0.1:$UP_PORT/v1/customers?phone=%2B4930123456"

ask() { # url -> the answer to one lookup
  curl -sS --max-time 5 -X POST -H 'Content-Type: application/json' -H 'X-Call-Id: check' \
    -d '{"phone":"+4930123456"}' "$1"
}
for i in $(seq 100); do
  if curl -sf --max-time 1 "$UP_URL" >/dev/null 2>&1 &&
    ask "$BASE_URL" >/dev/null 2>&1 && ask "$MCA_URL" >/dev/null 2>&1; then
    break
  fi
  [ "$i" = 100 ] && {
    echo "the servers did not start"
    tail -n 5 "$WORK"/*.log "$WORK/nginx/logs/"* >&2
    exit 1
  }
  sleep 0.1
done
for url in "$BASE_URL" "$MCA_URL"; do
  answer=$(ask "$url")
  case $answer in
  *'"status":"ok"'*'"found":true'*'"open_tickets":2'*'Found Max Mustermann from Beispiel GmbH.'*) ;;
  *)
    echo "unexpected answer from $url: $answer" >&2
    exit 1
    ;;
  esac
done

rss_mb() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# CPU clock ticks (user + system) of a process and its children (nginx's worker).
cpu_ticks() {
  local pid total=0
  for pid in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
  done
  echo "$total"
}

# Answers of mca that were not `ok` (fallbacks, errors), from its /metrics: a fallback is
# cheaper than a real answer, so a run that has them is not a fair comparison.
not_ok() {
  curl -sf --max-time 2 "http://127.0.0.1:$MCA_PORT/metrics" |
    awk '/^mca_action_calls_total/ && !/outcome="ok"/ { n += $2 } END { print n + 0 }'
}

# load NAME PID URL CONNECTIONS SCRIPT [ARGS...]: warm up, measure; keeps
# "req/s p50 p99 requests errors cpu-µs-per-request" (the CPU time of the server process PID;
# errors: wrk's socket errors and non-2xx answers, plus mca's answers that were not `ok`).
declare -A R
load() {
  local name=$1 pid=$2 url=$3 conns=$4 script=$5 before after bad=0
  shift 5
  wrk -t1 -c"$conns" -d"${WARMUP}s" --timeout 5s -s "bench/$script" "$url" -- "$@" >/dev/null
  [ "$pid" = "$MCA_PID" ] && bad=$(not_ok)
  before=$(cpu_ticks "$pid")
  R[$name]=$(wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 5s -s "bench/$script" "$url" -- "$@" |
    awk '/^RESULT/ { print $2, $3, $4, $5, $6 }')
  after=$(cpu_ticks "$pid")
  if [ "$pid" = "$MCA_PID" ]; then
    bad=$(($(not_ok) - bad))
    R[$name]=$(echo "${R[$name]}" | awk -v b="$bad" '{ print $1, $2, $3, $4, $5 + b }')
  fi
  R[$name]="${R[$name]} $(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
    -v n="$(echo "${R[$name]}" | awk '{ print $4 }')" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
}

IDLE_MCA=$(rss_mb "$MCA_PID")
IDLE_BASE=$(rss_mb "$BASE_PID")
echo "filling the cache of mca with $FILL entries"
# New phone numbers until mca has counted FILL cache misses (wrk itself would wait out -d).
misses() {
  curl -sf --max-time 2 "http://127.0.0.1:$MCA_PORT/metrics" |
    awk '/^mca_cache_misses_total/ { n += $2 } END { print n + 0 }'
}
wrk -t1 -c32 -d120s --timeout 5s -s bench/miss.lua "$MCA_URL" -- 9 >/dev/null &
WRK_PID=$!
PIDS+=("$WRK_PID")
while kill -0 "$WRK_PID" 2>/dev/null && [ "$(misses)" -lt "$FILL" ]; do sleep 0.5; done
kill "$WRK_PID" 2>/dev/null || true
wait "$WRK_PID" 2>/dev/null || true
sleep 1
FULL_MCA=$(rss_mb "$MCA_PID")

echo "measuring: $ROUNDS rounds, ${WARMUP}s warm-up + ${DURATION}s per run"
load up-32 "$UP_PID" "$UP_URL" 32 get.lua
NAMES="base-miss-1 mca-miss-1 base-miss-32 mca-miss-32 mca-hit-1 mca-hit-32"
for r in $(seq "$ROUNDS"); do
  # Misses: a new phone number per request (each mca run its own tag digit, 1-6: the fill
  # used 9); baseline and mca alternate.
  load "base-miss-1-$r" "$BASE_PID" "$BASE_URL" 1 miss.lua 7
  load "mca-miss-1-$r" "$MCA_PID" "$MCA_URL" 1 miss.lua $((2 * r - 1))
  load "base-miss-32-$r" "$BASE_PID" "$BASE_URL" 32 miss.lua 8
  load "mca-miss-32-$r" "$MCA_PID" "$MCA_URL" 32 miss.lua $((2 * r))
  # Hits: the same phone number in the same call.
  load "mca-hit-1-$r" "$MCA_PID" "$MCA_URL" 1 hit.lua
  load "mca-hit-32-$r" "$MCA_PID" "$MCA_URL" 32 hit.lua
  echo "  round $r: miss 32c ×b $(echo "${R[mca-miss-32-$r]} ${R[base-miss-32-$r]}" |
    awk '{ printf "%.2f", $1 / $7 }'), miss 1c p50 ×b $(echo "${R[mca-miss-1-$r]} ${R[base-miss-1-$r]}" |
    awk '{ printf "%.2f", $2 / $8 }'), hit 32c ×b $(echo "${R[mca-hit-32-$r]} ${R[base-miss-32-$r]}" |
    awk '{ printf "%.2f", $1 / $7 }')"
done
# The median of each column over the rounds.
for name in $NAMES; do
  R[$name]=$(for r in $(seq "$ROUNDS"); do echo "${R[$name-$r]}"; done | awk '
    { for (i = 1; i <= NF; i++) v[i, NR] = $i; n = NR; f = NF }
    END {
      for (i = 1; i <= f; i++) {
        for (j = 1; j <= n; j++) a[j] = v[i, j]
        for (j = 2; j <= n; j++) for (k = j; k > 1 && a[k - 1] > a[k]; k--) { t = a[k]; a[k] = a[k - 1]; a[k - 1] = t }
        printf "%s%s", (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2), (i < f ? " " : "\n")
      }
    }')
done
LOADED_MCA=$(rss_mb "$MCA_PID")

field() { echo "${R[$1]}" | awk -v i="$2" '{ print $i }'; }
row() { # label, result name, baseline result name
  local rps p50 p99 err cpu brps bp50
  rps=$(field "$2" 1) p50=$(field "$2" 2) p99=$(field "$2" 3) err=$(field "$2" 5) cpu=$(field "$2" 6)
  if [ -n "$3" ]; then
    brps=$(field "$3" 1) bp50=$(field "$3" 2)
    awk -v l="$1" -v r="$rps" -v a="$p50" -v b="$p99" -v br="$brps" -v bp="$bp50" -v e="$err" -v c="$cpu" \
      'BEGIN { printf "| %-28s | %9.0f | %8.0f | %8.0f | %7.2fx | %5.2fx | %10.1f | %6d |\n", l, r, a, b, r / br, a / bp, c, e }'
  else
    awk -v l="$1" -v r="$rps" -v a="$p50" -v b="$p99" -v e="$err" -v c="$cpu" \
      'BEGIN { printf "| %-28s | %9.0f | %8.0f | %8.0f | %8s | %6s | %10.1f | %6d |\n", l, r, a, b, "", "", c, e }'
  fi
}

echo
echo "lookup_customer over loopback, wrk -t1, ${DURATION}s per run, medians of $ROUNDS rounds ($(nproc) cores, $(date -u +%Y-%m-%d))"
# A KVM guest's idle vCPUs poll this long before halting. At 0 (polling off) every wake-up of an
# idle vCPU costs tens of µs, which at one connection outweighs the servers' own work (see
# BENCHMARKS.md, "Halt polling").
HALTPOLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
if [ -r "$HALTPOLL" ]; then
  echo "guest halt polling: $(cat "$HALTPOLL") ns"
fi
echo
echo "| run                          |     req/s | p50 (µs) | p99 (µs) | req/s ×b | p50 ×b | CPU µs/req | errors |"
echo "|------------------------------|----------:|---------:|---------:|---------:|-------:|-----------:|-------:|"
row "upstream alone (nginx), 32c" up-32 ""
row "baseline, miss, 1c" base-miss-1 base-miss-1
row "mca, miss, 1c" mca-miss-1 base-miss-1
row "baseline, miss, 32c" base-miss-32 base-miss-32
row "mca, miss, 32c" mca-miss-32 base-miss-32
row "mca, hit, 1c" mca-hit-1 base-miss-1
row "mca, hit, 32c" mca-hit-32 base-miss-32
echo
echo "×b: ratio to the baseline's cache-miss run at the same connection count. CPU µs/req: CPU time"
echo "(user + system) the server process spent per answered request during the measured run."
echo "errors: socket errors and non-2xx answers seen by wrk, plus answers of mca that were not ok."
echo
echo "| memory (RSS)                          |     MB |"
echo "|---------------------------------------|-------:|"
printf "| baseline, idle                        | %6s |\n" "$IDLE_BASE"
printf "| mca, idle                             | %6s |\n" "$IDLE_MCA"
printf "| mca, %6d cache entries             | %6s |\n" "$FILL" "$FULL_MCA"
printf "| mca, after every run                  | %6s |\n" "$LOADED_MCA"
echo
ratio() { awk -v a="$(field "$1" "$3")" -v b="$(field "$2" "$3")" 'BEGIN { printf "%.2f", a / b }'; }
check() { # description, value, op, bound
  if awk -v v="$2" -v b="$4" -v op="$3" 'BEGIN { exit !((op == ">=") ? v >= b : v < b) }'; then
    echo "PASS  $1: $2 (target $3 $4)"
  else
    echo "MISS  $1: $2 (target $3 $4)"
  fi
}
echo "targets:"
check "cache-miss req/s at 32c, ×baseline" "$(ratio mca-miss-32 base-miss-32 1)" ">=" 1.0
check "cache-miss p50 at 1c, ×baseline (at most)" "$(ratio mca-miss-1 base-miss-1 2)" "<" 1.2001
check "cache-hit req/s at 32c, ×baseline miss" "$(ratio mca-hit-32 base-miss-32 1)" ">=" 3.0
check "idle RSS, MB" "$IDLE_MCA" "<" 30
check "RSS with $FILL cache entries, MB" "$FULL_MCA" "<" 150
