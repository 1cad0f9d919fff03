"""Nightly re-finetunes (APScheduler 3.x), with the schedule kept in the bot's database.

One cron job with a fixed id queues a training job for every channel that is due.
The job store is persistent, jobs coalesce, and the misfire grace time is almost a
day: a bot that was down at 03:00 runs the missed night once when it comes back, not
once per missed night, and not never.
"""

from __future__ import annotations

import logging
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url

from storage.db import SQLITE_BUSY_TIMEOUT_MS

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.config import Settings
    from bot.jobs import JobRunner

log = logging.getLogger(__name__)

NIGHTLY_JOB_ID = "tsuzuki-nightly-retrain"
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


def sync_url(async_url: str) -> str:
    """The job store is synchronous: the same database through a sync driver."""
    url = make_url(async_url)
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}[url.get_backend_name()]
    return url.set(drivername=driver).render_as_string(hide_password=False)


def _job_store_engine(url: str) -> Any:
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    return engine


def _timezone(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo

    from tzlocal import get_localzone

    return ZoneInfo(name) if name else get_localzone()


def build_scheduler(settings: Settings, runner: JobRunner) -> AsyncIOScheduler:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    global _runner
    _runner = runner
    store = SQLAlchemyJobStore(engine=_job_store_engine(sync_url(settings.resolved_database_url)))
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
