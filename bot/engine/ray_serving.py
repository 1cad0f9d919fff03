"""Generation on a Ray cluster: a Ray Serve deployment whose replicas each run a device
worker and a serving session (bot/engine/generator.py's DeviceServer), so requests of
different channels are still batched together inside a replica.

A request names its model by a multiplexed model id (its resolved ModelSource, see
`model_id`): Ray Serve routes it to a replica that already holds that model, and each
replica keeps up to `ray_adapters_per_replica` of them ready (`@serve.multiplexed`).
The replica answers as a stream: ("text", so far) while the text grows, when the caller
listens, then ("result", GenerationResult).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from bot.config import Settings
from bot.domain import GenerationRequest
from bot.generation.source import ModelSource

# Every generation app's name starts so; the rest is its settings' fingerprint.
APP_PREFIX = "tsuzuki-"


@dataclass(frozen=True)
class ReplicaConfig:
    """What a generation replica is built with (from the bot's settings)."""

    threads: int  # torch threads (its CPU cores)
    max_pending: int  # requests waiting for its device before it refuses more
    max_batch: int  # rows decoded together at most
    batch_window_s: float
    cache_bytes: int  # memory for the models it keeps loaded
    dtype: str  # the bases' precision (Settings.serving_dtype)
    stream_interval_s: float

    @classmethod
    def of(cls, settings: Settings) -> ReplicaConfig:
        return cls(
            threads=max(1, round(settings.ray_replica_cpus)),
            max_pending=settings.max_pending_requests,
            max_batch=settings.max_batch,
            batch_window_s=settings.batch_window_ms / 1000,
            cache_bytes=settings.model_cache_mb * 2**20,
            dtype=settings.serving_dtype,
            stream_interval_s=settings.stream_interval_ms / 1000,
        )

    def app_name(self, settings: Settings) -> str:
        """Same settings, same app: a second bot process finds it running and leaves its
        replicas (and the models they hold) alone. Changed settings deploy a new app
        beside it, so processes of an older release keep theirs until they stop."""
        key = {
            **asdict(self),
            "replicas": settings.ray_replicas,
            "gpus": settings.ray_replica_gpus,
            "adapters": settings.ray_adapters_per_replica,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return APP_PREFIX + digest[:12]


def model_id(source: ModelSource) -> str:
    """The multiplexed model id of a resolved model: a new version is a new id."""
    return json.dumps([source.name, source.location, source.base])


def source_of(model: str) -> ModelSource:
    name, location, base = json.loads(model)
    return ModelSource(name, location, base)


def build_application(settings: Settings) -> Any:
    """The Ray Serve application for these settings (imports Ray: only in ray mode)."""
    from ray import serve

    config = ReplicaConfig.of(settings)
    adapters = settings.ray_adapters_per_replica

    class Generation:
        def __init__(self, config: ReplicaConfig) -> None:
            from bot.engine.generator import DeviceServer
            from bot.engine.worker import DeviceWorker
            from bot.generation.model_cache import ModelCache

            worker = DeviceWorker(
                config.threads,
                max_pending=config.max_pending,
                max_batch=config.max_batch,
                batch_window_s=config.batch_window_s,
            )
            cache = ModelCache(config.cache_bytes, dtype=config.dtype)
            self.server = DeviceServer(worker, cache, stream_interval_s=config.stream_interval_s)

        # Ray has no type hints: its decorator leaves the method untyped.
        @serve.multiplexed(max_num_models_per_replica=adapters)  # type: ignore[untyped-decorator]
        async def model(self, model: str) -> ModelSource:
            # Loaded now, on this replica's device, so the request that brought it and
            # the next ones routed here find it ready.
            source = source_of(model)
            await self.server.worker.run(self.server.cache.get, source)
            return source

        async def generate(
            self, request: GenerationRequest, seed: int, stream: bool
        ) -> AsyncIterator[tuple[str, Any]]:
            source = await self.model(serve.get_multiplexed_model_id())
            texts: asyncio.Queue[str] = asyncio.Queue()
            work = asyncio.ensure_future(
                self.server.serve(source, request, seed, texts.put_nowait if stream else None)
            )
            try:
                while not work.done():
                    heard = asyncio.ensure_future(texts.get())
                    await asyncio.wait({work, heard}, return_when=asyncio.FIRST_COMPLETED)
                    if heard.done():
                        yield ("text", heard.result())
                    else:
                        heard.cancel()
                yield ("result", work.result())
            finally:
                # The caller gave up (its request was cancelled): so does the device.
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work

        def check_health(self) -> None:
            if not self.server.worker.alive:
                raise RuntimeError("the device thread has stopped")

    deployment = serve.deployment(
        name="generation",
        num_replicas=settings.ray_replicas,
        ray_actor_options={
            "num_cpus": settings.ray_replica_cpus,
            "num_gpus": settings.ray_replica_gpus,
        },
        # Each replica's own device queue decides when it is busy (BusyError, as in the
        # local engine); Serve's limit sits above it so it never refuses first.
        max_ongoing_requests=config.max_pending + config.max_batch,
    )(Generation)
    return deployment.bind(config)
