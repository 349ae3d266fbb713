// Opens the test page in Debian's headless chromium and reports what the
// Anthropic SDK on it did through the cross-origin proxy route.
//
//   node stream.mjs <page url>
//
// Flags and the throwaway profile are those of tests/e2e/browser.mjs.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "provider-chromium-"));
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
  ],
});
const result = { requests: [], console: [], pageErrors: [] };
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (msg) => result.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => result.pageErrors.push(String(err)));
  page.on("request", (req) => {
    const headers = req.headers();
    result.requests.push({
      method: req.method(),
      url: req.url(),
      apiKey: headers["x-api-key"] ?? null,
      authorization: headers.authorization ?? null,
      version: headers["anthropic-version"] ?? null,
      browserAccess: headers["anthropic-dangerous-direct-browser-access"] ?? null,
    });
  });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-state]", { timeout: 30000 });
  result.state = await page.getAttribute("body", "data-state");
  result.text = await page.textContent("#out");
  result.report = await page.evaluate(() => window.__report);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
