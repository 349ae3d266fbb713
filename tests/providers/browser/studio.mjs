// Opens the example studio in Debian's headless chromium, runs its three
// panels one after the other and reports what each showed while it waited.
//
//   node studio.mjs <app base url> <screenshot path>
//
// Chromium is opened by tests/headless.mjs, with autoplay allowed without a
// gesture so the speech panel's audio can start.
import { chromium } from "playwright-core";
import { openPage } from "../../headless.mjs";

const [base, screenshot] = process.argv.slice(2);
const { page, report, close } = await openPage(chromium, "studio", {
  extraArgs: ["--autoplay-policy=no-user-gesture-required"],
  viewport: { width: 900, height: 1100 },
  describe: (req) => {
    const headers = req.headers();
    return {
      method: req.method(),
      url: req.url(),
      keyHeaders: ["authorization", "x-api-key", "xi-api-key"].filter((h) => h in headers),
    };
  },
});
try {
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
  await close();
}
console.log(JSON.stringify(report));
