"""The one token bucket: a burst of `burst`, refilled at `per_minute`. The per-user and
per-channel request limits (bot/core/ratelimit.py) and the platforms' shared edit
budgets (adapters/streaming.py) are both made of it."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    def __init__(self, per_minute: float, burst: float, clock: Clock = time.monotonic) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be positive and burst at least 1")
        self.rate = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)  # starts full
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_s(self) -> float:
        """Seconds until a token is there (0: now)."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self) -> bool:
        """Takes one token; False (and nothing taken) when there is none."""
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
