// The reference proxy: @fal-ai/server-proxy's Express handler, mounted the way
// its documentation shows. BENCH_NODE_WORKERS > 1 runs it under node:cluster.
"use strict";
const cluster = require("node:cluster");
const express = require("express");
const { createHandler, route } = require("@fal-ai/server-proxy/express");

const port = Number(process.env.PORT || 3000);
const workers = Number(process.env.BENCH_NODE_WORKERS || 1);

if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i += 1) cluster.fork();
} else {
  const app = express();
  app.use(express.json({ limit: "32mb" }));
  app.all(route, createHandler({ allowedEndpoints: ["fal-ai/**", "bench/**"] }));
  app.listen(port, "127.0.0.1", () => {
    console.log(`node proxy listening on 127.0.0.1:${port}`);
  });
}
