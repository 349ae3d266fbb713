// @fal-ai/server-proxy under Express, mounted as its README shows, in the two
// configurations the compatibility run compares (see tests/test_compat.py):
//   /api/fal/proxy         defaults
//   /strict/api/fal/proxy  allowedEndpoints + authentication required
// or, with TS_PROXY_MODE=example, in the example app's configuration for the
// client scenarios (see tests/test_e2e_server_proxy.py).
// Prints "listening on <port>" once it accepts connections.
import { randomBytes } from "node:crypto";
import express from "express";
import * as falProxy from "@fal-ai/server-proxy/express";

const app = express();
if (process.env.TS_PROXY_MODE === "example") {
  // The example app's policy, for the client scenarios: a cookie set by the
  // page is the session, and only the page's model is allowed.
  app.get("/", (request, response) => {
    response.cookie("visitor", randomBytes(8).toString("hex"), { httpOnly: true });
    response.type("text/plain").send("ok");
  });
  app.all(
    falProxy.route,
    express.json(),
    falProxy.createHandler({
      allowedEndpoints: ["fal-ai/flux/schnell/**"],
      allowUnauthorizedRequests: false,
      isAuthenticated: async (behavior) =>
        /(?:^|;\s*)visitor=/.test(String(behavior.getHeader("cookie") ?? "")),
    }),
  );
} else {
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
}
const server = app.listen(0, "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
