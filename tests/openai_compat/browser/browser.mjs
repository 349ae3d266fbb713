// Bundles page.mjs with esbuild, opens it in Debian's headless chromium and
// prints what the page reported, with the requests it made, as JSON.
//
//   node browser.mjs <page url> <bundle output path>
//   node browser.mjs --build <bundle output path>
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { chromium } from "playwright-core";

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
const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const profile = mkdtempSync(join(tmpdir(), "openai-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
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
const out = { requests: [], console: [], pageErrors: [] };
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (msg) => out.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => out.pageErrors.push(String(err)));
  page.on("request", (req) => out.requests.push({ method: req.method(), url: req.url() }));
  await page.goto(pageUrl, { waitUntil: "load" });
  await page.waitForSelector("body[data-done]", { state: "attached", timeout: 30000 });
  out.report = await page.evaluate(() => window.__report);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
