"""Retry delays: exponential backoff with jitter, as the contract fixes it.

delay = min(max, initial * multiplier^(attempt-1)), then ±10% jitter, never under 1 second.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reference_server.models import QueueSettings

JITTER = 0.10
FLOOR_SECONDS = 1.0

_random = random.SystemRandom()


def base_delay(attempt: int, settings: QueueSettings) -> float:
    """The delay before jitter after failed attempt number `attempt` (1-based)."""
    exponent = max(0, attempt - 1)
    try:
        raw = settings.initial_retry_delay_seconds * settings.backoff_multiplier**exponent
    except OverflowError:
        raw = float("inf")
    return min(settings.max_retry_delay_seconds, raw)


def delay_bounds(attempt: int, settings: QueueSettings) -> tuple[float, float]:
    """The smallest and largest delay `retry_delay` can return for this attempt."""
    base = base_delay(attempt, settings)
    return (
        max(FLOOR_SECONDS, base * (1 - JITTER)),
        max(FLOOR_SECONDS, base * (1 + JITTER)),
    )


def retry_delay(attempt: int, settings: QueueSettings, *, jitter: float | None = None) -> float:
    """Seconds to wait before the next attempt; `jitter` in [-1, 1] fixes the draw (tests)."""
    draw = _random.uniform(-1.0, 1.0) if jitter is None else max(-1.0, min(1.0, jitter))
    return max(FLOOR_SECONDS, base_delay(attempt, settings) * (1 + JITTER * draw))
