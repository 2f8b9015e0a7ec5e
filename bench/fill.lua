-- wrk script of bench/run.sh: fills the cache. Like miss.lua (a new phone number per request),
-- and each thread stops after LIMIT responses. Arguments: TAG LIMIT.
local threads = {}
local id, tag, limit, n, answered = 0, 1, 0, 0, 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  tag = tonumber(args[1] or "1")
  limit = tonumber(args[2] or "0")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Call-Id"] = "bench-miss"
end

function request()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format('{"phone":"+4%d%d%09d"}', tag, id, n))
end

function response(status, headers, body)
  answered = answered + 1
  if limit > 0 and answered >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  io.write(string.format("RESULT %.1f %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
