from __future__ import annotations

from bot.core.ratelimit import RateLimiter


def test_bursts_up_to_the_limit_then_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    assert [limiter.allow("u") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("someone else")
    now[0] += 20.0  # one request's worth of refill (60 s / 3)
    assert limiter.allow("u") and not limiter.allow("u")


def test_zero_means_no_limit() -> None:
    limiter = RateLimiter(0)
    assert all(limiter.allow("u") for _ in range(1000))
