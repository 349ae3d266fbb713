"""The same requests to our proxy and to ``@fal-ai/server-proxy``, side by side.

Ours runs under gunicorn (``tests/compat/ours_app.py``), theirs under Express
(``tests/e2e/ts_proxy_server.mjs``), both in the same two configurations and
both with outbound delivered to one fake fal. For every request the run
records the status and what reached fal, and renders the table in
``docs/COMPATIBILITY.md``. The tests fail when a difference has no reason in
``REASONS``, when a reason is stale, or when the document is not what the run
produces. ``FAL_PROXY_UPDATE_COMPAT=1`` rewrites the document instead.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests
from e2e.harness import ROOT, Server, clean_env, gunicorn, node_server, require_node
from support import check_generated_section

from flask_fal_proxy.testing import FakeFal

pytestmark = pytest.mark.e2e

KEY = "compat-key-" + secrets.token_hex(8)
BROWSER_AUTH = "Key browser-held-key"
DOC = ROOT / "docs" / "COMPATIBILITY.md"
START, END = "<!-- compat-table:start -->", "<!-- compat-table:end -->"
DEFAULT, STRICT = "/api/fal/proxy", "/strict/api/fal/proxy"
RUN = "https://fal.run/fal-ai/flux/schnell"
QUEUE = "https://queue.fal.run/fal-ai/flux/schnell"
JOB = "https://queue.fal.run/fal-ai/flux/requests/{rid}"
UPLOAD = "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3"
PROMPT = b'{"prompt":"compat"}'
UA = "compat-run/1"


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    ours: int  # the status our proxy must answer
    method: str = "POST"
    target: str | None = RUN
    route: str = DEFAULT
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = PROMPT
    content_type: str | None = "application/json"


ALICE = {"x-test-user": "alice"}
SSE = {"accept": "text/event-stream"}
BIG = json.dumps({"prompt": "x" * 200_000}).encode()

CASES = [
    # Valid calls, in the order the client makes them.
    Case("submit", "queue submit", 200, target=QUEUE),
    Case("status", "queue status with logs", 200, "GET", JOB + "/status?logs=1", body=None),
    Case(
        "status-stream",
        "queue status stream (SSE)",
        200,
        "GET",
        JOB + "/status/stream",
        headers=SSE,
        body=None,
    ),
    Case("result", "queue result", 200, "GET", JOB, body=None),
    Case(
        "cancel",
        "queue cancel (PUT, no body)",
        202,
        "PUT",
        JOB + "/cancel",
        body=None,
        content_type=None,
    ),
    Case("run", "fal.run", 200),
    Case("stream", "fal.stream (SSE)", 200, target=RUN + "/stream", headers=SSE),
    Case(
        "upload-initiate",
        "storage upload initiate",
        200,
        target=UPLOAD,
        body=b'{"content_type":"text/plain","file_name":"a.txt"}',
    ),
    Case(
        "webhook-query",
        "submit with fal_webhook query",
        200,
        target=QUEUE + "?fal_webhook=https%3A%2F%2Fexample.com%2Fhook",
    ),
    Case(
        "x-fal-headers",
        "x-fal-* request headers",
        200,
        target=QUEUE,
        headers={
            "x-fal-queue-priority": "low",
            "x-fal-runner-hint": "h1",
            "x-fal-request-timeout": "30",
        },
    ),
    Case(
        "strict-allowed",
        "strict: allowed endpoint, authenticated",
        200,
        route=STRICT,
        target=QUEUE,
        headers=ALICE,
    ),
    Case(
        "strict-queue-get",
        "strict: GET status of another app's request",
        404,
        "GET",
        "https://queue.fal.run/other/model/requests/x/status",
        route=STRICT,
        headers=ALICE,
        body=None,
    ),
    # fal's own errors.
    Case("upstream-422", "input fal rejects (422)", 422, body=b'{"prompt":"x","num_images":10}'),
    Case("upstream-500", "model error (500)", 500, target="https://fal.run/fal-ai/server-error"),
    Case(
        "upstream-404",
        "unknown request id (404)",
        404,
        "GET",
        "https://queue.fal.run/fal-ai/flux/requests/nope/status",
        body=None,
    ),
    # What the browser sends that fal must not see.
    Case(
        "browser-authorization",
        "browser sends its own Authorization",
        200,
        headers={"authorization": BROWSER_AUTH},
    ),
    Case("browser-cookie", "browser sends cookies", 200, headers={"cookie": "session=s3cret"}),
    # Refusals.
    Case("no-target", "no x-fal-target-url", 400, target=None),
    Case("empty-target", "empty x-fal-target-url", 400, target=""),
    Case("foreign-host", "target on another host", 412, target="https://example.com/steal"),
    Case(
        "lookalike-host",
        "target on a look-alike host",
        412,
        target="https://fal.run.evil.example/x",
    ),
    Case("http-scheme", "plain http target", 412, target="http://fal.run/fal-ai/flux/schnell"),
    Case("default-port", "explicit :443", 412, target="https://fal.run:443/fal-ai/flux/schnell"),
    Case("other-port", "explicit :8443", 412, target="https://fal.run:8443/fal-ai/flux/schnell"),
    Case(
        "userinfo",
        "userinfo in the target",
        412,
        target="https://user:pw@fal.run/fal-ai/flux/schnell",
    ),
    Case("uppercase-host", "upper-case host", 412, target="https://FAL.RUN/fal-ai/flux/schnell"),
    Case(
        "dot-segments",
        "dot segments in the path",
        412,
        target="https://fal.run/fal-ai/flux/schnell/../../../other/model",
    ),
    Case(
        "encoded-slash",
        "encoded slash in the path",
        412,
        target="https://fal.run/fal-ai%2Fflux%2Fschnell",
    ),
    Case(
        "rest-other-path",
        "rest.fal.ai outside storage upload",
        412,
        target="https://rest.fal.ai/tokens",
    ),
    Case("strict-unauthenticated", "strict: not authenticated", 401, route=STRICT, target=QUEUE),
    Case(
        "strict-endpoint-post",
        "strict: POST to another model",
        403,
        route=STRICT,
        target="https://fal.run/other/model",
        headers=ALICE,
    ),
    Case(
        "strict-endpoint-queue",
        "strict: queue submit to another model",
        403,
        route=STRICT,
        target="https://queue.fal.run/other/model",
        headers=ALICE,
    ),
    Case(
        "strict-endpoint-get",
        "strict: GET on fal.run of another model",
        403,
        "GET",
        "https://fal.run/other/model",
        route=STRICT,
        headers=ALICE,
        body=None,
    ),
    Case(
        "strict-dot-segments",
        "strict: dot segments out of the allowed models",
        412,
        route=STRICT,
        target="https://fal.run/fal-ai/flux/../../other/model",
        headers=ALICE,
    ),
    Case("non-json-body", "text/plain body", 415, body=b"hello", content_type="text/plain"),
    Case("malformed-json", "malformed JSON body", 400, body=b"{"),
    Case("big-body", "200 kB JSON body", 200, body=BIG),
    Case("patch", "on a cancel URL", 405, "PATCH", JOB + "/cancel"),
    Case("head", "on a status URL", 404, "HEAD", JOB + "/status", body=None, content_type=None),
]

# Why each difference is there. A difference without a reason, or a reason
# without a difference, fails the run.
REASONS = {
    "browser-authorization": "The browser's `Authorization` is never forwarded: with "
    "server-proxy's default `resolveFalAuth` a visitor's header replaces the server's key, "
    "so fal would bill (or reject) whatever key the visitor chose.",
    "foreign-host": "412 Precondition Failed for a target URL we refuse, as fal's proxy "
    "formula specifies; server-proxy answers 400 for every refusal.",
    "lookalike-host": "412, as for every refused target URL.",
    "http-scheme": "Only `https://` targets are sent: server-proxy matches the URL without "
    "its scheme, so `http://fal.run/...` passes its allow-list and the key travels in "
    "clear text.",
    "default-port": "Ports are refused outright (412) so that the string checked is the "
    "string sent; server-proxy's URL parser drops the default port and forwards.",
    "other-port": "412, as for every refused target URL.",
    "userinfo": "412. server-proxy lets `user:pw@` through its allow-list (it matches the "
    "host), then `fetch` throws on the credentials and the unhandled rejection takes the "
    "whole Express process down.",
    "uppercase-host": "Only canonical URLs are sent (412); server-proxy lower-cases the host "
    "and forwards.",
    "dot-segments": "Dot segments are refused (412) instead of being resolved: server-proxy "
    "resolves them and forwards the resolved URL, which reaches a different model than the "
    "one the page named.",
    "encoded-slash": "Encoded separators are refused (412); server-proxy forwards them for "
    "fal's router to decode, after its allow-list saw one path segment.",
    "rest-other-path": "412, as for every refused target URL.",
    "strict-endpoint-post": "403 Forbidden for an endpoint outside `allowed_endpoints`; "
    "server-proxy answers 400.",
    "strict-endpoint-queue": "403, as above.",
    "strict-endpoint-get": "Every call to `fal.run` runs a model whatever its method, so "
    "ours checks the endpoint for all of them (403); server-proxy checks POST only and "
    "forwards a GET to a model outside the list.",
    "strict-dot-segments": "412 for the dot segments (see above); server-proxy resolves them "
    "and then refuses the resolved endpoint (400).",
    "non-json-body": "415 for a body that is not JSON: server-proxy's `express.json()` "
    "skips it and the handler forwards `{}` in its place, so fal runs the model on an "
    "empty input.",
    "big-body": "The body limit is ours (`max_request_body_bytes`, 32 MiB by default, 413 "
    "above it); under Express the limit is `express.json()`'s 100 kB default.",
    "patch": "Only GET, POST, PUT and DELETE are proxied (405 with `Allow`); server-proxy "
    "forwards any method `app.all` accepts.",
    "head": "HEAD is forwarded as HEAD and fal's answer relayed without a body; server-proxy "
    "attaches a `{}` body to the HEAD, `fetch` throws, and the unhandled rejection takes the "
    "Express process down.",
    "cancel": "A call without a body is forwarded without one; server-proxy sends `{}` "
    "(`express.json()` makes `req.body` an empty object) with `content-type: "
    "application/json`.",
}


@dataclass
class Outcome:
    status: int | None
    answer: str
    calls: list[dict[str, object]]
    relayed: str
    code: str | None = None

    @property
    def relays(self) -> bool:
        return bool(self.calls) and self.status is not None


_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def _mask(text: str, rid: str) -> str:
    return _UUID.sub("<id>", text.replace(rid, "{rid}"))


def _call_record(call, case: Case, rid: str) -> dict[str, object]:
    sent = case.body or b""
    headers = {k.lower(): v for k, v in call.headers.items()}
    auth = headers.get("authorization")
    auth = {f"Key {KEY}": "server key", BROWSER_AUTH: "browser's key"}.get(auth, repr(auth))
    if not call.body:
        body = "no body"
    elif call.body == sent:
        body = "body as sent"
    else:
        body = f"body {call.body[:20].decode(errors='replace')!r}"
    record: dict[str, object] = {
        "request": _mask(
            f"{call.method} {call.host}{call.path}{'?' + call.query if call.query else ''}",
            rid,
        ),
        "auth": auth,
        "body": body,
        "content-type": headers.get("content-type"),
        "accept": headers.get("accept"),
        "x-fal": sorted(k for k in headers if k.startswith("x-fal-") and k != "x-fal-client-proxy"),
    }
    if "cookie" in headers:
        record["cookie"] = headers["cookie"]
    if headers.get("user-agent") != UA:
        record["user-agent"] = headers.get("user-agent")
    return record


class Side:
    """One proxy under test; restartable, because one of them can crash."""

    def __init__(self, name: str, start) -> None:
        self.name = name
        self.start = start
        self.server: Server = start()

    def send(self, case: Case, fake: FakeFal, rid: str) -> Outcome:
        if self.server.proc.poll() is not None:
            self.server.stop()
            self.server = self.start()
        fake.calls.clear()
        headers = {"user-agent": UA, "accept": "application/json", **case.headers}
        if case.content_type and case.body is not None:
            headers["content-type"] = case.content_type
        if case.target is not None:
            headers["x-fal-target-url"] = case.target.replace("{rid}", rid)
        try:
            response = requests.request(
                case.method,
                self.server.url + case.route,
                headers=headers,
                data=case.body,
                timeout=(3, 10),
            )
        except requests.RequestException as exc:
            crashed = self._crashed()
            answer = "process crashed" if crashed else f"no answer ({type(exc).__name__})"
            calls = [_call_record(c, case, rid) for c in fake.calls]
            return Outcome(None, answer, calls, "")
        calls = [_call_record(c, case, rid) for c in fake.calls]
        body = response.text
        answer, code = _mask(body, rid), None
        try:
            message = response.json()
            if isinstance(message, dict):
                answer, code = message.get("message", answer), message.get("code")
            else:
                answer = message
        except ValueError:
            if "<html" in body.lower() or "<!doctype" in body.lower():
                answer = "HTML error page"
        relayed = _mask(body, rid) if calls else ""
        return Outcome(response.status_code, str(answer)[:70], calls, relayed, code)

    def _crashed(self) -> bool:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if self.server.proc.poll() is not None:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self.server.stop()


def _new_job(fake: FakeFal) -> str:
    response = requests.post(
        f"{fake.base_url}/fal-ai/flux/schnell",
        headers={"Host": "queue.fal.run", "Authorization": f"Key {KEY}"},
        json={"prompt": "compat"},
        timeout=5,
    )
    return response.json()["request_id"]


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, dict[str, Outcome]]]:
    require_node()
    with FakeFal(key=KEY, stream_delay=0.01) as fake:
        env = clean_env(
            FAL_KEY=KEY, FAL_PROXY_FAKE_PORT=str(fake.port), FAKE_FAL_PORT=str(fake.port)
        )
        sides = [
            Side("ours", lambda: gunicorn("ours_app:app", env, "--pythonpath", "tests/compat")),
            Side(
                "theirs",
                lambda: node_server("ts_proxy_server.mjs", env, "--import", "./fake_fal_fetch.mjs"),
            ),
        ]
        try:
            out: dict[str, dict[str, Outcome]] = {}
            for side in sides:
                rid = _new_job(fake)
                out[side.name] = {case.id: side.send(case, fake, rid) for case in CASES}
            yield out
        finally:
            for side in sides:
                side.stop()


# Differences that apply to many requests at once; each is checked on every
# request by test_general_differences_hold, and tagged in the table's rows.
GENERAL = {
    "G1": "`x-fal-target-url` is not sent to fal. server-proxy passes every `x-fal-*` "
    "header on, its own target header included, so fal learns the proxy's routing header "
    "for nothing; we pass the other `x-fal-*` headers (priority, runner hint, timeouts, "
    "lifecycle) as they are.",
    "G2": "fal receives the browser's own `Accept` and `Content-Type` (none without a "
    "body). server-proxy replaces both with `application/json` on every call, including "
    "the server-sent-event ones that asked for `text/event-stream`.",
    "G3": "fal's status is relayed as it is. server-proxy's Express adapter streams the "
    "body without copying the status, so every answer fal gives, 4xx and 5xx included, "
    "reaches the browser as 200 and the client never raises its `ApiError`.",
    "G4": 'Our own refusals are JSON `{"message", "code"}`, so the client\'s `ApiError` '
    "carries a readable message and callers can branch on `code`. server-proxy answers a "
    'bare JSON string (`"Invalid request"`, `"Unauthorized"`) or Express\'s HTML error page.',
}


def _normalized(call: dict[str, object]) -> dict[str, object]:
    rest = {k: v for k, v in call.items() if k not in ("accept", "content-type")}
    rest["x-fal"] = [h for h in call["x-fal"] if h != "x-fal-target-url"]  # type: ignore[union-attr]
    return rest


def general_tags(ours: Outcome, theirs: Outcome) -> list[str]:
    calls = ours.calls + theirs.calls
    tags = []
    if any("x-fal-target-url" in c["x-fal"] for c in calls):  # type: ignore[operator]
        tags.append("G1")
    pairs = zip(ours.calls, theirs.calls, strict=False)
    if any((a["accept"], a["content-type"]) != (b["accept"], b["content-type"]) for a, b in pairs):
        tags.append("G2")
    if ours.relays and theirs.relays and ours.status != theirs.status:
        tags.append("G3")
    if not ours.calls and not theirs.calls and ours.answer != theirs.answer:
        tags.append("G4")
    return tags


def differs(ours: Outcome, theirs: Outcome) -> bool:
    """Whether the two differ in a way no general difference accounts for."""
    both_relay = ours.relays and theirs.relays
    if not both_relay and ours.status != theirs.status:
        return True
    if [_normalized(c) for c in ours.calls] != [_normalized(c) for c in theirs.calls]:
        return True
    return ours.relayed != theirs.relayed


def _cell(outcome: Outcome) -> str:
    status = "—" if outcome.status is None else str(outcome.status)
    if not outcome.calls:
        reached = "nothing reached fal"
    else:
        parts = []
        for call in outcome.calls:
            extra = [
                f"{k}: {'none' if v is None else v}"
                for k, v in call.items()
                if k not in ("request", "x-fal")
            ]
            if call["x-fal"]:
                extra.append("x-fal: " + " ".join(call["x-fal"]))  # type: ignore[arg-type]
            parts.append(f"`{call['request']}` ({'; '.join(extra)})")
        reached = "<br>".join(parts)
    answer = outcome.answer.replace("\n", " ")
    if outcome.relays:
        answer = "fal's answer"
    return f"**{status}** {answer}<br>{reached}".replace("|", "\\|")


def render(results: dict[str, dict[str, Outcome]]) -> str:
    lines = [
        "| # | request | ours (flask-fal-proxy) | @fal-ai/server-proxy | difference |",
        "|---|---|---|---|---|",
    ]
    for number, case in enumerate(CASES, 1):
        ours, theirs = results["ours"][case.id], results["theirs"][case.id]
        verdict = []
        if differs(ours, theirs):
            verdict.append(REASONS.get(case.id, "**UNEXPLAINED**"))
        tags = general_tags(ours, theirs)
        if tags:
            verdict.append("general: " + ", ".join(tags))
        route = " (strict)" if case.route == STRICT else ""
        lines.append(
            f"| {number} | `{case.id}`: {case.method} {case.what}{route} | {_cell(ours)} "
            f"| {_cell(theirs)} | {'<br>'.join(verdict) or 'same'} |"
        )
    lines += ["", "General differences, tagged in the table above:", ""]
    lines += [f"- **{tag}** {text}" for tag, text in GENERAL.items()]
    return "\n".join(lines)


def differing(results) -> set[str]:
    return {c.id for c in CASES if differs(results["ours"][c.id], results["theirs"][c.id])}


def test_general_differences_hold(results):
    by_id = {c.id: c for c in CASES}
    for case_id, ours in results["ours"].items():
        case, theirs = by_id[case_id], results["theirs"][case_id]
        sent_accept = case.headers.get("accept", "application/json")
        sent_type = case.content_type if case.body else None
        for call in ours.calls:
            assert "x-fal-target-url" not in call["x-fal"], case_id
            assert (call["accept"], call["content-type"]) == (sent_accept, sent_type), case_id
        for call in theirs.calls:
            assert "x-fal-target-url" in call["x-fal"], case_id
            assert (call["accept"], call["content-type"]) == ("application/json",) * 2, case_id
        if theirs.relays:
            assert theirs.status == 200, case_id
        if not ours.calls:
            assert ours.code and ours.answer, case_id
    tags = {t for c in CASES for t in general_tags(results["ours"][c.id], results["theirs"][c.id])}
    assert tags == set(GENERAL)


def test_our_statuses_are_the_documented_ones(results):
    wrong = {
        c.id: results["ours"][c.id].status for c in CASES if results["ours"][c.id].status != c.ours
    }
    assert wrong == {}


def test_we_never_forward_browser_credentials_or_cookies(results):
    for case_id, outcome in results["ours"].items():
        for call in outcome.calls:
            assert call["auth"] == "server key", case_id
            assert "cookie" not in call, case_id


def test_every_difference_is_explained(results):
    diffs = differing(results)
    assert sorted(diffs - set(REASONS)) == [], "differences without a reason"
    assert sorted(set(REASONS) - diffs) == [], "reasons for differences that went away"


def test_the_document_is_what_the_run_produces(results):
    check_generated_section(
        DOC, START, END, render(results), missing=f"{DOC} has no generated table"
    )
