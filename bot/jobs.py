"""Durable background jobs: what the nightly schedule queues and the runner executes.

Jobs are rows (storage `jobs`), so they outlive the process: a job that was running
when the bot died is queued again on start and, for training, resumes from its last
checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from bot import messages as M
from bot.config import Settings
from bot.domain import ChannelRef, ChatMessage
from bot.errors import UserError
from bot.ports import (
    ChannelStore,
    HistorySource,
    ImportBatch,
    JobInfo,
    JobStore,
    MessageStore,
    ModelRegistry,
    UserStore,
)
from bot.training.finetune import StepResult
from bot.training.service import ProgressFn, TrainingService, TrainOptions, TrainOutcome

log = logging.getLogger(__name__)

# How often a running job writes its progress to the database.
PROGRESS_EVERY_S = 2.0
IDLE_POLL_S = 30.0
BACKFILL_PAGE = 100  # messages per history request (Discord's maximum)

ProgressFactory = Callable[[JobInfo], ProgressFn | None]


@dataclass(frozen=True)
class JobResult:
    job: JobInfo
    status: str  # succeeded | failed
    outcome: TrainOutcome | None = None
    error: str | None = None


def options_from_payload(payload: dict[str, Any]) -> TrainOptions:
    known = {f.name for f in fields(TrainOptions)}
    return TrainOptions(**{k: v for k, v in payload.items() if k in known})


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        jobs: JobStore,
        training: TrainingService,
        channels: ChannelStore,
        messages: MessageStore,
        registry: ModelRegistry,
        users: UserStore | None = None,
    ) -> None:
        self.users = users
        self.settings = settings
        self.jobs = jobs
        self.training = training
        self.channels = channels
        self.messages = messages
        self.registry = registry
        self._wake = asyncio.Event()
        # Called with every finished job's result, on the event loop.
        self.listeners: list[Callable[[JobResult], None]] = []
        # Per platform: how to read a channel's past messages (set by the adapters'
        # wiring in the composition root).
        self.history: dict[str, HistorySource] = {}

    async def due_channels(self) -> list[ChannelRef]:
        """Channels with training on and enough new messages since their last version."""
        due = []
        for ref in await self.channels.training_channels():
            versions = await self.registry.versions(ref)
            last = max((v.last_message_id or 0 for v in versions), default=0)
            new = await self.messages.count_trainable_after(ref, last)
            if new > 0 and new >= self.settings.nightly_min_new_messages:
                due.append(ref)
            else:
                log.info("%s: %d new messages, not due for training", ref, new)
        return due

    async def queue_due_training(self) -> list[JobInfo]:
        """What the nightly schedule does: a training job for each due channel."""
        payload = {"max_minutes": self.settings.nightly_max_minutes}
        queued = [
            await self.jobs.enqueue("train", ref, payload) for ref in await self.due_channels()
        ]
        self.wake()
        return queued

    def wake(self) -> None:
        self._wake.set()

    async def run_pending(self, progress: ProgressFactory | None = None) -> list[JobResult]:
        """Runs queued jobs one after another until none is left."""
        done = []
        while (job := await self.jobs.claim_next()) is not None:
            done.append(await self.run(job, progress))
        return done

    async def run(self, job: JobInfo, progress: ProgressFactory | None = None) -> JobResult:
        """Runs a claimed job to the end, records how it ended and tells the listeners
        (the console says when a better version starts answering)."""
        result = await self._run(job, progress)
        for listener in self.listeners:
            listener(result)
        return result

    async def _run(self, job: JobInfo, progress: ProgressFactory | None) -> JobResult:
        outcome = None
        try:
            if job.channel is None or job.kind not in ("train", "backfill"):
                raise UserError(f"unknown job kind {job.kind!r}")
            if job.kind == "backfill":
                await self._backfill(job)
            else:
                report = self._progress_writer(job, progress(job) if progress else None)
                outcome = await self.training.train(
                    job.channel, options_from_payload(job.payload), report
                )
        except UserError as e:
            await self.jobs.finish(job.id, "failed", e.reason)
            return JobResult(job, "failed", error=e.reason)
        except asyncio.CancelledError:
            # Shutting down: the row stays "running", so the next start resumes it.
            raise
        except Exception:
            log.exception("job %d (%s %s) failed", job.id, job.kind, job.channel)
            await self.jobs.finish(job.id, "failed", M.t("internal_error"))
            return JobResult(job, "failed", error=M.t("internal_error"))
        await self.jobs.finish(job.id, "succeeded")
        return JobResult(job, "succeeded", outcome=outcome)

    async def _backfill(self, job: JobInfo) -> None:
        """Stores the channel's past messages, page by page, oldest pages last. The
        cursor is saved after each page, so a restarted job carries on where it was;
        the platform client paces the requests (it honours rate limits)."""
        assert job.channel is not None
        source = self.history.get(job.channel.platform)
        if source is None:
            return  # nothing to read history from (the console has none)
        payload = dict(job.payload)
        while True:
            page = await source(job.channel, payload.get("before"), BACKFILL_PAGE)
            if not page:
                return
            people = [m for m in page if not m.is_bot]
            kept = [m for m in people if not await self._opted_out(m)]
            if kept:
                await self.messages.add_batch(ImportBatch(messages=kept))
            payload["before"] = page[-1].external_id
            payload["fetched"] = payload.get("fetched", 0) + len(page)
            await self.jobs.set_payload(job.id, payload)

    async def _opted_out(self, message: ChatMessage) -> bool:
        if self.users is None:
            return False
        ref = message.channel
        return await self.users.is_opted_out(ref.platform, ref.workspace, message.author.id)

    def _progress_writer(self, job: JobInfo, also: ProgressFn | None) -> ProgressFn:
        last = 0.0
        pending: set[asyncio.Task[None]] = set()

        def report(step: StepResult, total: int) -> None:
            nonlocal last
            if also is not None:
                also(step, total)
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                task = asyncio.get_running_loop().create_task(
                    self.jobs.set_progress(job.id, step.done)
                )
                pending.add(task)
                task.add_done_callback(pending.discard)

        return report

    async def serve(self) -> None:
        """The runner of `tsuzuki run`: resumes interrupted jobs, then runs jobs as they
        are queued, until cancelled."""
        requeued = await self.jobs.requeue_interrupted()
        if requeued:
            log.info("requeued %d interrupted job(s)", requeued)
        while True:
            self._wake.clear()
            await self.run_pending()
            try:
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
            except TimeoutError:
                pass
