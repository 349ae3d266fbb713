// Preloaded with --require: sends the proxy's outbound fetch for fal's hosts to
// the local fake upstream, so only the last hop differs from production.
"use strict";
const upstream = process.env.BENCH_UPSTREAM;
if (!upstream) throw new Error("BENCH_UPSTREAM is not set");
const falOrigin = /^https:\/\/(?:[a-z0-9-]+\.)*fal\.(?:run|ai)\//;
const originalFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  const url = typeof input === "string" ? input : String(input);
  return originalFetch(url.replace(falOrigin, `${upstream}/`), init);
};
