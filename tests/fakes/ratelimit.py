"""The rate limits a test tells a fake to apply (`rate_limit_next` on the Discord and
Slack fakes), and the countdown they share with other one-shot rules (Slack's
`fail_next`): each rule applies to the next `count` requests it matches, oldest rule
first, and is dropped once spent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["NextRequests", "RateLimit", "RateLimiter"]

R = TypeVar("R")


@dataclass(frozen=True)
class RateLimit:
    """A 429 to answer. What `route` names is the fake's to say: Discord takes it as part
    of "METHOD /path" (with `method` to narrow it), Slack as a Web API method name.
    `retry_after` is in seconds; `is_global` is Discord's global limit."""

    route: str
    retry_after: float
    method: str | None = None
    is_global: bool = False


@dataclass
class _Pending(Generic[R]):
    rule: R
    remaining: int


class NextRequests(Generic[R]):
    """Rules that each apply to the next `count` requests they match."""

    def __init__(self) -> None:
        self._pending: list[_Pending[R]] = []

    def add(self, rule: R, count: int = 1) -> None:
        """`rule` applies to the next `count` requests it matches (to none if count < 1)."""
        self._pending.append(_Pending(rule, count))

    def take(self, matches: Callable[[R], bool]) -> R | None:
        """The oldest rule that `matches` this request and is not spent, counted down."""
        for pending in self._pending:
            if pending.remaining > 0 and matches(pending.rule):
                pending.remaining -= 1
                if pending.remaining == 0:
                    self._pending.remove(pending)
                return pending.rule
        return None


class RateLimiter(NextRequests[RateLimit]):
    """The 429s a fake has been told to answer."""

    def limit_next(
        self,
        route: str,
        retry_after: float,
        *,
        method: str | None = None,
        is_global: bool = False,
        count: int = 1,
    ) -> None:
        self.add(RateLimit(route, retry_after, method, is_global), count)
