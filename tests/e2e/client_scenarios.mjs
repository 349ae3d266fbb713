// Drives the real @fal-ai/client in Node through a proxy, one scenario per run.
//
//   node client_scenarios.mjs <app base url> <scenario>
//
// Prints one JSON line: {"ok": ..., "error": ...}. The client is configured as
// a page would configure it (proxyUrl), with `when: "always"` so that Node,
// which has no `window`, goes through the proxy too. Cookies from GET / are
// replayed on calls to the app's origin only, as a browser would.
import { ApiError, ValidationError, createFalClient } from "@fal-ai/client";

const [base, scenario] = process.argv.slice(2);
const MODEL = process.env.E2E_MODEL ?? "fal-ai/flux/schnell";
const origin = new URL(base).origin;
let cookie = "";

async function login() {
  const page = await fetch(`${base}/`);
  if (page.status !== 200) throw new Error(`GET / answered ${page.status}`);
  cookie = page.headers
    .getSetCookie()
    .map((c) => c.split(";")[0])
    .join("; ");
}

const browserLikeFetch = (input, init = {}) => {
  const url = typeof input === "string" ? input : input.url;
  if (!cookie || new URL(url).origin !== origin) return fetch(input, init);
  const headers = new Headers(init.headers);
  headers.set("cookie", cookie);
  return fetch(input, { ...init, headers });
};

const client = (extra = {}) =>
  createFalClient({
    proxyUrl: { url: `${base}/api/fal/proxy`, when: "always" },
    fetch: browserLikeFetch,
    ...extra,
  });

// Every wait is bounded: a proxy that turns fal's errors into successes would
// otherwise leave subscribe polling for ever.
const SUBSCRIBE_TIMEOUT = 5000;
const started = Date.now();
const now = () => Date.now() - started;

const scenarios = {
  async subscribe(mode = "polling") {
    const updates = [];
    let enqueued = null;
    const result = await client().subscribe(MODEL, {
      input: { prompt: `subscribe ${mode}` },
      logs: true,
      mode,
      pollInterval: 50,
      timeout: SUBSCRIBE_TIMEOUT,
      onEnqueue: (id) => (enqueued = id),
      onQueueUpdate: (u) => updates.push({ status: u.status, logs: u.logs ?? null }),
    });
    return { requestId: result.requestId, data: result.data, enqueued, updates };
  },

  subscribe_streaming() {
    return scenarios.subscribe("streaming");
  },

  async queue() {
    const fal = client();
    const submitted = await fal.queue.submit(MODEL, {
      input: { prompt: "queue by hand" },
      priority: "low",
    });
    const statuses = [];
    for (let i = 0; i < 10; i++) { // bounded: COMPLETED comes on the third poll
      const status = await fal.queue.status(MODEL, {
        requestId: submitted.request_id,
        logs: true,
      });
      statuses.push(status);
      if (status.status === "COMPLETED") break;
    }
    const result = await fal.queue.result(MODEL, { requestId: submitted.request_id });
    return { submitted, statuses, result };
  },

  async cancel() {
    const fal = client();
    const submitted = await fal.queue.submit(MODEL, { input: { prompt: "never mind" } });
    const cancelled = await fal.queue.cancel(MODEL, { requestId: submitted.request_id });
    return { submitted, cancelled: cancelled ?? null };
  },

  async run() {
    const result = await client().run(MODEL, { input: { prompt: "run now" } });
    return { requestId: result.requestId, data: result.data };
  },

  async run_with_client_key() {
    // A page that (wrongly) holds a key: the proxy must not pass it on.
    const fal = client({
      credentials: "browser-held-key",
      suppressLocalCredentialsWarning: true,
    });
    const result = await fal.run(MODEL, { input: { prompt: "whose key" } });
    return { data: result.data };
  },

  async stream() {
    const stream = await client().stream(MODEL, { input: { prompt: "streaming words" } });
    const events = [];
    stream.on("data", (data) => events.push({ at: now(), data }));
    const final = await stream.done();
    return { events, final, doneAt: now() };
  },

  async upload() {
    const bytes = new TextEncoder().encode("hello from the e2e test\n");
    const file = new File([bytes], "hello.txt", { type: "text/plain" });
    const url = await client().storage.upload(file);
    return { url };
  },

  async run_with_upload() {
    const image = new File([new Uint8Array([137, 80, 78, 71])], "in.png", {
      type: "image/png",
    });
    const result = await client().run(MODEL, {
      input: { prompt: "with a file", image_url: image },
    });
    return { data: result.data };
  },

  async disallowed_endpoint() {
    return client().run("fal-ai/some-other-model", { input: { prompt: "x" } });
  },

  async unauthenticated() {
    return client().subscribe(MODEL, {
      input: { prompt: "x" },
      pollInterval: 50,
      timeout: SUBSCRIBE_TIMEOUT,
    });
  },

  async validation_error() {
    return client().run(MODEL, { input: { prompt: "x", num_images: 10 } });
  },

  async validation_error_queue() {
    return client().subscribe(MODEL, {
      input: { prompt: "x", num_images: 0 },
      pollInterval: 50,
      timeout: SUBSCRIBE_TIMEOUT,
    });
  },
};

function describe(error) {
  return {
    name: error.name,
    isApiError: error instanceof ApiError,
    isValidationError: error instanceof ValidationError,
    status: error.status ?? null,
    message: error.message,
    body: error.body ?? null,
    fieldErrors: error instanceof ValidationError ? error.fieldErrors : null,
  };
}

if (!(scenario in scenarios)) {
  console.error(`unknown scenario ${scenario}; one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
let outcome;
try {
  if (scenario !== "unauthenticated") await login();
  outcome = { ok: (await scenarios[scenario]()) ?? null };
} catch (error) {
  outcome = { error: describe(error) };
}
console.log(JSON.stringify(outcome));
// The client can leave a poll timer behind (a subscribe that timed out while a
// status request was in flight keeps polling), so do not wait for the loop to drain.
process.exit(0);
