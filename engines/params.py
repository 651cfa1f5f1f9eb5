"""Generation parameters, validated on the server whatever the sliders allowed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from errors import InvalidInput

# name: (lowest, highest, type)
LIMITS: dict[str, tuple[float, float, type]] = {
    "temperature": (0.0, 2.0, float),
    "top_p": (0.01, 1.0, float),
    "top_k": (0, 1000, int),
    "repetition_penalty": (1.0, 2.0, float),
    "max_new_tokens": (1, 1_000_000, int),
    "seed": (-1, 2**32 - 1, int),
}


@dataclass(frozen=True)
class GenerationParams:
    """Sampling controls shared by chat and completion. Greedy when temperature is 0; seed -1 picks one at random."""

    temperature: float = 0.2  # small instruct models answer best cool (SmolLM2's card suggests 0.2)
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.1
    max_new_tokens: int = 256
    seed: int = -1

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(name: str, value: Any, kind: type, low: float, high: float) -> float | int:
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer past float range (about 1e308) is past every limit too
        raise InvalidInput(f"{name} must be between {low:g} and {high:g}, got a number too large to use") from None
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{name} must be a finite number, got {value!r}")
    if kind is int:
        if number != int(number):
            raise InvalidInput(f"{name} must be a whole number, got {value!r}")
        return int(number)
    return number


def parse_params(max_new_tokens_limit: int, **values: Any) -> GenerationParams:
    """Build validated parameters from raw values (strings and numbers alike).

    Args:
        max_new_tokens_limit: the server's cap on `max_new_tokens`.
        **values: any subset of the `GenerationParams` fields; missing ones keep their defaults.

    Returns:
        The validated parameters.

    Raises:
        ValueError: naming the parameter, its allowed range and the value that arrived.
    """
    unknown = set(values) - set(LIMITS)
    if unknown:
        raise InvalidInput(f"unknown generation parameters {sorted(unknown)}; expected some of {sorted(LIMITS)}")
    clean: dict[str, float | int] = {}
    for name, raw in values.items():
        low, high, kind = LIMITS[name]
        if name == "max_new_tokens":
            high = max_new_tokens_limit
        value = _coerce(name, raw, kind, low, high)
        if not low <= value <= high:
            raise InvalidInput(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
        clean[name] = value
    return GenerationParams(**clean)
