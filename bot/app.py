"""The composition root: the one place that knows every part and wires them together.

`build_app(settings, **overrides)` builds the real thing by default: stores, engine,
job runner, metrics and the platforms whose tokens are set; tests pass an override only
for a part that cannot run here, and point the platforms at the fakes through settings.
`App.serve()` runs it all (`tsuzuki run`): the job runner, the nightly schedule, the
metrics endpoint, every platform under its own supervisor, or the console.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from bot import messages as M
from bot.config import Settings, load_settings
from bot.core.background import Background
from bot.core.commands import CommandConfig, CommandHooks, Commands
from bot.core.entry import Core
from bot.core.ingest import Ingest
from bot.core.jobs import JobResult, JobRunner
from bot.core.notices import Notifier
from bot.core.presentation import quality_fields, version_banner
from bot.core.ratelimit import RateLimiter
from bot.core.replies import ReplyLimits
from bot.core.supervisor import Backoff, PlatformMetrics, Supervisor
from bot.domain import ChannelRef
from bot.engine.data_dir import clean_temporary, migrate_channel_folders
from bot.engine.generator import LocalGenerator
from bot.engine.local import LocalEngine
from bot.engine.parts import SqlStores, live_counts, model_parts
from bot.engine.resolver import ModelResolver
from bot.engine.training_runs import TrainingService
from bot.engine.worker import DeviceWorker
from bot.errors import UserError
from bot.generation.model_cache import ModelCache
from bot.ports import Engine, PlatformAdapter, TextGenerator
from storage.db import Database, open_database
from storage.stores import SqlChannelStore, SqlJobStore, SqlMessageStore, SqlModelRegistry

# How long the platforms get to close their connections when the bot stops.
STOP_GRACE_S = 5.0


@dataclass
class App:
    settings: Settings
    db: Database
    channels: SqlChannelStore
    messages: SqlMessageStore
    registry: SqlModelRegistry
    # This process's device: the engine's, with TSUZUKI_ENGINE=local; with ray only
    # for the light work left here (building a channel's scratch base, `evaluate`).
    worker: DeviceWorker
    resolver: ModelResolver
    engine: Engine
    generator: TextGenerator
    commands: Commands
    core: Core
    training: TrainingService
    jobs: SqlJobStore
    runner: JobRunner
    notifier: Notifier
    # One per platform whose token is set, in the order they start.
    platforms: list[Supervisor] = field(default_factory=list)

    async def serve(self, console: ChannelRef | None = None) -> None:
        """Runs the bot until cancelled or, with no platform set up, until the console
        (`console`, or settings.console_channel) reaches the end of its input."""
        from bot.core.scheduler import build_scheduler, start_scheduler

        self._serve_metrics()
        scheduler = build_scheduler(self.settings, self.runner)
        start_scheduler(scheduler, self.settings)
        tasks = [asyncio.create_task(self.runner.serve(), name="job-runner")]
        tasks += [asyncio.create_task(p.run(), name=p.name) for p in self.platforms]
        try:
            if self.platforms:
                # Supervisors only end when cancelled: a platform that fails is retried.
                await asyncio.gather(*tasks)
            else:
                await self._console(console or ChannelRef.parse(self.settings.console_channel))
        finally:
            for task in tasks:
                # Once each, then time to finish: a second cancel would land inside a
                # supervisor's clean-up (closing its platform client) and leave the
                # client's connections open. Whatever has not ended by then is
                # cancelled again (a library that swallowed the first).
                if not task.done() and not task.cancelling():
                    task.cancel()
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            scheduler.shutdown(wait=False)

    async def _console(self, ref: ChannelRef) -> None:
        from adapters.console_adapter import ConsoleAdapter

        await self.channels.ensure(ref, ref.channel)
        active = await self.registry.active(ref)
        model = version_banner(active) if active else self.settings.base_model
        adapter = ConsoleAdapter(self.core, ref, model_name=model)
        self.notifier.sinks["console"] = adapter.post_notice
        self.runner.listeners.append(_announce_to(adapter, ref, self.commands))
        await adapter.run()

    def _serve_metrics(self) -> None:
        if self.settings.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(
                self.settings.metrics_port,
                addr=self.settings.metrics_host,
                registry=self.worker.metrics.registry,
            )

    async def close(self) -> None:
        await self.messages.close()
        self.engine.close()
        self.worker.close()
        await self.db.dispose()


def _announce_to(console: Any, ref: ChannelRef, commands: Commands) -> Callable[[JobResult], None]:
    """Tells the console when a training run of its channel ends: a better version
    answers from the next message on, without a restart. With the channel's notices on,
    the notice says so instead (bot/core/notices.py), with the loss curve's path."""
    announcing = Background()

    async def announce(result: JobResult) -> None:
        if (await commands.settings.options(ref)).notices:
            return
        assert result.outcome is not None
        outcome = result.outcome
        line = M.t("quality_line", **quality_fields(outcome.version))
        if outcome.promoted:
            console.notice(M.t("version_promoted", line=line))
        else:
            console.notice(M.t("version_kept", line=line, reason=outcome.reason))

    def listener(result: JobResult) -> None:
        if result.job.channel != ref or result.outcome is None:
            return
        announcing.start(announce(result))

    return listener


def _platforms(settings: Settings, core: Core, runner: JobRunner, metrics: Any) -> list[Supervisor]:
    """A supervisor for each platform whose token is set; each builds its adapter anew
    for every connection attempt."""
    backoff = Backoff(settings.platform_retry_first_s, settings.platform_retry_max_s)
    platform_metrics = PlatformMetrics(metrics.registry)
    builders: dict[str, Callable[[], PlatformAdapter]] = {}
    if settings.discord_token is not None:
        builders["discord"] = lambda: _discord(settings, core)
    if settings.slack_bot_token is not None:
        if settings.slack_app_token is None and settings.slack_signing_secret is None:
            raise UserError(
                "Slack needs TSUZUKI_SLACK_APP_TOKEN (Socket Mode) or "
                "TSUZUKI_SLACK_SIGNING_SECRET (HTTP mode)."
            )
        builders["slack"] = lambda: _slack(settings, core)
    supervisors = []
    for name, build in builders.items():
        supervisor = Supervisor(name, build, platform_metrics, backoff)
        runner.history[name] = supervisor.fetch_history
        supervisors.append(supervisor)
    return supervisors


def _discord(settings: Settings, core: Core) -> PlatformAdapter:
    from adapters.discord_adapter import DiscordAdapter

    assert settings.discord_token is not None
    return DiscordAdapter(
        core,
        settings.discord_token.get_secret_value(),
        sync_guild=settings.discord_sync_guild,
        api_url=settings.discord_api_url,
        gateway_url=settings.discord_gateway_url,
        edit_interval_s=settings.discord_edit_interval_s,
        shard_count=settings.discord_shard_count,
        shard_ids=settings.discord_shard_ids,
    )


def _slack(settings: Settings, core: Core) -> PlatformAdapter:
    from adapters.slack_adapter import SlackAdapter

    assert settings.slack_bot_token is not None

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    return SlackAdapter(
        core,
        settings.slack_bot_token.get_secret_value(),
        signing_secret=secret(settings.slack_signing_secret),
        app_token=secret(settings.slack_app_token),
        http_port=settings.slack_http_port,
        api_url=settings.slack_api_url,
        admin_ids=frozenset(i.strip() for i in settings.slack_admin_ids.split(",") if i.strip()),
        update_interval_s=settings.slack_update_interval_s,
    )


async def build_app(settings: Settings | None = None, **overrides: Any) -> App:
    """Builds the app; `overrides` replace parts by name (db, worker, engine,
    generator)."""
    settings = settings or load_settings()
    M.set_locale(settings.locale)
    db: Database = overrides.get("db") or await open_database(settings.resolved_database_url)
    stores = SqlStores.over(db, settings)
    await migrate_channel_folders(settings.models_dir, stores.channels, stores.registry)
    clean_temporary(settings.models_dir)
    worker: DeviceWorker = overrides.get("worker") or DeviceWorker(
        settings.effective_torch_threads,
        max_pending=settings.max_pending_requests,
        max_batch=settings.max_batch,
        batch_window_s=settings.batch_window_ms / 1000,
    )
    parts = model_parts(settings, stores, worker)
    resolver, training = parts.resolver, parts.training
    engine: Engine = overrides.get("engine") or await _engine(
        settings, stores, resolver, worker, training
    )
    generator: TextGenerator = overrides.get("generator") or engine
    runner = JobRunner(settings, stores, engine)
    commands = Commands(
        stores,
        generator,
        CommandConfig(
            defaults=settings.default_sampling(),
            base_model=str(resolver.base),
            limits=ReplyLimits(
                max_prompt_chars=settings.max_prompt_chars,
                reply_context_messages=settings.reply_context_messages,
                per_user=RateLimiter(settings.rate_per_user_per_minute),
                per_channel=RateLimiter(settings.rate_per_channel_per_minute),
            ),
        ),
        CommandHooks(
            on_job_queued=lambda: runner.wake(),
            on_forgotten=training.delete_forgotten,
            busy=lambda: worker.interactive_waiting > 0,
        ),
    )
    core = Core(commands, Ingest(stores.messages, commands.replies))
    notifier = Notifier(stores.channels)
    runner.listeners.append(notifier.on_result)
    platforms = _platforms(settings, core, runner, worker.metrics)
    for supervisor in platforms:
        notifier.sinks[supervisor.name] = supervisor.post_notice
    return App(
        settings,
        db,
        stores.channels,
        stores.messages,
        stores.registry,
        worker,
        resolver,
        engine,
        generator,
        commands,
        core,
        training,
        stores.jobs,
        runner,
        notifier,
        platforms,
    )


async def _engine(
    settings: Settings,
    stores: SqlStores,
    resolver: ModelResolver,
    worker: DeviceWorker,
    training: TrainingService,
) -> Engine:
    if settings.engine == "ray":
        # Imported only here: Ray is an extra (`pip install tsuzuki[ray]`).
        from bot.engine.ray_engine import RayEngine

        return await RayEngine.start(settings, resolver)
    generator = LocalGenerator(
        resolver,
        worker,
        ModelCache(settings.model_cache_mb * 2**20, dtype=settings.serving_dtype),
        live=live_counts(settings, stores),
        stream_interval_s=settings.stream_interval_ms / 1000,
    )
    return LocalEngine(generator, training)


@asynccontextmanager
async def running_app(settings: Settings | None = None, **overrides: Any) -> AsyncIterator[App]:
    """build_app, closed again (device thread, database connections) on the way out."""
    app = await build_app(settings, **overrides)
    try:
        yield app
    finally:
        await app.close()
