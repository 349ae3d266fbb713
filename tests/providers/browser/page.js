// The page of the browser test: @anthropic-ai/sdk as CE.SDK's plugin uses it,
// with baseURL pointing at the proxy route on another origin and no key.
// Bundled by esbuild into dist/page.js (npm run build).
import Anthropic from "@anthropic-ai/sdk";

const params = new URLSearchParams(location.search);
const out = document.getElementById("out");
const report = { events: [], tokens: [], error: null };
window.__report = report;

const client = new Anthropic({
  baseURL: params.get("proxy"),
  apiKey: null,
  // SDK 1.x refuses to send a request with no credentials unless the
  // Authorization header is explicitly left out; the proxy adds the key.
  defaultHeaders: { Authorization: null },
  dangerouslyAllowBrowser: true,
  maxRetries: 0,
});

try {
  const stream = client.messages.stream({
    model: params.get("model") ?? "claude-test",
    max_tokens: 64,
    messages: [{ role: "user", content: params.get("prompt") }],
  });
  stream.on("streamEvent", (event) => report.events.push(event.type));
  stream.on("text", (delta) => {
    report.tokens.push({ text: delta, at: performance.now() });
    out.textContent += delta;
  });
  const final = await stream.finalMessage();
  report.stopReason = final.stop_reason;
  document.body.dataset.state = "done";
} catch (error) {
  report.error = `${error.name}: ${error.status ?? ""} ${error.message}`;
  document.body.dataset.state = "failed";
}
