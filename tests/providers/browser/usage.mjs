// Opens the example studio's page, served by a stub with a fake /api/usage,
// in headless chromium, and reports what the usage panel showed: at load,
// after an image was generated, and around its 30 s refresh (the page's clock
// fast-forwarded to 27 s after load, then to 30 s).
//
//   node usage.mjs <stub base url> served|absent [screenshot path]
import { chromium } from "playwright-core";
import { openPage } from "../../headless.mjs";

const [base, mode, screenshot] = process.argv.slice(2);
const { page, report, close } = await openPage(chromium, "usage", {
  viewport: { width: 900, height: 1300 },
});

const panel = () =>
  page.evaluate(() => {
    const usage = document.getElementById("usage-panel");
    const box = (id) => document.getElementById(id).getBoundingClientRect().width;
    return {
      hidden: usage.hidden,
      refreshes: Number(usage.dataset.refreshes ?? 0),
      text: document.getElementById("usage-budget").textContent,
      share: box("usage-fill") / box("usage-bar"),
      valueNow: document.getElementById("usage-bar").getAttribute("aria-valuenow"),
      bars: [...document.querySelectorAll("#usage-chart g")].map((g) => ({
        endpoint: g.dataset.endpoint,
        width: Number(g.querySelector("rect").getAttribute("width")),
        shown: g.querySelector("rect").getBoundingClientRect().width,
        value: g.querySelectorAll("text")[1].textContent,
      })),
    };
  });

async function generate() {
  await page.click("#run");
  await page.waitForSelector("body[data-state]", { timeout: 30000 });
  report.imageState = await page.getAttribute("body", "data-state");
}

try {
  await page.clock.install();
  const firstAnswer = page.waitForResponse((r) => r.url().endsWith("/api/usage"));
  await page.goto(`${base}/`, { waitUntil: "load" });
  // The page's clock at load; its 30 s timer started just before.
  const loadedAt = await page.evaluate(() => Date.now());
  const sinceLoad = async () => (await page.evaluate(() => Date.now())) - loadedAt;
  report.firstStatus = (await firstAnswer).status();
  if (mode === "served") {
    await page.waitForSelector('#usage-panel[data-refreshes="1"]', { timeout: 10000 });
    report.atLoad = await panel();
    await generate();
    await page.waitForSelector('#usage-panel[data-refreshes="2"]', { timeout: 10000 });
    report.afterGeneration = await panel();
    await fetch(`${base}/__spend`, { method: "POST" });
    await page.clock.fastForward(Math.max(0, 27_000 - (await sinceLoad())));
    await page.waitForTimeout(300);
    report.before30s = await panel();
    await page.clock.fastForward(3_000);
    await page.waitForSelector('#usage-panel[data-refreshes="3"]', { timeout: 10000 });
    report.after30s = await panel();
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  } else {
    await generate();
    await page.clock.fastForward(65_000);
    await page.waitForTimeout(300);
    report.atEnd = await panel();
  }
} finally {
  await close();
}
console.log(JSON.stringify(report));
