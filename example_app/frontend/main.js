// The studio's three panels, each calling its provider through this app's
// proxy route. Bundled by esbuild into static/fal-client.js (see package.json).
import { fal } from "@fal-ai/client";
import Anthropic from "@anthropic-ai/sdk";

fal.config({ proxyUrl: "/api/fal/proxy" });

// -- usage: the visitor's budget and the app's spend per endpoint ------------
// Served by track_usage(app, usage_route="/api/usage"); an app without it
// answers 404, and the panel stays hidden and is never asked again.
const usagePanel = document.getElementById("usage-panel");
const USAGE_REFRESH_MS = 30_000;
const PERIODS = { hour: "this hour", day: "today", month: "this month" };
const SVG = "http://www.w3.org/2000/svg";
let usageServed = true;
let usageRefreshes = 0;

const dollars = (usd) => `$${Number(usd ?? 0).toFixed(2)}`;

function showBudget(budgets) {
  const text = document.getElementById("usage-budget");
  const bar = document.getElementById("usage-bar");
  const budget = budgets.find((b) => b.scope === "user");
  if (!budget) {
    text.textContent = "No spending limit for this visitor.";
    bar.hidden = true;
    return;
  }
  const share = budget.usd > 0 ? Math.min(1, budget.spent_usd / budget.usd) : 1;
  text.textContent = `${dollars(budget.spent_usd)} of ${dollars(budget.usd)} ${PERIODS[budget.per] ?? `per ${budget.per}`}`;
  text.title = budget.resets_at ? `Resets at ${budget.resets_at}` : "";
  document.getElementById("usage-fill").style.width = `${(share * 100).toFixed(2)}%`;
  bar.setAttribute("aria-valuenow", String(Math.round(share * 100)));
  bar.classList.toggle("near", share >= 0.8 && share < 1);
  bar.classList.toggle("over", share >= 1);
  bar.hidden = false;
}

function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// A horizontal bar per endpoint, the largest spend the full width.
function showEndpoints(endpoints) {
  const chart = document.getElementById("usage-chart");
  const rows = [...endpoints].sort((a, b) => b.spent_usd - a.spent_usd).slice(0, 6);
  const most = Math.max(...rows.map((r) => r.spent_usd), 0);
  const [width, row, labelWidth, valueWidth] = [400, 22, 170, 50];
  const room = width - labelWidth - valueWidth;
  chart.replaceChildren();
  chart.setAttribute("viewBox", `0 0 ${width} ${Math.max(rows.length, 1) * row}`);
  if (!rows.length) {
    chart.append(svg("text", { x: 0, y: 15 }, "Nothing spent yet today."));
    return;
  }
  rows.forEach((r, i) => {
    const name = String(r.endpoint);
    const group = svg("g", { transform: `translate(0 ${i * row})`, "data-endpoint": name });
    group.append(svg("title", {}, `${name}: ${dollars(r.spent_usd)}`));
    const label = name.length > 26 ? `…${name.slice(-25)}` : name;
    group.append(svg("text", { x: 0, y: 15 }, label));
    const length = most > 0 ? (r.spent_usd / most) * room : 0;
    group.append(svg("rect", { x: labelWidth, y: 4, height: row - 8, width: length.toFixed(2) }));
    group.append(svg("text", { x: labelWidth + length + 4, y: 15 }, dollars(r.spent_usd)));
    chart.append(group);
  });
}

async function refreshUsage() {
  if (!usageServed) return;
  let response;
  try {
    response = await fetch("/api/usage", { headers: { Accept: "application/json" } });
  } catch {
    return; // offline for a moment: keep what is shown
  }
  if (response.status === 404) {
    usageServed = false;
    usagePanel.hidden = true;
    clearInterval(usageTimer);
    return;
  }
  const usage = response.ok ? await response.json().catch(() => null) : null;
  if (!usage) return;
  showBudget(usage.budgets ?? []);
  showEndpoints(usage.endpoints_today ?? []);
  usagePanel.hidden = false;
  usagePanel.dataset.refreshes = String(++usageRefreshes);
}

const usageTimer = setInterval(refreshUsage, USAGE_REFRESH_MS);
refreshUsage();

// -- image: fal's queue, with its position and logs as they come ------------
const form = document.getElementById("generate");
const statusEl = document.getElementById("status");
const queueEl = document.getElementById("queue");
const logsEl = document.getElementById("logs");
const model = document.getElementById("model").textContent.trim();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = document.getElementById("prompt").value;
  const button = document.getElementById("run");
  const errorEl = document.getElementById("error");
  errorEl.hidden = true;
  button.disabled = true;
  statusEl.textContent = "Submitting…";
  queueEl.textContent = "";
  logsEl.textContent = "";
  logsEl.hidden = true;
  try {
    const result = await fal.subscribe(model, {
      input: { prompt },
      logs: true,
      onQueueUpdate: (update) => {
        statusEl.textContent = `Status: ${update.status}`;
        if (update.status === "IN_QUEUE") {
          queueEl.textContent = `Queue position: ${update.queue_position ?? "?"}`;
        } else {
          queueEl.textContent = update.status === "IN_PROGRESS" ? "Running" : "";
        }
        const lines = (update.logs ?? []).map((log) => log.message);
        if (lines.length) {
          logsEl.textContent = lines.join("\n");
          logsEl.hidden = false;
        }
      },
    });
    const image = result.data.images[0];
    document.getElementById("image").src = image.url;
    document.getElementById("caption").textContent = `“${prompt}” (request ${result.requestId})`;
    document.getElementById("result").hidden = false;
    statusEl.textContent = "Done";
    document.body.dataset.state = "done";
  } catch (error) {
    errorEl.textContent = `${error.name}: ${error.body?.message ?? error.message}`;
    errorEl.hidden = false;
    statusEl.textContent = "Failed";
    document.body.dataset.state = "failed";
  } finally {
    button.disabled = false;
    refreshUsage();
  }
});

// The message of a proxy refusal ({message, code}) or of a provider error.
function describe(error) {
  const body = error.error ?? error.body;
  const message = body?.message ?? body?.error?.message ?? body?.detail?.message;
  return `${error.name ?? "Error"}: ${message ?? error.message}`;
}

// -- text: Anthropic's stream, token by token --------------------------------
const textPanel = document.getElementById("text-panel");
const claude = new Anthropic({
  baseURL: `${location.origin}/api/anthropic`,
  // No key in the page: the proxy adds it. SDK 1.x wants the Authorization
  // header explicitly left out when it is given no key.
  apiKey: null,
  defaultHeaders: { Authorization: null },
  dangerouslyAllowBrowser: true,
  maxRetries: 0,
});

document.getElementById("text-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("text-run");
  const out = document.getElementById("text-out");
  const status = document.getElementById("text-status");
  const errorEl = document.getElementById("text-error");
  delete textPanel.dataset.state;
  errorEl.hidden = true;
  out.textContent = "";
  button.disabled = true;
  status.textContent = "Waiting for the first token…";
  let tokens = 0;
  try {
    const stream = claude.messages.stream({
      model: textPanel.dataset.model,
      max_tokens: 512,
      messages: [{ role: "user", content: document.getElementById("text-prompt").value }],
    });
    stream.on("text", (delta) => {
      tokens += 1;
      out.textContent += delta;
      status.textContent = `Streaming: ${tokens} tokens`;
    });
    const final = await stream.finalMessage();
    status.textContent = `Done: ${tokens} tokens (${final.stop_reason})`;
    textPanel.dataset.state = "done";
  } catch (error) {
    errorEl.textContent = describe(error);
    errorEl.hidden = false;
    status.textContent = "Failed";
    textPanel.dataset.state = "failed";
  } finally {
    button.disabled = false;
    refreshUsage();
  }
});

// -- speech: ElevenLabs' audio, shown as it arrives, played when complete ----
const speechPanel = document.getElementById("speech-panel");
const audio = document.getElementById("speech-audio");
audio.addEventListener("playing", () => {
  document.getElementById("speech-status").textContent = "Playing";
  speechPanel.dataset.state = "playing";
});

document.getElementById("speech-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("speech-run");
  const status = document.getElementById("speech-status");
  const errorEl = document.getElementById("speech-error");
  delete speechPanel.dataset.state;
  errorEl.hidden = true;
  button.disabled = true;
  status.textContent = "Waiting for audio…";
  try {
    const voice = encodeURIComponent(speechPanel.dataset.voice);
    const response = await fetch(
      `/api/elevenlabs/v1/text-to-speech/${voice}/stream?output_format=mp3_44100_128`,
      {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "audio/mpeg" },
        body: JSON.stringify({
          text: document.getElementById("speech-text").value,
          model_id: "eleven_multilingual_v2",
        }),
      },
    );
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw Object.assign(new Error(`HTTP ${response.status}`), { name: "ApiError", body });
    }
    const reader = response.body.getReader();
    const chunks = [];
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      status.textContent = `Receiving audio: ${Math.round(received / 1024)} KB in ${chunks.length} chunks`;
    }
    speechPanel.dataset.chunks = String(chunks.length);
    const type = response.headers.get("Content-Type") ?? "audio/mpeg";
    audio.src = URL.createObjectURL(new Blob(chunks, { type }));
    audio.hidden = false;
    await audio.play();
  } catch (error) {
    errorEl.textContent = describe(error);
    errorEl.hidden = false;
    status.textContent = "Failed";
    speechPanel.dataset.state = "failed";
  } finally {
    button.disabled = false;
    refreshUsage();
  }
});
