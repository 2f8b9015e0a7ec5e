-- wrk script of bench/run.sh: cache hits. Every request asks for the same phone number in the
-- same call, so after the first every answer comes from the cache. (No request() function:
-- wrk sends one prebuilt request, the cheapest load it can make.)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Call-Id"] = "bench-hit"
wrk.body = '{"phone":"+4930123456"}'

function done(summary, latency, requests)
  io.write(string.format("RESULT %.1f %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
