"""Per-user and per-channel rate limits: one person cannot fill the device queue.

Token buckets: each key may burst up to `per_minute` requests and regains one every
60/per_minute seconds. Checked before a request is queued, so a refused request costs
nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute  # 0 turns the limit off
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str) -> bool:
        """Takes one request from `key`'s bucket; False when it is empty."""
        if self.per_minute <= 0:
            return True
        now = self.clock()
        bucket = self._buckets.setdefault(key, _Bucket(float(self.per_minute), now))
        refill = (now - bucket.updated) * self.per_minute / 60.0
        bucket.tokens = min(float(self.per_minute), bucket.tokens + refill)
        bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True
