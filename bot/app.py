"""The composition root: the one place that knows every part and wires them together.

`build_app(settings, **overrides)` builds the real thing by default; tests pass an
override only for a part that cannot run here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from bot import messages as M
from bot.commands import Commands
from bot.config import Settings, load_settings
from bot.core import Core
from bot.engine.models import ModelCache
from bot.engine.ratelimit import RateLimiter
from bot.engine.worker import DeviceWorker
from bot.generation.generator import LocalGenerator
from bot.generation.resolver import ModelResolver
from bot.generation.spec import ModelSpec
from bot.ingest import Ingest
from bot.jobs import JobRunner
from bot.ports import TextGenerator
from bot.training.service import TrainingService
from storage.db import Database, open_database
from storage.repositories import (
    SqlChannelStore,
    SqlJobStore,
    SqlMessageStore,
    SqlModelRegistry,
    SqlUserStore,
)


@dataclass
class App:
    settings: Settings
    db: Database
    channels: SqlChannelStore
    messages: SqlMessageStore
    registry: SqlModelRegistry
    worker: DeviceWorker
    resolver: ModelResolver
    generator: TextGenerator
    commands: Commands
    core: Core
    training: TrainingService
    jobs: SqlJobStore
    runner: JobRunner

    async def close(self) -> None:
        self.worker.close()
        await self.db.dispose()


async def build_app(settings: Settings | None = None, **overrides: Any) -> App:
    """Builds the app; `overrides` replace parts by name (db, worker, generator)."""
    settings = settings or load_settings()
    M.set_locale(settings.locale)
    base = ModelSpec.parse(settings.base_model)
    db: Database = overrides.get("db") or await open_database(settings.resolved_database_url)
    channels = SqlChannelStore(db)
    messages = SqlMessageStore(db)
    registry = SqlModelRegistry(db)
    users = SqlUserStore(db)
    jobs = SqlJobStore(db)
    worker: DeviceWorker = overrides.get("worker") or DeviceWorker(
        settings.effective_torch_threads,
        max_pending=settings.max_pending_requests,
        max_batch=settings.max_batch,
        batch_window_s=settings.batch_window_ms / 1000,
    )
    resolver = ModelResolver(base, settings.models_dir, registry, messages, worker)
    generator: TextGenerator = overrides.get("generator") or LocalGenerator(
        resolver, worker, ModelCache(settings.model_cache_mb * 2**20, int8=settings.serve_int8)
    )
    training = TrainingService(settings, channels, messages, registry, resolver, worker)
    runner = JobRunner(settings, jobs, training, channels, messages, registry, users)
    commands = Commands(
        channels=channels,
        messages=messages,
        registry=registry,
        generator=generator,
        defaults=settings.default_sampling(),
        base_model=str(base),
        max_prompt_chars=settings.max_prompt_chars,
        reply_context_messages=settings.reply_context_messages,
        user_limit=RateLimiter(settings.rate_per_user_per_minute),
        channel_limit=RateLimiter(settings.rate_per_channel_per_minute),
        users=users,
        jobs=jobs,
        on_job_queued=lambda: runner.wake(),
    )
    core = Core(commands, Ingest(messages, commands, users), messages)
    return App(
        settings,
        db,
        channels,
        messages,
        registry,
        worker,
        resolver,
        generator,
        commands,
        core,
        training,
        jobs,
        runner,
    )


@asynccontextmanager
async def running_app(settings: Settings | None = None, **overrides: Any) -> AsyncIterator[App]:
    """build_app, closed again (device thread, database connections) on the way out."""
    app = await build_app(settings, **overrides)
    try:
        yield app
    finally:
        await app.close()
