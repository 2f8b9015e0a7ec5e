-- wrk script of bench/run.sh: cache misses. Every request asks for a phone number never asked
-- before (TAG, one digit, keeps runs apart), so every request goes to the upstream.
-- Argument: TAG.
local threads = {}
local id, tag, n = 0, 1, 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  tag = tonumber(args[1] or "1")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Call-Id"] = "bench-miss"
end

function request()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format('{"phone":"+4%d%d%09d"}', tag, id, n))
end

function done(summary, latency, requests)
  io.write(string.format("RESULT %.1f %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
