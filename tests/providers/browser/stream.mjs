// Opens the test page in Debian's headless chromium and reports what the
// Anthropic SDK on it did through the cross-origin proxy route.
//
//   node stream.mjs <page url>
//
// Chromium is opened by tests/headless.mjs, as for every browser test.
import { chromium } from "playwright-core";
import { openPage } from "../../headless.mjs";

const [url] = process.argv.slice(2);
const { page, report: result, close } = await openPage(chromium, "provider", {
  describe: (req) => {
    const headers = req.headers();
    return {
      method: req.method(),
      url: req.url(),
      apiKey: headers["x-api-key"] ?? null,
      authorization: headers.authorization ?? null,
      version: headers["anthropic-version"] ?? null,
      browserAccess: headers["anthropic-dangerous-direct-browser-access"] ?? null,
    };
  },
});
try {
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-state]", { timeout: 30000 });
  result.state = await page.getAttribute("body", "data-state");
  result.text = await page.textContent("#out");
  result.report = await page.evaluate(() => window.__report);
} finally {
  await close();
}
console.log(JSON.stringify(result));
