-- POST JSON bodies read from a file (one body per line), cycling through them, and print the
-- results as one JSON line for loadtests/wrk.py. Any answer outside 2xx counts as an error.
--   wrk -t1 -c64 -d10s -s loadtests/wrk_post.lua http://127.0.0.1:8001/predict -- bodies.jsonl
-- WRK_HEADERS (environment, optional): more headers, one "Name: value" per line.

local bodies = {}
local next_body = 1
non_2xx = 0  -- global: `done` reads it from each thread with thread:get
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local headers = {["Content-Type"] = "application/json"}
  for name, value in string.gmatch(os.getenv("WRK_HEADERS") or "", "([^:\n]+): ([^\n]*)") do
    headers[name] = value
  end
  for line in io.lines(args[1]) do
    if #line > 0 then
      table.insert(bodies, wrk.format("POST", nil, headers, line))
    end
  end
  if #bodies == 0 then
    error("no request bodies in " .. tostring(args[1]))
  end
end

function request()
  local req = bodies[next_body]
  next_body = next_body % #bodies + 1
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
