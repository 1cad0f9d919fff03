"""Keeps one chat platform connected, on its own: a platform that is down (unreachable at
start, a dropped connection, a bad gateway) is retried with backoff, and never takes the
other platforms or the job runner with it.

The supervisor builds a fresh adapter for every attempt (a closed discord.py client
cannot be started again) and reports its state as metrics, which `tsuzuki status` reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from bot.domain import ChannelRef, ChatMessage, Notice
from bot.ports import PlatformAdapter

log = logging.getLogger(__name__)

# How long a notice waits for its platform to be connected before it is dropped.
NOTICE_WAIT_S = 120.0


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait before the n-th retry: first, doubled each time, up to `most`."""

    first: float = 1.0
    most: float = 300.0
    # A connection that held this long was healthy: the next failure starts over.
    healthy_after: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.most, self.first * 2 ** max(0, failures - 1)))


class PlatformMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "tsuzuki_platform_up",
            "1 while the platform is connected",
            ["platform"],
            registry=registry,
        )
        self.failures = Counter(
            "tsuzuki_platform_failures_total",
            "Times the platform's connection failed or could not be made",
            ["platform"],
            registry=registry,
        )


class Supervisor:
    def __init__(
        self,
        name: str,
        build: Callable[[], PlatformAdapter],
        metrics: PlatformMetrics,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.build = build
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.current: PlatformAdapter | None = None
        self.state = "starting"  # starting | up | down (retrying) | stopped
        self.failures = 0  # in a row
        self.last_error = ""
        self._up = asyncio.Event()
        metrics.up.labels(name).set(0)

    async def run(self) -> None:
        """Connects, and reconnects after each failure, until cancelled."""
        try:
            while True:
                adapter = self.current = self.build()
                started = time.monotonic()
                watch = asyncio.create_task(self._mark_up_when_ready(adapter))
                try:
                    await adapter.run()
                    error = "the connection closed"
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # any failure of one platform stays with it
                    error = f"{type(e).__name__}: {e}"
                finally:
                    watch.cancel()
                    self._set_down()
                    await self._close_quietly(adapter)
                if time.monotonic() - started >= self.backoff.healthy_after:
                    self.failures = 0
                self.failures += 1
                self.last_error = error
                self.metrics.failures.labels(self.name).inc()
                delay = self.backoff.delay(self.failures)
                log.warning("%s is down (%s); retrying in %.0fs", self.name, error, delay)
                self.state = "down"
                await asyncio.sleep(delay)
        finally:
            self.state = "stopped"
            self._set_down()

    async def _mark_up_when_ready(self, adapter: PlatformAdapter) -> None:
        await adapter.ready.wait()
        self.state = "up"
        self.metrics.up.labels(self.name).set(1)
        self._up.set()
        log.info("%s is connected", self.name)

    def _set_down(self) -> None:
        self.metrics.up.labels(self.name).set(0)
        self._up.clear()

    @staticmethod
    async def _close_quietly(adapter: PlatformAdapter) -> None:
        try:
            await adapter.close()
        except Exception:
            log.debug("closing a failed adapter failed too", exc_info=True)

    async def fetch_history(
        self, ref: ChannelRef, before: str | None, limit: int
    ) -> list[ChatMessage]:
        """The platform's history, through whichever connection is up (backfill waits
        for the platform to come back)."""
        await self._up.wait()
        assert self.current is not None
        return await self.current.fetch_history(ref, before, limit)

    async def post_notice(self, notice: Notice) -> None:
        """Delivers a notice through the connection that is up; a platform down for
        longer than NOTICE_WAIT_S loses it (the version answers all the same)."""
        try:
            await asyncio.wait_for(self._up.wait(), NOTICE_WAIT_S)
        except TimeoutError:
            log.warning("%s: down; a notice for %s was dropped", self.name, notice.channel)
            return
        assert self.current is not None
        await self.current.post_notice(notice)
