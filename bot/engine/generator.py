"""Generation on a device: the TextGenerator port on this process's device worker.

`DeviceServer` queues a request, its model already resolved, on a device worker, where
a serving session (bot/engine/session.py) batches it continuously with whatever else
is running: one batch per base model, each row with its channel's adapter, settings
and seed. A Ray Serve replica (bot/engine/ray_serving.py) runs the same server.

`LocalGenerator` resolves each request's model on the event loop (`generate_current`,
shared with the Ray engine), then serves it here.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.device import Priority
from bot.domain import GenerationRequest, GenerationResult
from bot.engine.live import LiveCounts
from bot.engine.resolver import ModelResolver
from bot.engine.session import Item, Session
from bot.engine.worker import DeviceWorker, Feed
from bot.generation.model_cache import ModelCache
from bot.generation.source import ModelSource
from bot.generation.verbatim import GuardLimits
from bot.ports import TextListener

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 4 * 2**30

# Serves one request on a resolved model with a fixed seed.
ServeFn = Callable[
    [ModelSource, GenerationRequest, int, TextListener | None], Awaitable[GenerationResult]
]


async def generate_current(
    resolver: ModelResolver,
    request: GenerationRequest,
    on_text: TextListener | None,
    serve: ServeFn,
) -> GenerationResult:
    """Serves the request on the model that answers for its channel now, its seed drawn
    here when it has none (so a retry reads the same)."""
    source = await resolver.resolve(request.channel)
    seed = request.settings.seed
    if seed is None:
        seed = secrets.randbelow(2**32)
    try:
        return await serve(source, request, seed, on_text)
    except Exception:
        if _on_disk(source):
            raise
        # Its model was withdrawn while the request waited (a member opted out: the
        # files that learnt from their messages are deleted): once more, with the
        # model that answers now.
        source = await resolver.resolve(request.channel)
        return await serve(source, request, seed, on_text)


class DeviceServer:
    """Serves resolved requests on one device worker, batched continuously."""

    def __init__(
        self,
        worker: DeviceWorker,
        cache: ModelCache,
        *,
        live: LiveCounts | None = None,
        stream_interval_s: float = 0.2,
    ) -> None:
        self.worker = worker
        self.cache = cache
        # The channels' live counts and leak-guard indexes (None: versions as trained,
        # no guard; benchmarks of the decoder alone).
        self.live = live
        # A streamed request hears its text at most this often.
        self.stream_interval_s = stream_interval_s

    async def serve(
        self,
        source: ModelSource,
        request: GenerationRequest,
        seed: int,
        on_text: TextListener | None,
    ) -> GenerationResult:
        loop = asyncio.get_running_loop()
        enqueued = time.perf_counter()
        live = None
        if self.live is not None:
            limits = GuardLimits(request.verbatim_whole, request.verbatim_run)
            live = await self.live.view(request.channel, source, limits)
        item = Item(source, request, seed, enqueued, on_text, loop, live)
        result: GenerationResult = await self.worker.submit(item, self._serve, Priority.INTERACTIVE)
        self.worker.metrics.latency.observe(time.perf_counter() - item.enqueued)
        return result

    # --- on the device thread ----------------------------------------------------------

    def _serve(self, feed: Feed) -> None:
        Session(self.cache, self.worker.metrics, self.worker.max_batch, self.stream_interval_s).run(
            feed
        )


class LocalGenerator:
    def __init__(
        self,
        resolver: ModelResolver,
        worker: DeviceWorker,
        cache: ModelCache | None = None,
        *,
        live: LiveCounts | None = None,
        stream_interval_s: float = 0.2,
    ) -> None:
        self.resolver = resolver
        self.worker = worker
        self.server = DeviceServer(
            worker,
            cache or ModelCache(DEFAULT_CACHE_BYTES),
            live=live,
            stream_interval_s=stream_interval_s,
        )

    @property
    def cache(self) -> ModelCache:
        return self.server.cache

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        return await generate_current(self.resolver, request, on_text, self.server.serve)


def _on_disk(source: ModelSource) -> bool:
    return Path(source.location).is_dir() and (source.base is None or Path(source.base).is_dir())
