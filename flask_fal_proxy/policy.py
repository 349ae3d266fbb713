"""The glob dialect of every allow-list: fal URLs and endpoints, provider paths.

The glob dialect is the subset of picomatch (with ``dot: true``) that
``@fal-ai/server-proxy`` users write, so allow-lists move between the two
unchanged: ``*`` is a run of characters without ``/``; ``**`` as a whole
segment is any run of segments, and a trailing ``/**`` also matches the bare
prefix; ``?`` is one character but ``/``; ``\\?`` is a literal ``?``;
``[...]`` is a class (``[^...]`` negated); ``{a,b}`` are alternatives. As in picomatch, wildcards
never match a ``.`` or ``..`` segment. Negation (a leading ``!``) and
extglobs are rejected because in an allow-list they invert its meaning;
so are the corners where picomatch's behaviour is surprising (runs of three
stars, ``**`` glued to other characters, brace ranges). A differential test
checks the rest against picomatch itself.

Patterns are compiled to one regular expression per list, once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = ["compile_patterns"]

_SEGMENT = r"(?!\.{1,2}(?:/|$))[^/]*"
_GLOBSTAR = rf"{_SEGMENT}(?:/{_SEGMENT})*"
# A lone "*" may be empty mid-pattern ("a/*/b" matches "a//b") but not at the end.
_STAR_SEGMENT = r"(?!\.{1,2}(?:/|$))(?=.)[^/]*"


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0

    def fail(self, why: str) -> ValueError:
        return ValueError(f"invalid glob pattern {self.pattern!r}: {why}")

    def translate(self) -> str:
        if self.pattern.startswith("!"):
            raise self.fail("negation ('!') is not supported in an allow-list")
        body = self.sequence(top=True)
        if self.pos != len(self.pattern):
            raise self.fail(f"unexpected {self.pattern[self.pos]!r}")
        return body

    def sequence(self, top: bool) -> str:
        out: list[str] = []
        p = self.pattern
        while self.pos < len(p):
            c = p[self.pos]
            at_segment_start = self.pos == 0 or p[self.pos - 1] == "/"
            if not top and c in ",}":
                break
            if c == "\\":
                if self.pos + 1 >= len(p):
                    raise self.fail("trailing backslash")
                out.append(re.escape(p[self.pos + 1]))
                self.pos += 2
            elif c == "*":
                end = self.pos
                while end < len(p) and p[end] == "*":
                    end += 1
                if end < len(p) and p[end] == "(":
                    raise self.fail("extglobs are not supported")
                stars = end - self.pos
                whole_segment = at_segment_start and (end == len(p) or p[end] == "/")
                if stars > 2:
                    raise self.fail("use '*' or '**', not a longer run of stars")
                if stars == 2 and at_segment_start and not whole_segment:
                    raise self.fail("'**' must be a whole path segment")
                self.pos = end
                if stars == 2 and whole_segment:
                    out.append(self.globstar(out))
                elif whole_segment:
                    out.append(_STAR_SEGMENT)
                else:
                    out.append(r"[^/]*")
            elif c == "?":
                if self.pos + 1 < len(p) and p[self.pos + 1] == "(":
                    raise self.fail("extglobs are not supported")
                out.append(r"[^/]")
                self.pos += 1
            elif c in "+@!" and self.pos + 1 < len(p) and p[self.pos + 1] == "(":
                raise self.fail("extglobs are not supported")
            elif c == "[":
                out.append(self.bracket())
            elif c == "{":
                out.append(self.braces())
            else:
                out.append(re.escape(c))
                self.pos += 1
        return "".join(out)

    def globstar(self, out: list[str]) -> str:
        # "a/**" also matches "a"; "**/b" also matches "b"; "a/**/b" matches "a/b".
        at_end = self.pos == len(self.pattern)
        if out and out[-1] == "/":
            out.pop()
            if at_end:
                return f"(?:/{_GLOBSTAR})?"
            self.pos += 1
            return f"/(?:{_GLOBSTAR}/)?"
        if not at_end:
            self.pos += 1
            return f"(?:{_GLOBSTAR}/)?"
        return _GLOBSTAR

    def bracket(self) -> str:
        # As picomatch does: "[^...]" negates (never matching "/"), while
        # "[!...]" is a plain class that includes "!".
        p = self.pattern
        end = self.pos + 1
        if end < len(p) and p[end] == "^":
            end += 1
        if end < len(p) and p[end] == "]":
            end += 1
        while end < len(p) and p[end] != "]":
            end += 1
        if end >= len(p):
            self.pos += 1
            return re.escape("[")
        inner = p[self.pos + 1 : end]
        self.pos = end + 1
        negate = inner.startswith("^")
        if negate:
            inner = inner[1:]
        inner = inner.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
        return f"[^/{inner}]" if negate else f"[{inner}]"

    def braces(self) -> str:
        self.pos += 1
        start = self.pos
        options: list[str] = []
        while True:
            options.append(self.sequence(top=False))
            if self.pos >= len(self.pattern):
                raise self.fail("unclosed '{'")
            if self.pattern[self.pos] == "}":
                self.pos += 1
                break
            self.pos += 1
        if len(options) == 1:
            if ".." in self.pattern[start : self.pos - 1]:
                raise self.fail("brace ranges are not supported")
            return re.escape("{") + options[0] + re.escape("}")
        return "(?:" + "|".join(options) + ")"


def _translate(pattern: str) -> str:
    while pattern.startswith("./"):
        pattern = pattern[2:]
    regex = _Translator(pattern).translate()
    # picomatch lets a pattern ending in a wildcard also match a trailing slash.
    if pattern.endswith(("*", "]")) and not pattern.endswith("\\*"):
        regex += "/?"
    return regex


def compile_patterns(patterns: Sequence[str]) -> Callable[[str], bool]:
    """Compile globs into one predicate; raise ``ValueError`` on a bad glob."""
    if isinstance(patterns, str):
        raise ValueError("patterns must be a sequence of strings, not a string")
    parts = [_translate(p) for p in patterns]
    if not parts:
        return lambda value: False
    match = re.compile("(?:" + "|".join(parts) + r")\Z", re.DOTALL).match
    return lambda value: bool(value) and match(value) is not None
