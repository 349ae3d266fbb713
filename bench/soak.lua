-- wrk script for bench/soak.py: a fixed mix of valid and rejected proxy calls.
-- Each kind has its own status, so the status counts show the mix was served as meant.
local kinds = {
  { "POST", "https://queue.fal.run/fal-ai/flux/dev", '{"prompt":"soak"}', "application/json", true, nil },
  { "GET", "https://queue.fal.run/fal-ai/flux/requests/soak/status", nil, nil, true, nil },
  { "POST", "https://fal.run/fal-ai/flux/schnell", '{"prompt":"soak"}', "application/json", true, "https://app.example.com" },
  { "POST", "https://fal.run/other/model", '{"prompt":"x"}', "application/json", true, nil },           -- 403 endpoint
  { "POST", "https://evil.example/steal", '{}', "application/json", true, nil },                        -- 412
  { "POST", nil, '{}', "application/json", true, nil },                                                 -- 400
  { "POST", "https://queue.fal.run/fal-ai/flux/dev", "prompt=x", "text/plain", true, nil },             -- 415
  { "POST", "https://queue.fal.run/fal-ai/flux/dev", '{}', "application/json", false, nil },            -- 401
  { "POST", "https://queue.fal.run/fal-ai/flux/dev", '{}', "application/json", true, "https://evil.example" }, -- 403 origin
  { "PATCH", "https://queue.fal.run/fal-ai/flux/dev", '{}', "application/json", true, nil },            -- 405
}
local sequence = { 1, 2, 3, 1, 2, 4, 5, 6, 7, 8, 9, 10 }
local prepared = {}
local position = 0
counts = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for i, k in ipairs(kinds) do
    local headers = {}
    if k[2] then headers["x-fal-target-url"] = k[2] end
    if k[4] then headers["Content-Type"] = k[4] end
    if k[5] then headers["Authorization"] = "Bearer soak-user" end
    if k[6] then headers["Origin"] = k[6] end
    prepared[i] = wrk.format(k[1], "/api/fal/proxy", headers, k[3])
  end
  position = math.random(#sequence) - 1
end

function request()
  position = position % #sequence + 1
  return prepared[sequence[position]]
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for status, n in pairs(c) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'SOAK_RESULT {"requests":%d,"duration_us":%d,"statuses":{%s},"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latency_p50_ms":%.2f,"latency_p99_ms":%.2f,"latency_max_ms":%.2f}\n',
    summary.requests, summary.duration, table.concat(parts, ","),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
