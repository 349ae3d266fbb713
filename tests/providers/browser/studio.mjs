// Opens the example studio in Debian's headless chromium, runs its three
// panels one after the other and reports what each showed while it waited.
//
//   node studio.mjs <app base url> <screenshot path>
//
// Flags and the throwaway profile are those of tests/e2e/browser.mjs, plus
// autoplay without a gesture so the speech panel's audio can start.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "studio-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
  viewport: { width: 900, height: 1100 },
});
const report = { requests: [], console: [], pageErrors: [] };
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (msg) => report.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => report.pageErrors.push(String(err)));
  page.on("request", (req) => {
    const headers = req.headers();
    report.requests.push({
      method: req.method(),
      url: req.url(),
      keyHeaders: ["authorization", "x-api-key", "xi-api-key"].filter((h) => h in headers),
    });
  });
  await page.goto(`${base}/`, { waitUntil: "load" });
  // Every text each status line showed, in order, with the page's clock.
  await page.exposeFunction("__seen", (id, text, at) => {
    (report[id] ??= []).push({ text, at });
  });
  await page.evaluate(() => {
    for (const id of ["status", "queue", "logs", "text-status", "text-out", "speech-status"]) {
      const el = document.getElementById(id);
      new MutationObserver(() => window.__seen(id, el.textContent, performance.now())).observe(el, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    }
  });

  await page.fill("#prompt", "a kite over dunes");
  await page.click("#run");
  await page.waitForSelector("body[data-state]", { timeout: 30000 });
  report.imageState = await page.getAttribute("body", "data-state");
  report.imageSrc = await page.getAttribute("#image", "src");

  await page.fill("#text-prompt", "tell me about kites");
  await page.click("#text-run");
  await page.waitForSelector("#text-panel[data-state]", { timeout: 30000 });
  report.textState = await page.getAttribute("#text-panel", "data-state");
  report.text = await page.textContent("#text-out");

  await page.fill("#speech-text", "kites fly high over the dunes");
  await page.click("#speech-run");
  await page.waitForSelector("#speech-panel[data-state]", { timeout: 30000 });
  report.speechState = await page.getAttribute("#speech-panel", "data-state");
  report.speechChunks = Number(await page.getAttribute("#speech-panel", "data-chunks"));
  report.audio = await page.$eval("#speech-audio", (a) => ({
    duration: a.duration,
    paused: a.paused,
    visible: !a.hidden,
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(report));
