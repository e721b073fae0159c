-- GET one URL over and over and print the results as one JSON line for loadtests/wrk.py, like
-- wrk_post.lua. Any answer outside 2xx counts as an error.
--   wrk -t1 -c64 -d10s -s loadtests/wrk_get.lua http://127.0.0.1:8000/api/data/
-- WRK_HEADERS (environment, optional): more headers, one "Name: value" per line.

local req
non_2xx = 0  -- global: `done` reads it from each thread with thread:get
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local headers = {}
  for name, value in string.gmatch(os.getenv("WRK_HEADERS") or "", "([^:\n]+): ([^\n]*)") do
    headers[name] = value
  end
  req = wrk.format("GET", nil, headers, nil)
end

function request()
  return req
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  for _, thread in ipairs(threads) do
    errors = errors + (thread:get("non_2xx") or 0)
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, errors, latency:percentile(50), latency:percentile(99)))
end
