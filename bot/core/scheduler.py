"""Nightly re-finetunes (APScheduler 3.x), with the schedule kept in the bot's database.

One cron job with a fixed id queues a training job for every channel that is due.
The job store is persistent, jobs coalesce, and the misfire grace time is almost a
day: a bot that was down at 03:00 runs the missed night once when it comes back, not
once per missed night, and not never.
"""

from __future__ import annotations

import logging
import sys
from datetime import tzinfo
from typing import TYPE_CHECKING

from storage.db import sync_engine

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.config import Settings
    from bot.core.jobs import JobRunner

log = logging.getLogger(__name__)

NIGHTLY_JOB_ID = "tsuzuki-nightly-retrain"
# Where schedules stored before the core had a folder of its own find the job function:
# the job store keeps its reference, `bot.scheduler:nightly_retrain`. start_scheduler
# points such a job here, so this alias only ever serves the first start after.
OLD_MODULE = "bot.scheduler"
sys.modules.setdefault(OLD_MODULE, sys.modules[__name__])
# Late by up to this much, a missed night still runs (once) when the bot comes back.
MISFIRE_GRACE_S = 23 * 3600

# The job store pickles a reference to the job function, not the runner object; the
# running process registers its runner here for the function to find.
_runner: JobRunner | None = None


async def nightly_retrain() -> None:
    """The scheduled job: queue a training job for every channel that is due."""
    if _runner is None:
        log.warning("nightly re-finetune fired with no job runner registered")
        return
    queued = await _runner.queue_due_training()
    log.info("nightly re-finetune queued %d training job(s)", len(queued))


def _timezone(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo

    from tzlocal import get_localzone

    return ZoneInfo(name) if name else get_localzone()


def build_scheduler(settings: Settings, runner: JobRunner) -> AsyncIOScheduler:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    global _runner
    _runner = runner
    store = SQLAlchemyJobStore(engine=sync_engine(settings.resolved_database_url))
    return AsyncIOScheduler(
        jobstores={"default": store},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_S},
        timezone=_timezone(settings.nightly_timezone),
    )


def start_scheduler(scheduler: AsyncIOScheduler, settings: Settings) -> None:
    """Starts the scheduler with the nightly job in place.

    `add_job(replace_existing=True)` would recompute the next run time from the
    trigger and so forget a run missed while the bot was down. Instead: start paused,
    keep a stored job whose schedule is unchanged (its past next_run_time makes it run
    once now), replace it only when the configured time changed.
    """
    from apscheduler.triggers.cron import CronTrigger

    hour, minute = (int(part) for part in settings.nightly_time.split(":"))
    trigger = CronTrigger(hour=hour, minute=minute, timezone=scheduler.timezone)
    scheduler.start(paused=True)
    existing = scheduler.get_job(NIGHTLY_JOB_ID)
    if existing is not None and existing.func_ref.startswith(OLD_MODULE + ":"):
        # Its next run time stays as stored: a missed night still runs once.
        existing = scheduler.modify_job(NIGHTLY_JOB_ID, func=nightly_retrain)
    if existing is None or repr(existing.trigger) != repr(trigger):
        scheduler.add_job(
            nightly_retrain,
            trigger,
            id=NIGHTLY_JOB_ID,
            name="nightly re-finetune",
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=MISFIRE_GRACE_S,
        )
    scheduler.resume()
    job = scheduler.get_job(NIGHTLY_JOB_ID)
    log.info("nightly re-finetune scheduled; next run %s", job.next_run_time if job else None)
