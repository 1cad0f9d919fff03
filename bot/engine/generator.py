"""LocalGenerator: the TextGenerator port on this process's device worker.

Each request is resolved to its model on the event loop, then queued on the device
worker, where a serving session (bot/engine/session.py) batches it continuously with
whatever else is running: one batch per base model, each row with its channel's
adapter, settings and seed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path

from bot.device import Priority
from bot.domain import GenerationRequest, GenerationResult
from bot.engine.session import Item, Session
from bot.engine.worker import DeviceWorker, Feed
from bot.generation.model_cache import ModelCache
from bot.generation.resolver import ModelResolver, ModelSource
from bot.ports import TextListener

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 4 * 2**30


class LocalGenerator:
    def __init__(
        self,
        resolver: ModelResolver,
        worker: DeviceWorker,
        cache: ModelCache | None = None,
        *,
        stream_interval_s: float = 0.2,
    ) -> None:
        # A streamed request hears its text at most this often.
        self.stream_interval_s = stream_interval_s
        self.resolver = resolver
        self.worker = worker
        self.cache = cache or ModelCache(DEFAULT_CACHE_BYTES)

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        source = await self.resolver.resolve(request.channel)
        seed = request.settings.seed
        if seed is None:
            seed = secrets.randbelow(2**32)
        try:
            return await self._generate(source, request, seed, on_text)
        except Exception:
            if _on_disk(source):
                raise
            # Its model was withdrawn while the request waited (a member opted out: the
            # files that learnt from their messages are deleted): once more, with the
            # model that answers now.
            source = await self.resolver.resolve(request.channel)
            return await self._generate(source, request, seed, on_text)

    async def _generate(
        self,
        source: ModelSource,
        request: GenerationRequest,
        seed: int,
        on_text: TextListener | None,
    ) -> GenerationResult:
        loop = asyncio.get_running_loop()
        item = Item(source, request, seed, time.perf_counter(), on_text, loop)
        result: GenerationResult = await self.worker.submit(item, self._serve, Priority.INTERACTIVE)
        self.worker.metrics.latency.observe(time.perf_counter() - item.enqueued)
        return result

    # --- on the device thread ----------------------------------------------------------

    def _serve(self, feed: Feed) -> None:
        Session(self.cache, self.worker.metrics, self.worker.max_batch, self.stream_interval_s).run(
            feed
        )


def _on_disk(source: ModelSource) -> bool:
    return Path(source.location).is_dir() and (source.base is None or Path(source.base).is_dir())
