// Bundles page.mjs with esbuild, opens it in Debian's headless chromium and
// prints what the page reported, with the requests it made, as JSON.
//
//   node browser.mjs <page url> <bundle output path>
//   node browser.mjs --build <bundle output path>
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { openPage } from "../../headless.mjs";

const args = process.argv.slice(2);
if (args[0] === "--build") {
  await build({
    entryPoints: [new URL("./page.mjs", import.meta.url).pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outfile: args[1],
    logLevel: "error",
  });
  console.log(JSON.stringify({ built: args[1] }));
  process.exit(0);
}

const [pageUrl] = args;
const { page, report: out, close } = await openPage(chromium, "openai");
try {
  await page.goto(pageUrl, { waitUntil: "load" });
  await page.waitForSelector("body[data-done]", { state: "attached", timeout: 30000 });
  out.report = await page.evaluate(() => window.__report);
} finally {
  await close();
}
console.log(JSON.stringify(out));
