// Runs in the page: the openai npm SDK, as a web app would use it, calling
// the OpenAI facade on another origin. The report lands on window.__report.
import OpenAI from "openai";

const params = new URLSearchParams(location.search);
const baseURL = `${params.get("api")}/v1`;

function client(apiKey) {
  return new OpenAI({ apiKey, baseURL, dangerouslyAllowBrowser: true, maxRetries: 0 });
}

const report = {};
try {
  const result = await client(params.get("key")).images.generate({
    model: "flux-dev",
    prompt: params.get("prompt"),
    size: "1024x1024",
    response_format: "b64_json",
  });
  report.images = result.data.length;
  report.png = atob(result.data[0].b64_json).startsWith("\x89PNG");
  report.models = (await client(params.get("key")).models.list()).data.map((m) => m.id);
} catch (err) {
  report.error = String(err);
}
try {
  await client("not-the-key").models.list();
} catch (err) {
  report.refusal = { name: err.constructor.name, status: err.status, code: err.code ?? null };
}
window.__report = report;
document.body.dataset.done = "1";
