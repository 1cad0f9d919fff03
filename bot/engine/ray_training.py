"""Training on a Ray cluster: one training run as a Ray task that claims a GPU (or CPU
cores) wherever one is free (`TSUZUKI_RAY_TRAIN_GPUS`, `TSUZUKI_RAY_TRAIN_CPUS`).

The task runs the same TrainingService (training_runs.py) as the local engine, on a
device worker of its own, and opens the database itself. It reads and writes model
versions under the data directory, which every Ray node must see at the same path (a
shared volume; README "Scaling out"). The job row stays with the bot process that
claimed it (heartbeat, progress, release): the task streams each step back, then the
outcome.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from bot.config import Settings
from bot.domain import ChannelRef
from bot.training.outcome import TrainOptions, TrainOutcome
from bot.training.run_config import StepResult

# A step is streamed back at most this often (and always the last one).
PROGRESS_EVERY_S = 0.5


def worker_settings(settings: Settings) -> Settings:
    """The settings a training task gets: no platform secrets (it never talks to a
    platform), and as many torch threads as the CPU cores it claimed."""
    return settings.model_copy(
        update={
            "discord_token": None,
            "slack_bot_token": None,
            "slack_app_token": None,
            "slack_signing_secret": None,
            "torch_threads": max(1, round(settings.ray_train_cpus)),
        }
    )


def train_stream(settings: Settings, ref: ChannelRef, options: TrainOptions) -> Iterator[Any]:
    """The Ray task (a streaming generator): ("step", StepResult, total) as training goes,
    then ("done", TrainOutcome). Errors travel back to the caller as they are."""
    events: queue.Queue[tuple[Any, ...]] = queue.Queue()
    last = 0.0

    def progress(step: StepResult, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S or step.done >= 1.0 or step.step >= total:
            last = now
            events.put(("step", step, total))

    def main() -> None:
        try:
            events.put(("done", asyncio.run(_train(settings, ref, options, progress))))
        except BaseException as e:
            events.put(("error", e))

    # Training runs its own event loop (database, device worker) beside the generator,
    # which only hands its events on.
    threading.Thread(target=main, name="tsuzuki-train", daemon=True).start()
    while True:
        event = events.get()
        if event[0] == "error":
            raise event[1]
        yield event
        if event[0] == "done":
            return


async def _train(
    settings: Settings, ref: ChannelRef, options: TrainOptions, progress: Any
) -> TrainOutcome:
    from bot.engine.parts import SqlStores, model_parts
    from bot.engine.worker import DeviceWorker
    from storage.db import open_database

    # The task's own database connections and device worker; the parts on them are
    # built as bot/app.py builds them (bot/engine/parts.py).
    db = await open_database(settings.resolved_database_url)
    worker = DeviceWorker(settings.effective_torch_threads)
    try:
        parts = model_parts(settings, SqlStores.over(db), worker)
        return await parts.training.train(ref, options, progress)
    finally:
        worker.close()
        await db.dispose()
