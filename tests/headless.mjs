// Debian's chromium, headless, for every browser test: one place for the
// flags and the throwaway profile.
//
// The flags keep chromium off the network it would otherwise try (this
// machine has none); the profile is a fresh temporary directory, removed
// by close(). Each test passes its own playwright-core `chromium`, so
// packages resolve from that test's own node_modules.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// Returns { context, page, report, close }: report collects console lines,
// page errors and, through describe(request), the requests the page made.
export async function openPage(chromium, name, { extraArgs = [], viewport, describe } = {}) {
  const profile = mkdtempSync(join(tmpdir(), `${name}-chromium-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    ...(viewport ? { viewport } : {}),
  });
  const report = { requests: [], console: [], pageErrors: [] };
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("console", (msg) => report.console.push(`${msg.type()}: ${msg.text()}`));
    page.on("pageerror", (err) => report.pageErrors.push(String(err)));
    const summary = describe ?? ((req) => ({ method: req.method(), url: req.url() }));
    page.on("request", (req) => report.requests.push(summary(req)));
    return { context, page, report, close };
  } catch (err) {
    await close();
    throw err;
  }
}
