"""The client scenarios of ``test_e2e_node.py``, run against ``@fal-ai/server-proxy``.

Same client, same checks, same fake fal; the proxy is the official one under
Express with the example app's policy (``ts_proxy_server.mjs`` with
``TS_PROXY_MODE=example``). Where a check fails there, the failure must be one
listed in ``KNOWN`` with its reason, and ``docs/COMPATIBILITY.md`` shows the
whole list for both proxies.
"""

from __future__ import annotations

import secrets
import sys
import traceback
from collections.abc import Iterator

import pytest

if "e2e.client_checks" not in sys.modules:
    pytest.register_assert_rewrite("e2e.client_checks")

from e2e.client_checks import CHECKS  # noqa: E402
from e2e.harness import ROOT, clean_env, node_server, require_node, run_node  # noqa: E402
from support import check_generated_section  # noqa: E402

from flask_fal_proxy.testing import FakeFal  # noqa: E402

pytestmark = pytest.mark.e2e

KEY = "e2e-ts-key-" + secrets.token_hex(8)
DOC = ROOT / "docs" / "COMPATIBILITY.md"
START, END = "<!-- client-scenarios:start -->", "<!-- client-scenarios:end -->"

# Scenarios that fail through @fal-ai/server-proxy, and why (G-tags refer to the
# general differences in docs/COMPATIBILITY.md).
KNOWN = {
    "subscribe_streaming": "G2: fal is asked for `application/json` where the client asked "
    "for `text/event-stream`.",
    "cancel": "fal receives `{}` as the body of the cancel PUT.",
    "run_with_client_key": "server-proxy's default `resolveFalAuth` sends the client's own "
    "`Authorization` to fal instead of the server's key; fal refuses that key with a 401, "
    "which reaches the client as a 200 (G3), so it returns the refusal as its result.",
    "stream": "G2: as for `subscribe_streaming`.",
    "disallowed_endpoint": "400 instead of 403, and no message: the client's error says "
    "only `Bad Request` (G4).",
    "unauthenticated": "The client's error says only `Unauthorized`, without the proxy's "
    "message or a code (G4).",
    "validation_error": "G3: fal's 422 reaches the client as a 200, so it returns fal's "
    "error body as if it were the result instead of raising `ValidationError`.",
    "validation_error_queue": "G3: as for `validation_error`, at submit.",
}


def _first_failure(exc: Exception) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    line = (frame.line or "").strip()
    if not isinstance(exc, AssertionError):
        return f"{line} — {type(exc).__name__}: {exc}"
    return f"{line} — {exc.args[0]}" if exc.args and isinstance(exc.args[0], str) else line


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, str]]:
    require_node()
    with FakeFal(key=KEY, stream_delay=0.25) as fal:
        env = clean_env(FAL_KEY=KEY, FAKE_FAL_PORT=str(fal.port), TS_PROXY_MODE="example")
        server = node_server("ts_proxy_server.mjs", env, "--import", "./fake_fal_fetch.mjs")
        try:
            results: dict[str, str] = {}
            for name, check in CHECKS.items():
                fal.calls.clear()
                fal.uploads.clear()
                result = run_node("client_scenarios.mjs", server.url, name)
                try:
                    check(result, fal, KEY)
                except (AssertionError, LookupError, TypeError) as exc:
                    results[name] = _first_failure(exc)
                else:
                    results[name] = "passes"
            yield results
        finally:
            server.stop()


def render(outcomes: dict[str, str]) -> str:
    lines = [
        "| client scenario | ours (gunicorn) | @fal-ai/server-proxy (Express) |",
        "|---|---|---|",
    ]
    for name, check in CHECKS.items():
        doc = " ".join((check.__doc__ or "").split())
        theirs = outcomes[name]
        if theirs != "passes":
            failed = theirs.split(" — ")[0].replace("|", "\\|")
            theirs = f"**fails** at `{failed}`<br>{KNOWN.get(name, '**UNEXPLAINED**')}"
        lines.append(f"| `{name}`: {doc} | passes | {theirs} |")
    return "\n".join(lines)


def test_only_the_known_scenarios_fail_through_server_proxy(outcomes):
    failing = {name for name, outcome in outcomes.items() if outcome != "passes"}
    assert sorted(failing - set(KNOWN)) == [], {n: outcomes[n] for n in failing - set(KNOWN)}
    assert sorted(set(KNOWN) - failing) == [], "reasons for failures that went away"


def test_the_document_lists_the_scenarios_for_both_proxies(outcomes):
    check_generated_section(
        DOC,
        START,
        END,
        render(outcomes),
        missing=f"{DOC} has no client scenario table",
        add_before="## What this means",
    )
