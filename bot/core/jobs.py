"""Durable background jobs: what the nightly schedule queues and the runner executes.

Jobs are rows (storage `jobs`), so they outlive the process. A running job has an
owner (host, process id) and a heartbeat: a job whose owner is gone (killed, crashed)
is taken over by whichever process starts next (`tsuzuki run`, `tsuzuki train`) and,
for training, resumes from its last checkpoint; a job whose owner is alive is never
taken. A job stopped on purpose (Ctrl-C, shutdown) goes back to the queue at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot import messages as M
from bot.config import Settings
from bot.core.background import Background
from bot.domain import ChannelRef
from bot.errors import UserError, WorkerLost
from bot.outages import explained
from bot.ports import HistorySource, Stores, Trainer
from bot.records import ImportBatch, JobInfo
from bot.statuses import GONE_VERSIONS, JobStatus
from bot.training.outcome import ProgressFn, TrainOptions, TrainOutcome
from bot.training.run_config import StepResult

log = logging.getLogger(__name__)

# How often a running job writes its progress to the database.
PROGRESS_EVERY_S = 2.0
# How often a running job says its owner is alive, whatever it is doing (building the
# dataset, evaluating, training); and how long without a word before a job whose owner
# is on another host counts as orphaned. (On this host a job is orphaned as soon as its
# owner's process has ended.)
HEARTBEAT_EVERY_S = 5.0
STALE_AFTER_S = 10 * HEARTBEAT_EVERY_S
IDLE_POLL_S = 30.0
BACKFILL_PAGE = 100  # messages per history request (Discord's maximum)
# A job whose worker died this many times (claims) fails rather than going back again:
# something in it (its data, its size) kills whatever runs it.
MAX_ATTEMPTS = 3

ProgressFactory = Callable[[JobInfo], ProgressFn | None]

# How a job ended that goes on: its worker died, it is back in the queue and resumes.
REQUEUED = "requeued"


@dataclass(frozen=True)
class JobResult:
    job: JobInfo
    status: str  # succeeded | failed | requeued (its worker died; it resumes)
    outcome: TrainOutcome | None = None
    error: str | None = None


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        stores: Stores,
        training: Trainer,
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.jobs = stores.jobs
        self.training = training
        self._wake = asyncio.Event()
        # Called with every finished job's result, on the event loop.
        self.listeners: list[Callable[[JobResult], None]] = []
        # Per platform: how to read a channel's past messages (set by the adapters'
        # wiring in the composition root).
        self.history: dict[str, HistorySource] = {}

    async def due_channels(self) -> list[ChannelRef]:
        """Channels with training on and enough new messages since their last version,
        or a message deleted or edited since it (the version still holds it)."""
        due = []
        for ref in await self.stores.channels.training_channels():
            if await self._changed_under_versions(ref):
                log.info("%s: messages deleted or edited since its last version: due", ref)
                due.append(ref)
                continue
            # A version withdrawn because a member opted out, or retired by a reset,
            # does not count: a channel left with none is due again, on its whole
            # history, though nothing new was said.
            versions = [
                v for v in await self.stores.registry.versions(ref) if v.status not in GONE_VERSIONS
            ]
            last = max((v.last_message_id or 0 for v in versions), default=0)
            new = await self.stores.messages.count_trainable_after(ref, last)
            if new > 0 and new >= self.settings.nightly_min_new_messages:
                due.append(ref)
            else:
                log.info("%s: %d new messages, not due for training", ref, new)
        return due

    async def _changed_under_versions(self, ref: ChannelRef) -> bool:
        channel = await self.stores.channels.get(ref)
        changed = channel.history_changed_at if channel else None
        if changed is None:
            return False
        versions = [
            v for v in await self.stores.registry.versions(ref) if v.status not in GONE_VERSIONS
        ]
        return bool(versions) and changed > max(v.created_at for v in versions)

    async def queue_due_training(self) -> list[JobInfo]:
        """What the nightly schedule does: a training job for each due channel (an
        orphaned one taken over; one a live process runs is left to it)."""
        await self.take_over_orphans()
        payload = {"max_minutes": self.settings.nightly_max_minutes}
        queued = [
            await self.jobs.enqueue("train", ref, payload) for ref in await self.due_channels()
        ]
        self.wake()
        return queued

    def wake(self) -> None:
        self._wake.set()

    async def take_over_orphans(self) -> list[JobInfo]:
        """Jobs whose owner is gone go back to the queue, to resume from their
        checkpoint (see JobStore.requeue_orphaned)."""
        taken = await self.jobs.requeue_orphaned(STALE_AFTER_S)
        for job in taken:
            log.info(
                "job %d (%s %s): its owner %s is gone; queued again to resume",
                job.id,
                job.kind,
                job.channel,
                job.owner or "(none)",
            )
        return taken

    async def claim_now(
        self, ref: ChannelRef, payload: dict[str, Any], priority: int = 10, kind: str = "train"
    ) -> JobInfo | None:
        """A job for the channel, claimed by this process to run now: the queued one,
        an orphaned one taken over (it resumes from its checkpoint), or a new one. None
        while another live process runs the channel's job."""
        await self.take_over_orphans()
        job = await self.jobs.enqueue(kind, ref, payload, priority)
        return await self.jobs.claim(job.id)

    async def run_pending(self, progress: ProgressFactory | None = None) -> list[JobResult]:
        """Runs queued jobs until none is left (a job whose worker died is claimed
        again at once and resumes from its checkpoint)."""
        done: list[JobResult] = []

        async def lane() -> None:
            while (job := await self.jobs.claim_next()) is not None:
                done.append(await self.run(job, progress))

        lanes = self.settings.train_concurrency
        if lanes == 1:
            # In this task: a KeyboardInterrupt (Ctrl-C in `tsuzuki train`) must reach
            # the caller as it is, not through a task the event loop re-raises it from.
            await lane()
        else:
            # Up to TSUZUKI_TRAIN_CONCURRENCY jobs at once (one per GPU of a Ray cluster).
            await asyncio.gather(*(lane() for _ in range(lanes)))
        return done

    async def run(self, job: JobInfo, progress: ProgressFactory | None = None) -> JobResult:
        """Runs a job to the end, records how it ended and tells the listeners (the
        console says when a better version starts answering). A job this process has not
        claimed is claimed first; one that another process runs is not run here."""
        if job.status != JobStatus.RUNNING or job.owner != self.jobs.owner:
            claimed = await self.jobs.claim(job.id)
            if claimed is None:
                busy = M.t("training_busy", channel=job.channel)
                result = JobResult(job, JobStatus.FAILED, error=busy)
                for listener in self.listeners:
                    listener(result)
                return result
            job = claimed
        result = await self._run_owned(job, progress)
        for listener in self.listeners:
            listener(result)
        return result

    async def _run_owned(self, job: JobInfo, progress: ProgressFactory | None) -> JobResult:
        """Runs a job this process owns, its heartbeat beating alongside, and records how
        it ended. If the job is taken from this process (it looked orphaned to another),
        the work stops here; if this process stops it (Ctrl-C, shutdown), the job goes
        back to the queue."""
        task = asyncio.current_task()
        assert task is not None
        lost = False

        async def keep_alive() -> None:
            nonlocal lost
            while True:
                await asyncio.sleep(HEARTBEAT_EVERY_S)
                try:
                    mine = await self.jobs.heartbeat(job.id)
                except Exception:
                    log.warning("job %d: heartbeat failed; trying again", job.id, exc_info=True)
                    continue
                if not mine:
                    lost = True
                    task.cancel()
                    return

        beat = asyncio.create_task(keep_alive(), name=f"job-{job.id}-heartbeat")
        outcome = None
        status, error = JobStatus.SUCCEEDED, None
        try:
            outcome = await self._work(job, progress)
        except UserError as e:
            status, error = JobStatus.FAILED, e.reason
        except WorkerLost as e:
            # Taken over meanwhile (lost): the new owner has it; that ends it below.
            if job.attempts < MAX_ATTEMPTS and not lost:
                beat.cancel()
                log.warning("job %d (%s %s): %s; queued again", job.id, job.kind, job.channel, e)
                await self._release(job)
                return JobResult(job, REQUEUED, error=str(e))
            log.error(
                "job %d (%s %s): %s (try %d); failed",
                job.id,
                job.kind,
                job.channel,
                e,
                job.attempts,
            )
            status, error = JobStatus.FAILED, M.t("internal_error")
        except asyncio.CancelledError:
            beat.cancel()
            if lost and task.uncancel() == 0:
                log.warning(
                    "job %d (%s %s) was taken over by another process; stopped here",
                    job.id,
                    job.kind,
                    job.channel,
                )
                return JobResult(
                    job, JobStatus.FAILED, error=M.t("training_busy", channel=job.channel)
                )
            # Stopped (Ctrl-C, shutdown): back to the queue, to resume next time.
            await self._release(job)
            raise
        except (KeyboardInterrupt, SystemExit):
            beat.cancel()
            await self._release(job)
            raise
        except Exception as e:
            log.exception("job %d (%s %s) failed", job.id, job.kind, job.channel)
            status, error = JobStatus.FAILED, explained(e)
        # The heartbeat stops before the end is recorded (no await in between): a
        # heartbeat after it would find the job no longer running and take that for a
        # take-over.
        beat.cancel()
        if lost and task.uncancel() == 0:  # taken over just as the work ended
            return JobResult(job, JobStatus.FAILED, error=M.t("training_busy", channel=job.channel))
        await self.jobs.finish(job.id, status, error)
        return JobResult(job, status, outcome=outcome, error=error)

    async def _release(self, job: JobInfo) -> None:
        try:
            await self.jobs.release(job.id)
        except Exception:
            # The owner's process ends now: the next start finds it orphaned anyway.
            log.warning("job %d: could not release it", job.id, exc_info=True)

    async def _work(self, job: JobInfo, progress: ProgressFactory | None) -> TrainOutcome | None:
        if job.channel is None or job.kind not in ("train", "backfill"):
            raise UserError(f"unknown job kind {job.kind!r}")
        if job.kind == "backfill":
            await self._backfill(job)
            return None
        report = self._progress_writer(job, progress(job) if progress else None)
        return await self.training.train(
            job.channel, TrainOptions.from_payload(job.payload), report
        )

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
            # People's words only: no bot posts, and nothing empty (an upload alone).
            # The store leaves out the members who opted out, as for every import.
            people = [m for m in page if not m.is_bot and m.text.strip()]
            if people:
                await self.stores.messages.add_batch(ImportBatch(messages=people))
            payload["before"] = page[-1].external_id
            payload["fetched"] = payload.get("fetched", 0) + len(page)
            await self.jobs.set_payload(job.id, payload)

    def _progress_writer(self, job: JobInfo, also: ProgressFn | None) -> ProgressFn:
        last = 0.0
        writes = Background()

        def report(step: StepResult, total: int) -> None:
            nonlocal last
            if also is not None:
                also(step, total)
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                writes.start(self.jobs.set_progress(job.id, step.done))

        return report

    async def serve(self) -> None:
        """The runner of `tsuzuki run`: runs jobs as they are queued, until cancelled;
        on start and then every so often it takes over jobs whose owner is gone (a
        `tsuzuki train` killed half-way), which resume from their checkpoint."""
        while True:
            self._wake.clear()
            await self.take_over_orphans()
            await self.run_pending()
            try:
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
            except TimeoutError:
                pass
