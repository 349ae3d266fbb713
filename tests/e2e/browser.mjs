// Opens the example page in Debian's headless chromium, generates an image
// and reports what the page shows.
//
//   node browser.mjs <app base url> <prompt> <screenshot path> [--drop-session]
//
// --drop-session clears the page's cookies before the click, as when a
// session expires: the proxy must refuse and the page show why.
// The browser is the system one (no downloads); the profile is a fresh
// temporary directory, removed afterwards.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, prompt, screenshot, option] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const profile = mkdtempSync(join(tmpdir(), "e2e-chromium-"));
const args = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args,
  viewport: { width: 900, height: 720 },
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
      target: headers["x-fal-target-url"] ?? null,
      authorization: headers.authorization ?? null,
    });
  });
  await page.goto(`${base}/`, { waitUntil: "load" });
  const statuses = [];
  await page.exposeFunction("__recordStatus", (text) => statuses.push(text));
  await page.evaluate(() => {
    const el = document.getElementById("status");
    new MutationObserver(() => window.__recordStatus(el.textContent)).observe(el, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
  if (option === "--drop-session") await context.clearCookies();
  await page.fill("#prompt", prompt);
  await page.click("#run");
  await page.waitForSelector("body[data-state]", { timeout: 30000 });
  report.state = await page.getAttribute("body", "data-state");
  report.caption = await page.textContent("#caption");
  report.error = (await page.isVisible("#error")) ? await page.textContent("#error") : null;
  report.imageSrc = await page.getAttribute("#image", "src");
  report.imageVisible = await page.isVisible("#image");
  report.imageWidth = await page.$eval("#image", (img) => img.naturalWidth);
  report.statuses = statuses;
  report.cookies = (await context.cookies()).map((c) => c.name);
  await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(report));
