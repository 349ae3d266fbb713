"""What a token or a character costs on the providers that are not fal.

Anthropic and OpenAI publish per-model prices per million input and output
tokens but no API for them, so a small table ships here and ``Prices``
overrides or extends it; ElevenLabs is charged per character sent. The
table is a starting point dated with the package, not a promise: set your
own with ``Prices(tokens={...})`` for the models you allow. A model is
priced by the longest table entry its name starts with, so dated snapshot
names (``claude-sonnet-4-5-20250929``) find their family.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .fal_prices import as_price

__all__ = ["DEFAULT_TOKEN_PRICES", "ELEVENLABS_USD_PER_CHARACTER", "Prices", "TokenPrices"]

logger = logging.getLogger("flask_fal_proxy.usage")

# USD per million tokens: (input, output).
DEFAULT_TOKEN_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5": (1.25, 10.0),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4o": (2.5, 10.0),
    "o4-mini": (1.1, 4.4),
    "o3-mini": (1.1, 4.4),
    "o3": (2.0, 8.0),
}
# ElevenLabs' overage rate on its paid plans, per character of text.
ELEVENLABS_USD_PER_CHARACTER = 0.0003
# Anthropic's cache writes cost 1.25x the input price, cache reads 0.1x.
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1


def _check_pair(model: str, value: Any) -> tuple[float, float]:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or min(value) < 0
    ):
        raise ValueError(
            f"token price for {model!r} must be (input, output) USD per million tokens"
        )
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class Prices:
    """Price overrides: fal endpoints, token models, ElevenLabs characters.

    ``fal`` maps an endpoint id to USD per fal billable unit, or to
    ``(usd, unit)`` where unit is ``image``, ``megapixel`` or ``second``
    (the unit decides how the estimate reads the input). ``tokens`` maps a
    model name (prefix) to ``(input, output)`` USD per million tokens, over
    :data:`DEFAULT_TOKEN_PRICES`.
    """

    fal: Mapping[str, Any] = field(default_factory=dict)
    tokens: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    elevenlabs_per_character: float = ELEVENLABS_USD_PER_CHARACTER

    def __post_init__(self) -> None:
        object.__setattr__(self, "fal", {e: as_price(e, v) for e, v in dict(self.fal).items()})
        object.__setattr__(
            self, "tokens", {m: _check_pair(m, v) for m, v in dict(self.tokens).items()}
        )
        per = self.elevenlabs_per_character
        if isinstance(per, bool) or not isinstance(per, (int, float)) or per < 0:
            raise ValueError("elevenlabs_per_character must be a non-negative number")

    @classmethod
    def of(cls, value: Prices | Mapping[str, Any] | None) -> Prices:
        """``prices=`` as given: ``None``, a ``Prices``, or a mapping of fal overrides."""
        if value is None:
            return cls()
        if isinstance(value, Prices):
            return value
        if isinstance(value, Mapping):
            return cls(fal=value)
        raise ValueError("prices must be a Prices, a mapping of fal endpoint prices, or None")


class TokenPrices:
    """(input, output) USD per token for a model name; None for an unknown model."""

    def __init__(self, overrides: Mapping[str, tuple[float, float]]) -> None:
        table = {**DEFAULT_TOKEN_PRICES, **overrides}
        self._prefixes = sorted(table.items(), key=lambda item: -len(item[0]))
        self._cache: dict[str, tuple[float, float] | None] = {}
        self._lock = threading.Lock()

    def per_token(self, model: str) -> tuple[float, float] | None:
        cached = self._cache.get(model, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        found = next(
            ((i / 1e6, o / 1e6) for prefix, (i, o) in self._prefixes if model.startswith(prefix)),
            None,
        )
        with self._lock:
            # Model names come from clients: remember a bounded number of them.
            if len(self._cache) < 1000:
                self._cache[model] = found
                if found is None:
                    logger.warning("model %s has no known token price: counted as $0", model[:100])
        return found
