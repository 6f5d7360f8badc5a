"""Polling with jitter and exponential back-off on errors.

A fleet that polls on a fixed period synchronises (every device restarted by the same power
outage checks in at the same instant); a fleet that retries at once after an error turns a
server hiccup into a stampede. So: polls are spread uniformly over ±``spread`` of the period,
and retries after errors wait ``min(cap, base * 2**n)`` scaled by a random factor in [0.5, 1]
("equal jitter": never 0, never more than the cap).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff", "jittered"]


def jittered(interval: float, spread: float = 0.2, rng: random.Random | None = None) -> float:
    """``interval`` scaled by a random factor in [1 - spread, 1 + spread]."""
    r = rng or random
    return max(0.0, interval * (1.0 + spread * (2.0 * r.random() - 1.0)))


@dataclass
class Backoff:
    base: float = 1.0
    cap: float = 300.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next(self) -> float:
        """The delay before the next attempt after one more failure."""
        delay = min(self.cap, self.base * (2.0 ** min(self.failures, 32)))
        self.failures += 1
        return delay * (0.5 + 0.5 * self.rng.random())

    def reset(self) -> None:
        self.failures = 0
