// Opens the example page in Debian's headless chromium, generates an image
// and reports what the page shows.
//
//   node browser.mjs <app base url> <prompt> <screenshot path> [--drop-session]
//
// --drop-session clears the page's cookies before the click, as when a
// session expires: the proxy must refuse and the page show why.
// The browser is the system one (no downloads), opened by ../headless.mjs.
import { chromium } from "playwright-core";
import { openPage } from "../headless.mjs";

const [base, prompt, screenshot, option] = process.argv.slice(2);
const { context, page, report, close } = await openPage(chromium, "e2e", {
  viewport: { width: 900, height: 720 },
  describe: (req) => {
    const headers = req.headers();
    return {
      method: req.method(),
      url: req.url(),
      target: headers["x-fal-target-url"] ?? null,
      authorization: headers.authorization ?? null,
    };
  },
});
try {
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
  await close();
}
console.log(JSON.stringify(report));
