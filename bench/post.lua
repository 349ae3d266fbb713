-- wrk script: what @fal-ai/client sends through proxyUrl (a small JSON POST
-- naming its real target in x-fal-target-url); prints one JSON line at the end.
local target = os.getenv("BENCH_TARGET") or "https://fal.run/fal-ai/fast-sdxl"
local auth = os.getenv("BENCH_AUTH")

wrk.method = "POST"
wrk.body = '{"prompt":"a lighthouse at dusk, oil painting","image_size":"square_hd","seed":42}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["x-fal-target-url"] = target
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end

-- With BENCH_MAX_REQUESTS the run stops by itself after that many answers
-- (one wrk thread), which the keep-alive probe needs to count per request.
local max_requests = tonumber(os.getenv("BENCH_MAX_REQUESTS") or "")
if max_requests then
  local answered = 0
  function response(status, headers, body)
    answered = answered + 1
    if answered >= max_requests then
      wrk.thread:stop()
    end
  end
end
