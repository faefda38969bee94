-- wrk script for the benchmark: POST one JSON body, optionally with a gateway key, and print a
-- machine-readable summary. Configured through the environment because wrk's script arguments
-- differ between builds:
--   BENCH_BODY_FILE   file holding the JSON body (required)
--   BENCH_KEY         gateway key, sent as "Authorization: Bearer ..." (optional)
--   BENCH_ONCE        connections per thread (optional): each connection then sends one
--                     request only, so the capacity scenario holds exactly that many in flight
--                     and measures them, with no second wave cut off by the end of the run.

local once = tonumber(os.getenv("BENCH_ONCE") or "0") or 0

function init(args)
  local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if once > 0 then
    -- Otherwise the server closes each answered connection after its keep-alive timeout while
    -- the run is still going, and wrk counts that as a read error.
    wrk.headers["Connection"] = "close"
  end
  local key = os.getenv("BENCH_KEY") or ""
  if key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

-- wrk asks delay() before every request on every connection; its first `once` calls in a
-- thread are the connections' first requests, every later one is a repeat, put off past the end
-- of the run. Defined only when wanted, since wrk then delays each request through a timer.
if once > 0 then
  local calls = 0
  function delay()
    calls = calls + 1
    if calls <= once then
      return 0
    end
    return 3600 * 1000
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_SUMMARY {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p95_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
