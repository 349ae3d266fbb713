// @fal-ai/server-proxy under Express, mounted as its README shows, in the two
// configurations the compatibility run compares (see tests/test_compat.py):
//   /api/fal/proxy         defaults
//   /strict/api/fal/proxy  allowedEndpoints + authentication required
// Prints "listening on <port>" once it accepts connections.
import express from "express";
import * as falProxy from "@fal-ai/server-proxy/express";

const app = express();
app.all(falProxy.route, express.json(), falProxy.createHandler());
app.all(
  `/strict${falProxy.route}`,
  express.json(),
  falProxy.createHandler({
    allowedEndpoints: ["fal-ai/flux/**"],
    allowUnauthorizedRequests: false,
    isAuthenticated: async (behavior) => behavior.getHeader("x-test-user") === "alice",
  }),
);
const server = app.listen(0, "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
