"""Per-user and per-channel rate limits: one person cannot fill the device queue.

A token bucket per key: each may burst up to `per_minute` requests and regains one
every 60/per_minute seconds. Checked before a request is queued, so a refused request
costs nothing.
"""

from __future__ import annotations

import time

from bot.token_bucket import Clock, TokenBucket


class RateLimiter:
    def __init__(self, per_minute: int, clock: Clock = time.monotonic) -> None:
        self.per_minute = per_minute  # 0 turns the limit off
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str) -> bool:
        """Takes one request from `key`'s bucket; False when it is empty."""
        if self.per_minute <= 0:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.per_minute, self.per_minute, self.clock)
        return bucket.take()
