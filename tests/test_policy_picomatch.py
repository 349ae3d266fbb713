"""Differential test: our glob matcher against the real picomatch that @fal-ai/server-proxy uses."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from flask_fal_proxy.policy import compile_patterns as create_url_matcher

PICOMATCH = Path(__file__).parent / "e2e" / "node_modules" / "picomatch"

if not (shutil.which("node") and PICOMATCH.is_dir()):
    if os.environ.get("CI") == "true":
        raise RuntimeError(
            "CI needs node and tests/e2e/node_modules (scripts/bootstrap.sh installs them)"
        )
    pytest.skip(
        "node or tests/e2e/node_modules/picomatch missing; run scripts/test",
        allow_module_level=True,
    )

PATTERNS = [
    "fal.run/**",
    "queue.fal.run/**",
    "rest.fal.ai/storage/upload/initiate\\?storage_type=fal-cdn-v3",
    "fal.run/exact",
    "fal.run/*/path",
    "fal-ai/*",
    "fal-ai/**",
    "fal-ai/**/dev",
    "**/dev",
    "*/flux-dev",
    "fal-ai/fast-*",
    "fal-ai/flux/**",
    "fal-ai/flux**",
    "fal-ai/flux-?ev",
    "fal-ai/[a-f]*",
    "fal-ai/[^a-f]*",
    "fal-ai/[!d]",
    "fal-ai/{flux,sdxl}/dev",
    "fal-ai/{flux/dev,fast-*}",
    "fal-ai/{a}",
    "fal-ai/*/requests/*",
    "fal.run/a+b",
    "fal.run/x.y",
    "fal-ai/*.png",
]
VALUES = [
    "",
    "fal.run",
    "fal.run/",
    "fal.run/exact",
    "fal.run/exact/",
    "fal.run/exact/more",
    "fal.run/any/path",
    "fal.run/path",
    "fal.run//path",
    "fal.run/a/../b",
    "fal.run/./x",
    "fal.run/a+b",
    "fal.run/aab",
    "fal.run/x.y",
    "fal.run/xzy",
    "fal.run/x?y=1",
    "queue.fal.run/fal-ai/flux/requests/1/status?logs=1",
    "rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3",
    "rest.fal.ai/storage/upload/initiateXstorage_type=fal-cdn-v3",
    "fal-ai",
    "fal-ai/",
    "fal-ai/flux",
    "fal-ai/flux/",
    "fal-ai/flux/dev",
    "fal-ai/flux-dev",
    "fal-ai/flux/dev/extra",
    "fal-ai/sdxl/dev",
    "fal-ai/fast-",
    "fal-ai/fast-sdxl",
    "fal-ai/.hidden",
    "fal-ai/..",
    "fal-ai/.",
    "fal-ai/../x",
    "fal-ai/x/../dev",
    "fal-ai/d",
    "fal-ai/!",
    "fal-ai/a",
    "fal-ai/{a}",
    "fal-ai/b.png",
    "fal-ai/b.png/",
    "dev",
    "x/dev",
    "x/y/dev",
    "fal-ai/dev",
    "fal-ai/x/requests/1",
    "other/flux-dev",
]


def random_cases(count: int, seed: int = 1234) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pattern_atoms = ["a", "b", "ab", "*", "**", "?", ".", "..", "[ab]", "[^a]", "{a,b}", "x-", ".a"]
    value_atoms = ["a", "b", "ab", "ba", ".", "..", ".a", "x-", "x-a", "", "a.b", "?"]

    def build(atoms: list[str]) -> str:
        segments = [
            "".join(rng.choice(atoms) for _ in range(rng.randint(1, 2)))
            for _ in range(rng.randint(1, 4))
        ]
        return "/".join(segments)

    return [(build(pattern_atoms), build(value_atoms)) for _ in range(count)]


def picomatch(cases: list[tuple[str, str]]) -> list[bool]:
    script = (
        f"const pm = require({json.dumps(str(PICOMATCH))});"
        "let data = ''; process.stdin.on('data', d => data += d);"
        "process.stdin.on('end', () => { const cases = JSON.parse(data);"
        "console.log(JSON.stringify(cases.map(([p, v]) => pm(p, { dot: true })(v)))); });"
    )
    result = subprocess.run(
        ["node", "-e", script],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def ours(pattern: str, value: str) -> bool | None:
    try:
        return create_url_matcher([pattern])(value)
    except ValueError:
        return None


@pytest.mark.parametrize(
    "cases",
    [
        pytest.param(list(itertools.product(PATTERNS, VALUES)), id="curated"),
        pytest.param(random_cases(3000), id="random-seeded"),
    ],
)
def test_agrees_with_picomatch(cases):
    expected = picomatch(cases)
    disagreements = [
        (pattern, value, want, ours(pattern, value))
        for (pattern, value), want in zip(cases, expected, strict=True)
        if ours(pattern, value) not in (want, None)
    ]
    assert disagreements == [], disagreements[:20]
