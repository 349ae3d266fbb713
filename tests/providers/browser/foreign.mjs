// A page of another site tries to spend the proxy's keys the ways CORS does
// not stop: no-cors fetches with CORS-simple bodies and a plain form submit.
//
//   node foreign.mjs <page url> <proxy base url>
//
// Prints one JSON line: what each attempt resolved to (opaque responses
// cannot be read by the page; the server side tells what reached a fake).
import { chromium } from "playwright-core";
import { openPage } from "../../headless.mjs";

const [pageUrl, proxy] = process.argv.slice(2);
const { page, report, close } = await openPage(chromium, "foreign");
try {
  await page.goto(pageUrl, { waitUntil: "load" });
  report.fetches = await page.evaluate(async (proxy) => {
    const results = {};
    const form = new FormData();
    form.append("text", "spend it");
    const attempts = {
      multipart: [`${proxy}/api/elevenlabs/v1/text-to-speech/voice-1/stream`, form],
      textPlain: [
        `${proxy}/api/anthropic/v1/messages`,
        JSON.stringify({ model: "m", max_tokens: 5, messages: [] }),
      ],
      urlencoded: [`${proxy}/api/elevenlabs/v1/sound-generation`, new URLSearchParams({ text: "x" })],
    };
    for (const [name, [url, body]] of Object.entries(attempts)) {
      try {
        const answer = await fetch(url, { method: "POST", mode: "no-cors", body });
        results[name] = answer.type;
      } catch (err) {
        results[name] = `error: ${err}`;
      }
    }
    return results;
  }, proxy);
  // A form submit navigates the page: the answer is the proxy's JSON refusal.
  const action = `${proxy}/api/elevenlabs/v1/sound-generation`;
  const navigated = page.waitForURL(action, { timeout: 15000 });
  await page.evaluate((action) => {
    const form = document.createElement("form");
    form.method = "POST";
    form.enctype = "multipart/form-data";
    form.action = action;
    const field = document.createElement("input");
    field.name = "text";
    field.value = "spend it";
    form.appendChild(field);
    document.body.appendChild(form);
    form.submit();
  }, action);
  await navigated;
  report.formAnswer = await page.evaluate(() => document.body.innerText);
  console.log(JSON.stringify(report));
} finally {
  await close();
}
