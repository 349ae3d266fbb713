// Spends through two instances of the example app with the real @fal-ai/client.
//
//   node usage_budget.mjs <base A> <base B> <scenario>
//
// One visitor (the session cookie of GET / on A, valid on B: both share
// SECRET_KEY) makes every call. Prints one JSON line with what each call got.
import { ApiError, createFalClient } from "@fal-ai/client";

const [baseA, baseB, scenario] = process.argv.slice(2);
const MODEL = process.env.E2E_MODEL ?? "fal-ai/flux/schnell";
let cookie = "";

const withCookie = (input, init = {}) => {
  const url = typeof input === "string" ? input : input.url;
  const headers = new Headers(init.headers);
  if (url.startsWith(baseA) || url.startsWith(baseB)) headers.set("cookie", cookie);
  return fetch(input, { ...init, headers });
};

const client = (base) =>
  createFalClient({
    proxyUrl: { url: `${base}/api/fal/proxy`, when: "always" },
    fetch: withCookie,
  });

const outcome = async (work) => {
  try {
    await work();
    return { ok: true };
  } catch (error) {
    if (error instanceof ApiError) {
      return { ok: false, status: error.status, code: error.body?.code, message: error.body?.message };
    }
    return { ok: false, error: String(error) };
  }
};

async function usage(base) {
  const answer = await withCookie(`${base}/api/usage`);
  return answer.json();
}

const scenarios = {
  // Calls on both instances at once, more than the budget covers.
  async concurrent() {
    const count = Number(process.env.E2E_CALLS ?? 12);
    const clients = [client(baseA), client(baseB)];
    const results = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        outcome(() => clients[i % 2].run(MODEL, { input: { prompt: `call ${i}` } })),
      ),
    );
    return { results, usage: await usage(baseB) };
  },
  // A queue job submitted on A whose result is fetched on B.
  async crossInstance() {
    const a = client(baseA);
    const b = client(baseB);
    const { request_id: requestId } = await a.queue.submit(MODEL, {
      input: { prompt: "queued", image_size: "square_hd", num_images: 2 },
    });
    const before = await usage(baseB);
    for (let i = 0; i < 20; i++) {
      const status = await a.queue.status(MODEL, { requestId });
      if (status.status === "COMPLETED") break;
    }
    const result = await b.queue.result(MODEL, { requestId });
    return { requestId, images: result.data.images.length, before, after: await usage(baseA) };
  },
};

const page = await fetch(`${baseA}/`);
cookie = page.headers
  .getSetCookie()
  .map((c) => c.split(";")[0])
  .join("; ");
console.log(JSON.stringify(await scenarios[scenario]()));
