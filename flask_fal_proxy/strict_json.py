"""Strict RFC 8259 JSON, checked in linear time without building the value.

Python's parser accepts more than the RFC (``NaN``, ``Infinity``, UTF-16 and
UTF-32, a byte order mark) and fails with a ``RecursionError`` on deep
nesting, and the bodies the proxy only relays need no values at all; so the
check walks the bytes once with a stack of open brackets (at most
``MAX_JSON_DEPTH`` bytes). Compiled expressions consume the bulk in C: every
value nested at most a few levels, runs of sibling values, and whole runs of
opening or closing levels at once. Python steps only where those stop (a
deeper container, or an error, which it then reports at the same place and
in the same words as the json module). Time is linear in the body's size and
memory does not grow with it.

No expression is given more than a slice (64 KiB) at a time, so no call can
backtrack far, and between slices the check pauses once it has run for ten
milliseconds: under gevent one large body never holds up the worker's other
streams for long. The pause is a millisecond's sleep, not ``sleep(0)``:
gevent's ``sleep(0)`` runs the greenlets that are ready but polls no socket,
so a stream waiting for its next event would still wait. Without gevent,
threads are preempted anyway, and the pause costs that millisecond per ten
of checking.
"""

from __future__ import annotations

import codecs
import gc
import json
import math
import re
import time
from typing import Any

from . import errors

__all__ = ["MAX_INTEGER_DIGITS", "MAX_JSON_DEPTH", "check_json", "load_json"]

# Deep enough for any real model input (fal's deepest schemas nest a dozen
# levels), shallow enough that the parser never nears Python's recursion limit.
MAX_JSON_DEPTH = 512

# Values up to _REGEX_DEPTH deep are matched whole; up to _LEVEL_BATCH levels
# are opened in one step, or closed by one expression; no expression sees more
# than _SLICE bytes; a pause of _PAUSE follows every _PAUSE_EVERY of checking.
_REGEX_DEPTH = 4
_LEVEL_BATCH = 128
_SLICE = 64 * 1024
_PAUSE_EVERY = 0.01
_PAUSE = 0.001


def _possessive_supported() -> bool:
    try:
        re.compile("a*+")
    except re.error:  # Python 3.10: plain quantifiers; slices bound what they keep
        return False
    return True


_P = "+" if _possessive_supported() else ""
_WS = rf"[ \t\n\r]*{_P}"
_CHARS = rf'[^"\\\x00-\x1f]*{_P}'
# An escape at the very end of the text is left to the stepwise scan, which
# reports it the way json does.
_ESCAPE = r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}(?=[\x00-\xff]))'
_STRING_BODY = rf"{_CHARS}(?:{_ESCAPE}{_CHARS})*{_P}"
_STRING = rf'"{_STRING_BODY}"'
_FRACTION_EXPONENT = rf"(?:\.[0-9]+{_P})?(?:[eE][-+]?[0-9]+{_P})?"
# The same number, opening with a character class so that the engine skips
# the alternative at a glance; and it counts only once the byte after it is
# in view: an expression cut off at its slice's end must not take the digits
# before the cut for the whole number.
_NUMBER_IN_VALUE = (
    rf"[-0-9](?:(?<=-)(?:0|[1-9][0-9]*{_P})|(?<=[1-9])[0-9]*{_P}|(?<=0))"
    rf"{_FRACTION_EXPONENT}(?=[ \t\n\r,\]}}])"
)


def _value(depth: int) -> str:
    """A value nested at most ``depth`` levels deep."""
    scalars = rf"{_STRING}|{_NUMBER_IN_VALUE}"
    literals = "true|false|null"
    if depth == 0:
        return rf"(?:{scalars}|{literals})"
    inner = _value(depth - 1)
    array = rf"\[{_WS}(?:{inner}{_WS}(?:,{_WS}(?!\])|(?=\])))*{_P}\]"
    members = rf"{_STRING}{_WS}:{_WS}{inner}{_WS}(?:,{_WS}(?!\}})|(?=\}}))"
    return rf"(?:{scalars}|{array}|\{{{_WS}(?:{members})*{_P}\}}|{literals})"


def _compile(pattern: str) -> re.Pattern[bytes]:
    return re.compile(pattern.encode("ascii"))


class _Patterns:
    """The expressions for one nesting allowance (values at most ``depth`` deep)."""

    def __init__(self, depth: int) -> None:
        value = _value(depth)
        self.array_sibling = rf"{_WS},{_WS}{value}"
        self.member = rf"{_STRING}{_WS}:{_WS}{value}"
        self.value = _compile(value)
        self.array_siblings = _compile(rf"(?:{self.array_sibling})*{_P}")
        self.object_siblings = _compile(rf"(?:{_WS},{_WS}{self.member})*{_P}")
        # Going up: the siblings after the deeper child, then the closing
        # bracket, captured for findall.
        up = (
            rf"(?:(?:{self.array_sibling})*{_P}{_WS}(?=\])"
            rf"|(?:{_WS},{_WS}{self.member})*{_P}{_WS}(?=\}}))([\]}}])"
        )
        self.up = _compile(rf"(?:{up}){{1,{_LEVEL_BATCH}}}{_P}")
        self.up_kinds = _compile(up)

    def down(self) -> re.Pattern[bytes]:
        """One level down: an opening bracket, the siblings before the deeper
        child, and for an object the deeper child's key."""
        return _compile(
            rf"\[{_WS}(?:(?=[\[{{])|(?:{self.value.pattern.decode()}{_WS},{_WS})+{_P})"
            rf"|\{{{_WS}(?:{self.member}{_WS},{_WS})*{_P}{_STRING}{_WS}:{_WS}"
        )


_PATTERNS = [_Patterns(depth) for depth in range(_REGEX_DEPTH + 1)]
# Per stack depth: the expressions whose values cannot pass MAX_JSON_DEPTH,
# and how to go down from there: the expression for one level, and how many
# levels at most, so that the siblings passed on the way (values at most
# _REGEX_DEPTH deep, or scalars only near the limit) cannot pass it either.
_AT_DEPTH = [_PATTERNS[min(_REGEX_DEPTH, MAX_JSON_DEPTH - d)] for d in range(MAX_JSON_DEPTH + 1)]
_DOWN = {depth: _PATTERNS[depth].down() for depth in (0, _REGEX_DEPTH)}
_DESCENT_AT_DEPTH = [
    next(
        (
            (_DOWN[values], levels)
            for values, levels in [(_REGEX_DEPTH, _LEVEL_BATCH), (_REGEX_DEPTH, 32)]
            + [(0, levels) for levels in (32, 8, 2, 1)]
            if d + values + levels <= MAX_JSON_DEPTH
        ),
        None,
    )
    for d in range(MAX_JSON_DEPTH + 1)
]
_WHITESPACE = _compile(_WS)
_OPENER_RUN = re.compile(rb"\[*")
_CLOSER_RUN = re.compile(rb"[\]}]*")
_STRING_RUN = _compile(_STRING_BODY)
_NUMBER_START = re.compile(rb"-?[0-9]")
_DIGITS = re.compile(rb"[0-9]*")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_WHITESPACE_BYTES = frozenset(b" \t\n\r")
_SIMPLE_ESCAPES = frozenset(b'"\\/bfnrt')
_CLOSING = bytes.maketrans(b"[{", b"]}")
_NOT_CONTINUATION = bytes(range(0x80)) + bytes(range(0xC0, 0x100))
_OPEN_ARRAY, _OPEN_OBJECT, _CLOSE_ARRAY, _CLOSE_OBJECT = b"[{]}"
_QUOTE, _BACKSLASH, _COMMA, _COLON = b'"\\,:'

_VALUE, _FIRST, _KEY, _FIRST_KEY, _AFTER = range(5)


def _trailing_comma_has_own_message() -> bool:
    try:
        json.loads("[1,]")
    except json.JSONDecodeError as exc:
        return exc.msg.startswith("Illegal")
    return False


# Python 3.13 names a trailing comma where 3.10-3.12 say "Expecting value";
# the check words it as the running Python's json module would.
_TRAILING_COMMA_MESSAGE = _trailing_comma_has_own_message()


class _Malformed(Exception):
    def __init__(self, message: str, pos: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


class _Pacer:
    def __init__(self) -> None:
        self.since = time.perf_counter()

    def pause_if_due(self) -> None:
        if time.perf_counter() - self.since >= _PAUSE_EVERY:
            # Looked up at each call, so that gevent's monkey-patching applies.
            time.sleep(_PAUSE)
            self.since = time.perf_counter()


def _run_end(run: re.Pattern[bytes], b: bytes, pos: int, pacer: _Pacer | None) -> int:
    """The end of ``run`` (an expression that always matches) from ``pos``, a slice at a time."""
    while True:
        end = pos + _SLICE
        pos = run.match(b, pos, end).end()  # type: ignore[union-attr]
        if pos < end or pos >= len(b):
            return pos
        if pacer is not None:
            pacer.pause_if_due()


def _skip_whitespace(b: bytes, pos: int, pacer: _Pacer | None = None) -> int:
    return _run_end(_WHITESPACE, b, pos, pacer)


def _string_end(b: bytes, start: int, pacer: _Pacer) -> int:
    """The index after the string that opens at ``start``, or the json module's complaint."""
    n = len(b)
    i = start + 1
    while True:
        i = _run_end(_STRING_RUN, b, i, pacer)
        if i >= n:
            raise _Malformed("Unterminated string starting at", start)
        c = b[i]
        if c == _QUOTE:
            return i + 1
        if c != _BACKSLASH:
            raise _Malformed("Invalid control character at", i)
        if i + 1 >= n:
            raise _Malformed("Unterminated string starting at", start)
        escaped = b[i + 1]
        if escaped in _SIMPLE_ESCAPES:
            i += 2
        elif escaped == ord("u"):
            if i + 6 >= n or not _HEX.issuperset(b[i + 2 : i + 6]):
                raise _Malformed("Invalid \\uXXXX escape", i + 1)
            i += 6
        else:
            raise _Malformed("Invalid \\escape", i)


def _scalar_end(b: bytes, pos: int, pacer: _Pacer) -> int:
    if pos < len(b) and b[pos] == _QUOTE:
        return _string_end(b, pos, pacer)
    for literal in (b"null", b"true", b"false"):
        if b.startswith(literal, pos):
            return pos + len(literal)
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        if b.startswith(constant, pos):
            raise _Malformed(f"{constant.decode()} is not a JSON value (RFC 8259)")
    return _number_end(b, pos, pacer)


def _number_end(b: bytes, pos: int, pacer: _Pacer) -> int:
    """The end of the number at ``pos``, read as json reads it, its digits a slice at a time."""
    start = _NUMBER_START.match(b, pos)
    if start is None:
        raise _Malformed("Expecting value", pos)
    i = start.end()
    if b[i - 1] != ord("0"):
        i = _run_end(_DIGITS, b, i, pacer)
    if b[i : i + 1] == b"." and b[i + 1 : i + 2].isdigit():
        i = _run_end(_DIGITS, b, i + 1, pacer)
    if b[i : i + 1] in (b"e", b"E"):
        j = i + 2 if b[i + 1 : i + 2] in (b"+", b"-") else i + 1
        if b[j : j + 1].isdigit():
            i = _run_end(_DIGITS, b, j, pacer)
    return i


def _scan(b: bytes) -> None:
    """Walk ``b`` as one JSON text; raise ``_Malformed`` where json would fail.

    The hottest steps stay in this loop; the others return where they end.
    """
    n = len(b)
    stack = bytearray()
    state = _VALUE
    pacer = _Pacer()
    pos = _skip_whitespace(b, 0, pacer)
    next_pause = pos + _SLICE
    # Where the siblings' expression has just failed on a value: trying the
    # same expression on it again would only fail again.
    failed_value = -1
    while True:
        if pos >= next_pause:
            pacer.pause_if_due()
            next_pause = pos + _SLICE
        if state == _AFTER:
            if not stack:
                _expect_end(b, pos, pacer)
                return
            pos, state = _after_value(b, pos, stack, pacer)
            if state != _AFTER:
                failed_value = pos
            continue
        limit = pos + _SLICE
        if pos < n and b[pos] in _WHITESPACE_BYTES:
            pos = _skip_whitespace(b, pos, pacer)
        if state == _KEY or state == _FIRST_KEY:
            pos, state, failed_value = _at_key(b, pos, state, stack, failed_value, pacer)
            continue
        if pos != failed_value:
            value = _AT_DEPTH[len(stack)].value.match(b, pos, limit)
            if value is not None:
                pos = value.end()
                state = _AFTER
                continue
        c = b[pos] if pos < n else -1
        if c == _OPEN_ARRAY or c == _OPEN_OBJECT:
            pos, state = _open_levels(b, pos, limit, c, stack)
        elif state == _FIRST and c == _CLOSE_ARRAY:
            stack.pop()
            pos += 1
            state = _AFTER
        else:
            pos = _at_scalar(b, pos, stack, pacer)
            state = _AFTER


def _expect_end(b: bytes, pos: int, pacer: _Pacer) -> None:
    """After the top-level value: only whitespace."""
    pos = _skip_whitespace(b, pos, pacer)
    if pos != len(b):
        raise _Malformed("Extra data", pos)


def _after_value(b: bytes, pos: int, stack: bytearray, pacer: _Pacer) -> tuple[int, int]:
    """After a value inside a container: its siblings, then a comma or closing brackets."""
    n = len(b)
    limit = pos + _SLICE
    patterns = _AT_DEPTH[len(stack)]
    top = stack[-1]
    if top == _OPEN_ARRAY:
        pos = patterns.array_siblings.match(b, pos, limit).end()  # type: ignore[union-attr]
        closer = _CLOSE_ARRAY
    else:
        pos = patterns.object_siblings.match(b, pos, limit).end()  # type: ignore[union-attr]
        closer = _CLOSE_OBJECT
    if pos < n and b[pos] in _WHITESPACE_BYTES:
        pos = _skip_whitespace(b, pos, pacer)
    c = b[pos] if pos < n else -1
    if c == closer:
        return _close_levels(b, pos, limit, stack, patterns), _AFTER
    if c != _COMMA:
        raise _Malformed("Expecting ',' delimiter", pos)
    comma = pos
    pos = _skip_whitespace(b, pos + 1, pacer)
    if _TRAILING_COMMA_MESSAGE and pos < n and b[pos] == closer:
        kind = "array" if top == _OPEN_ARRAY else "object"
        raise _Malformed(f"Illegal trailing comma before end of {kind}", comma)
    return pos, _VALUE if top == _OPEN_ARRAY else _KEY


def _close_levels(b: bytes, pos: int, limit: int, stack: bytearray, patterns: _Patterns) -> int:
    """Close the level at ``pos``, and as many above it as one expression can."""
    depth = len(stack)
    run = _CLOSER_RUN.match(b, pos, pos + _SLICE).end() - pos  # type: ignore[union-attr]
    if run > 1:
        # A run of bare closing brackets: compare it with the stack.
        count = min(run, depth)
        if stack[-count:][::-1].translate(_CLOSING) == b[pos : pos + count]:
            del stack[-count:]
            return pos + count
    up = patterns.up.match(b, pos, limit)
    closers = b"".join(patterns.up_kinds.findall(b, pos, up.end())) if up else b""
    count = len(closers)
    if count and stack[-count:][::-1].translate(_CLOSING) == closers:
        del stack[-count:]
        return up.end()  # type: ignore[union-attr]
    # A closing bracket of the wrong kind further up (or one past the slice):
    # close this level alone, step by step.
    stack.pop()
    return pos + 1


def _at_key(
    b: bytes, pos: int, state: int, stack: bytearray, failed_value: int, pacer: _Pacer
) -> tuple[int, int, int]:
    """A member's key and its colon, or the end of an empty object.

    A member the siblings' expression failed on has its value failed too.
    """
    if state == _FIRST_KEY and pos < len(b) and b[pos] == _CLOSE_OBJECT:
        stack.pop()
        return pos + 1, _AFTER, failed_value
    if pos >= len(b) or b[pos] != _QUOTE:
        raise _Malformed("Expecting property name enclosed in double quotes", pos)
    key = pos
    pos = _skip_whitespace(b, _string_end(b, pos, pacer), pacer)
    if pos >= len(b) or b[pos] != _COLON:
        raise _Malformed("Expecting ':' delimiter", pos)
    pos = _skip_whitespace(b, pos + 1, pacer)
    return pos, _VALUE, pos if failed_value == key else failed_value


def _at_scalar(b: bytes, pos: int, stack: bytearray, pacer: _Pacer) -> int:
    """The end of the scalar due at ``pos`` (where no container opens)."""
    c = b[pos] if pos < len(b) else -1
    if c == _CLOSE_ARRAY and _TRAILING_COMMA_MESSAGE and stack[-1:] == b"[":
        # A descent ended after a sibling and its comma.
        comma = pos - 1
        while b[comma] in _WHITESPACE_BYTES:
            comma -= 1
        raise _Malformed("Illegal trailing comma before end of array", comma)
    return _scalar_end(b, pos, pacer)


def _open_levels(b: bytes, pos: int, limit: int, c: int, stack: bytearray) -> tuple[int, int]:
    """Open the container at ``pos``, and as many levels below it as can be seen at once."""
    depth = len(stack)
    if c == _OPEN_ARRAY:
        run = _OPENER_RUN.match(b, pos, pos + _SLICE).end() - pos  # type: ignore[union-attr]
        if run > 1:
            if depth + run > MAX_JSON_DEPTH:
                raise _Malformed(f"it is nested deeper than {MAX_JSON_DEPTH} levels")
            stack += b[pos : pos + run]
            return pos + run, _FIRST
    descent = _DESCENT_AT_DEPTH[depth]
    if descent is not None:
        level, levels = descent
        start = pos
        for _ in range(levels):
            down = level.match(b, pos, limit)
            if down is None:
                break
            stack.append(b[pos])
            pos = down.end()
        if pos != start:
            return pos, _VALUE
    if depth >= MAX_JSON_DEPTH:
        raise _Malformed(f"it is nested deeper than {MAX_JSON_DEPTH} levels")
    stack.append(c)
    return pos + 1, _FIRST if c == _OPEN_ARRAY else _FIRST_KEY


def _check_utf8(body: bytes) -> None:
    if body.isascii():
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    pacer = _Pacer()
    step = 16 * _SLICE
    for start in range(0, len(body), step):
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(body[start : start + step], final=start + step >= len(body))
        except UnicodeDecodeError as exc:
            raise errors.invalid_json(
                f"it is not UTF-8 (byte {start - pending + exc.start})"
            ) from None
        pacer.pause_if_due()


def _line_and_column(b: bytes, pos: int) -> tuple[int, int]:
    """Where ``pos`` (a byte offset) is, counted in characters as json counts them."""
    line_start = b.rfind(b"\n", 0, pos) + 1
    continuation = 0
    if not b.isascii():
        for start in range(line_start, pos, _SLICE):
            window = b[start : min(pos, start + _SLICE)]
            continuation += len(window.translate(None, _NOT_CONTINUATION))
    return b.count(b"\n", 0, pos) + 1, pos - line_start - continuation + 1


def check_json(body: bytes) -> None:
    """Raise a 400 ``invalid_json`` unless ``body`` is one RFC 8259 JSON text.

    Python's parser accepts more than the RFC (``NaN``, ``Infinity``, UTF-16
    and UTF-32, a byte order mark) and fails with a ``RecursionError`` on deep
    nesting; each of those would either reach the provider as a call it
    refuses after the fact or become a 500 here. The body is only checked,
    never parsed into values: time is linear in its size, memory does not
    grow with it, and a 100,000-digit integer costs no more than its bytes.
    A refusal says what json would have said, at the same line and column.
    """
    _check_utf8(body)
    if body.startswith(b"\xef\xbb\xbf"):
        raise errors.invalid_json("it starts with a byte order mark")
    try:
        _scan(body)
    except _Malformed as exc:
        if exc.pos is None:
            raise errors.invalid_json(exc.message) from None
        line, column = _line_and_column(body, exc.pos)
        raise errors.invalid_json(f"{exc.message.lower()} at line {line} column {column}") from None


class _NonStandardConstant(ValueError):
    pass


def _refuse_constant(name: str) -> None:
    raise _NonStandardConstant(name)


# Values a face reads for itself (the OpenAI facade) are converted, unlike
# the bodies that are only relayed: bound what conversion may cost or produce.
MAX_INTEGER_DIGITS = 1000
# A float overflows a double only with 309 digits or more, or an exponent of
# three digits; an integer is too long only past MAX_INTEGER_DIGITS.
_MAYBE_OUT_OF_RANGE = re.compile(rb"[0-9]{300}|[eE][-+]?[0-9]{3}")


def load_json(body: bytes) -> Any:
    """``body`` checked as by :func:`check_json`, then parsed into Python values.

    Integers longer than ``MAX_INTEGER_DIGITS`` and numbers beyond a double's
    range are valid JSON but cannot be read faithfully (Python refuses
    integers over 4,300 digits, and ``1e400`` would become ``inf``, which no
    JSON encoder may send on): they are a 400 ``number_out_of_range``.
    """
    # Out-of-range numbers are noted and reported once the whole text has
    # parsed, so a syntax error anywhere still answers invalid_json first.
    out_of_range: list[str] = []

    def read_int(digits: str) -> int:
        if len(digits) > MAX_INTEGER_DIGITS:
            out_of_range.append(f"an integer has more than {MAX_INTEGER_DIGITS} digits")
            return 0
        return int(digits)

    def read_float(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):
            out_of_range.append(f"{number[:20]} does not fit a double")
        return value

    check_json(body)
    # Only a body with a long run of digits or a three-digit exponent can hold
    # a number out of range; the others are parsed without a Python call per
    # number (half a million of them in a MiB cost about 100 ms).
    hooks: dict[str, Any] = {}
    if _MAYBE_OUT_OF_RANGE.search(body):
        hooks = {"parse_int": read_int, "parse_float": read_float}
    # The parse makes only acyclic containers, so the cycle collector's passes
    # over them are wasted: without them the costliest 1 MiB body (nested
    # arrays) parses in 30-40 ms instead of 100-160, a stretch in which no
    # other greenlet of the worker runs.
    collecting = gc.isenabled()
    gc.disable()
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant, **hooks)
    except (_NonStandardConstant, ValueError, RecursionError):
        # check_json has accepted the text, so json cannot refuse it.
        raise errors.invalid_json() from None
    finally:
        if collecting:
            gc.enable()
    if out_of_range:
        raise errors.number_out_of_range(out_of_range[0])
    return value
