// Preload (node --import) that delivers fetch calls for fal's hosts to the
// fake fal on 127.0.0.1:$FAKE_FAL_PORT, keeping the original Host header.
//
// The code under test is not touched: it calls the global fetch with the real
// fal URL. The request is first built with `new Request`, so every check real
// fetch makes on the URL, method and body still applies; only the transport
// is replaced (Node's fetch will not send a Host header of our choosing).
import http from "node:http";
import { Readable } from "node:stream";

const port = Number(process.env.FAKE_FAL_PORT);
if (!port) throw new Error("FAKE_FAL_PORT is not set");
const realFetch = globalThis.fetch;
const isFalHost = (host) => /(^|\.)fal\.(ai|run)$/.test(host);

globalThis.fetch = async function fetchViaFakeFal(input, init) {
  const request = new Request(input, init);
  const url = new URL(request.url);
  if (!isFalHost(url.hostname)) return realFetch(input, init);
  const headers = Object.fromEntries(request.headers);
  headers.host = url.host;
  const body =
    request.method === "GET" || request.method === "HEAD"
      ? null
      : Buffer.from(await request.arrayBuffer());
  if (body) headers["content-length"] = String(body.length);
  const answer = await new Promise((resolve, reject) => {
    const outgoing = http.request(
      { host: "127.0.0.1", port, method: request.method, path: url.pathname + url.search, headers },
      resolve,
    );
    outgoing.on("error", reject);
    outgoing.end(body ?? undefined);
  });
  const responseHeaders = new Headers();
  for (let i = 0; i < answer.rawHeaders.length; i += 2) {
    responseHeaders.append(answer.rawHeaders[i], answer.rawHeaders[i + 1]);
  }
  const bodyless = request.method === "HEAD" || [204, 304].includes(answer.statusCode);
  if (bodyless) answer.resume();
  return new Response(bodyless ? null : Readable.toWeb(answer), {
    status: answer.statusCode,
    statusText: answer.statusMessage,
    headers: responseHeaders,
  });
};
