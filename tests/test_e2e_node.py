"""The real ``@fal-ai/client`` in Node, through the example app under gunicorn.

Only the last hop is redirected: gunicorn serves the example app unchanged
and its outbound session delivers the real fal URLs to a fake fal running in
this process, so each check can read exactly what "fal" received. The checks
themselves live in ``tests/e2e/client_checks.py``, shared with the run
against ``@fal-ai/server-proxy``.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Iterator

import pytest

if "e2e.client_checks" not in sys.modules:
    pytest.register_assert_rewrite("e2e.client_checks")

from e2e.client_checks import CHECKS  # noqa: E402
from e2e.harness import E2E_DIR, clean_env, gunicorn, require_node, run_node  # noqa: E402

from flask_fal_proxy.testing import FakeFal  # noqa: E402

pytestmark = pytest.mark.e2e

KEY = "e2e-key-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFal]:
    # A slow stream makes buffering visible: partial events must arrive early.
    with FakeFal(key=KEY, stream_delay=0.25) as fake:
        yield fake


@pytest.fixture(scope="module")
def app_url(fal: FakeFal) -> Iterator[str]:
    require_node()
    env = clean_env(FAL_KEY=KEY, FAL_PROXY_FAKE_PORT=str(fal.port), SECRET_KEY="e2e")
    server = gunicorn("example_app.app:app", env)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.parametrize("name", list(CHECKS))
def test_client_scenario_through_our_proxy(name, fal, app_url):
    fal.calls.clear()
    fal.uploads.clear()
    result = run_node("client_scenarios.mjs", app_url, name)
    CHECKS[name](result, fal, KEY)


def test_every_scenario_has_a_check():
    script = (E2E_DIR / "client_scenarios.mjs").read_text(encoding="utf-8")
    body = script.split("const scenarios = {", 1)[1].split("\n};", 1)[0]
    names = re.findall(r"^  (?:async )?(\w+)\(", body, flags=re.M)
    assert sorted(names) == sorted(CHECKS)
