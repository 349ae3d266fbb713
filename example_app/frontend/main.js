// Bundled by esbuild into static/fal-client.js (see package.json).
import { fal } from "@fal-ai/client";

fal.config({ proxyUrl: "/api/fal/proxy" });

const form = document.getElementById("generate");
const statusEl = document.getElementById("status");
const model = document.getElementById("model").textContent.trim();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = document.getElementById("prompt").value;
  const button = document.getElementById("run");
  const errorEl = document.getElementById("error");
  errorEl.hidden = true;
  button.disabled = true;
  statusEl.textContent = "Submitting…";
  try {
    const result = await fal.subscribe(model, {
      input: { prompt },
      logs: true,
      onQueueUpdate: (update) => {
        statusEl.textContent = `Status: ${update.status}`;
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
  }
});
