"""Generated bodies against the JSON check: the same verdict as json, at a cost linear in size.

The oracle for the verdict is the check as 0.1.x made it, with Python's own
parser (``json.loads`` with NaN and friends refused, the depth counted
outside strings): on small texts it is exact and fast. Each generated text is
checked with slices of a few bytes as well as the real ones, so that every
way an expression can stop at a slice's end is exercised.

The cost invariant times bodies built from one generated unit, repeated to
128 KiB and to 1 MiB: eight times the bytes may cost at most a small multiple
of eight times the time. A quadratic shape (0.1.x's unclosed string full of
escaped quotes) fails it by far; CPU time of the process, best of three, keeps
it steady on a shared machine.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from wire import budget

import flask_fal_proxy.strict_json as strict_json
from flask_fal_proxy.errors import ProxyError
from flask_fal_proxy.validation import MAX_JSON_DEPTH, check_json

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class _Constant(ValueError):
    pass


def _refuse(name: str) -> None:
    raise _Constant(name)


def _oracle(body: bytes) -> str | None:
    """0.1.x's verdict: ``None`` for JSON, else the reason it gave."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"it is not UTF-8 (byte {exc.start})"
    if text.startswith("\ufeff"):
        return "it starts with a byte order mark"
    depth = deepest = 0
    for bracket in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_JSON_DEPTH:
        return f"it is nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        json.loads(text, parse_constant=_refuse, parse_int=str, parse_float=str)
    except _Constant as exc:
        return f"{exc} is not a JSON value (RFC 8259)"
    except json.JSONDecodeError as exc:
        return f"{exc.msg.lower()} at line {exc.lineno} column {exc.colno}"
    return None


def _verdict(body: bytes) -> str | None:
    try:
        check_json(body)
    except ProxyError as exc:
        assert exc.code == "invalid_json"
        return exc.message.removeprefix("The request body is not well-formed JSON: ")[:-1]
    return None


SCALARS = [
    "0",
    "-0.5e+3",
    "1E-9",
    "12345678901234567890",
    '""',
    '"a\\"b\\u00e9\\\\"',
    '"\\ud800"',
    '"caf\u00e9 \U0001f600"',
    "true",
    "false",
    "null",
    "[]",
    "{}",
]
scalars = st.sampled_from(SCALARS)
shallow = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.lists(inner, max_size=3).map(
            lambda xs: "{" + ",".join(f'"k{i}" :{x}' for i, x in enumerate(xs)) + "}"
        )
    ),
    max_leaves=6,
)


@st.composite
def paths(draw: st.DrawFn, max_depth: int = 600) -> str:
    """A value nested ``depth`` levels along one path, with siblings on either side."""
    depth = draw(st.sampled_from([0, 1, 3, 5, 6, 40, 140, 480, 511, 512, 513, max_depth]))
    depth = min(depth, max_depth)
    sibling_counts = st.sampled_from([0, 0, 0, 1, 2])
    same = draw(st.booleans())  # one shape per level, as an attacker would repeat it
    level = None
    opening, closing = [], []
    for _ in range(depth):
        if level is None or not same:
            before = [draw(shallow) for _ in range(draw(sibling_counts))]
            after = [draw(shallow) for _ in range(draw(sibling_counts))]
            space = draw(st.sampled_from(["", "", " ", "\n\t"]))
            if draw(st.booleans()):
                level = (
                    "[" + space + "".join(x + "," + space for x in before),
                    "".join("," + space + x for x in after) + space + "]",
                )
            else:
                level = (
                    "{"
                    + "".join(f'"b{i}":{x},' for i, x in enumerate(before))
                    + '"p"'
                    + space
                    + ":",
                    "".join(f',"a{i}":{x}' for i, x in enumerate(after)) + "}",
                )
        opening.append(level[0])
        closing.append(level[1])
    return "".join(opening) + draw(shallow) + "".join(reversed(closing))


SPOILERS = ["\x01", "\\", '"', ",", ":", "]", "}", "[", "{", "NaN", "-Infinity", "01", "1.", "tru"]


@st.composite
def texts(draw: st.DrawFn) -> bytes:
    text = draw(paths())
    how = draw(st.sampled_from(["as is", "as is", "insert", "delete", "cut", "bytes"]))
    if how != "as is" and text:
        at = draw(st.integers(0, len(text)))
        if how == "insert":
            text = text[:at] + draw(st.sampled_from(SPOILERS)) + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + 1 :]
        elif how == "cut":
            text = text[:at]
    data = text.encode()
    if how == "bytes":
        at = draw(st.integers(0, len(data)))
        data = (
            data[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]))
            + data[at:]
        )
    event(how)
    return data


@pytest.fixture
def slices(monkeypatch) -> Iterator[object]:
    yield lambda size: monkeypatch.setattr(strict_json, "_SLICE", size)


@budget(300)
@given(body=texts(), slice_size=st.sampled_from([3, 7, 64, 65536]))
def test_the_check_gives_the_verdict_json_gives(slices, body, slice_size):
    slices(slice_size)
    expected, got = _oracle(body), _verdict(body)
    depth = f"it is nested deeper than {MAX_JSON_DEPTH} levels"
    if expected == depth or got == depth:
        # Both refuse; which of two faults is named first may differ, as 0.1.x
        # measured the depth before it parsed.
        assert expected is not None and got is not None, (expected, got)
        return
    assert got == expected


def _best_cpu(body: bytes) -> float:
    times = []
    for _ in range(3):
        started = time.process_time()
        try:
            check_json(body)
        except ProxyError:
            pass
        times.append(time.process_time() - started)
    return min(times)


def _repeat(unit: bytes, size: int, ending: bytes) -> bytes:
    count = max(1, (size - len(ending)) // (len(unit) + 1))
    return b"[" + b",".join([unit] * count) + ending


ENDINGS = {
    "valid": b"]",
    "spoiled at the end": b",]",
    # With more than MAX_JSON_DEPTH brackets before it: 0.1.x's depth scan
    # backtracked over this quadratically.
    "unclosed escaped string": b',"' + b'\\"' * 40_000,
}


@budget(12)
@given(
    unit=paths(max_depth=511).filter(lambda text: len(text.encode()) <= 16_384),
    ending=st.sampled_from(sorted(ENDINGS)),
)
def test_checking_costs_time_linear_in_the_size(unit, ending):
    unit_bytes = unit.encode()
    small = _repeat(unit_bytes, 128 << 10, ENDINGS[ending])
    large = _repeat(unit_bytes, 1 << 20, ENDINGS[ending])
    small_cost, large_cost = _best_cpu(small), _best_cpu(large)
    ratio = len(large) / len(small)
    event(f"{ending}, unit under {2 ** len(unit_bytes).bit_length()} bytes")
    # Linear: eight times the bytes, at most about eight times the time (a
    # factor of three for noise, plus a floor for timer resolution).
    assert large_cost <= 3 * ratio * small_cost + 0.02, (large_cost, small_cost, unit[:200])
    # And never more than a few microseconds a byte, whatever the shape.
    assert large_cost < 3.0, (large_cost, unit[:200])


# Found by hand: a descent that began just after a slice's end kept the state
# of the bracket before it, and took "[0,]" for a finished array.
EDGES = (
    [b"[" * k + b'{"a":[0,]}' + b"]" * k for k in range(6)]
    + [b" " * k + b"[[0,]]" for k in range(8)]
    + [b"[" + b" " * k + b"[1, 2,]]" for k in range(8)]
    + [b'{"a": [1, 2], "b": {"c": [3, {"d": 4}]}, "e": "\\u00e9"}']
)


@pytest.mark.parametrize("slice_size", range(1, 12))
def test_every_slice_boundary_keeps_the_verdict(slices, slice_size):
    slices(slice_size)
    for body in EDGES:
        assert _verdict(body) == _oracle(body), body
