"""The job runner with owners: it heartbeats while a job runs (whatever the job is
doing), stops a job taken from it, puts a job it is stopped in back in the queue, takes
over jobs whose owner is gone and never runs one a live process runs."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import datetime

import pytest
from sqlalchemy import update

import bot.core.jobs
from bot import messages as M
from bot.app import App
from bot.domain import ChannelRef, ChatMessage
from bot.processes import JobOwner
from bot.records import JobInfo
from storage.models import Job
from storage.stores import SqlJobStore
from tests.integration.test_job_owners import dead_pid

REF = ChannelRef.parse("console:general")
HOST = socket.gethostname()
BUSY = M.t("training_busy", channel=REF)


@pytest.fixture(autouse=True)
def _fast_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot.core.jobs, "HEARTBEAT_EVERY_S", 0.05)


async def job_row(app: App, job_id: int) -> JobInfo:
    (row,) = [j for j in await app.jobs.recent() if j.id == job_id]
    return row


async def test_a_running_job_heartbeats_while_it_is_busy_elsewhere(app: App) -> None:
    """No progress is reported during a slow phase (here a history page that takes its
    time): the heartbeat goes on regardless."""
    beats: list[datetime | None] = []

    async def slow_history(ref: ChannelRef, before: str | None, limit: int) -> list[ChatMessage]:
        job = (await app.jobs.recent())[0]
        beats.append(job.heartbeat_at)
        await asyncio.sleep(0.5)
        beats.append((await app.jobs.recent())[0].heartbeat_at)
        return []

    app.runner.history["console"] = slow_history
    job = await app.jobs.enqueue("backfill", REF, {})
    (result,) = await app.runner.run_pending()
    assert result.status == "succeeded"
    first, last = beats
    assert first is not None and last is not None and last > first
    assert (await job_row(app, job.id)).status == "succeeded"


async def test_a_job_that_ends_is_not_taken_for_a_lost_one(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat beats as often as it can: the end of the job (no longer running)
    never reads as a take-over, nor cancels what the runner does next."""
    monkeypatch.setattr(bot.core.jobs, "HEARTBEAT_EVERY_S", 0)

    async def history(ref: ChannelRef, before: str | None, limit: int) -> list[ChatMessage]:
        for _ in range(5):
            await app.jobs.recent()
        return []

    app.runner.history["console"] = history
    for i in range(10):
        await app.jobs.enqueue("backfill", ChannelRef.parse(f"console:c{i}"), {})
    results = await app.runner.run_pending()
    assert [r.status for r in results] == ["succeeded"] * 10
    assert {j.status for j in await app.jobs.recent()} == {"succeeded"}
    await asyncio.sleep(0.1)  # nothing left to cancel this task


async def test_a_job_taken_from_its_process_stops_there(app: App) -> None:
    taken = asyncio.Event()
    other = JobOwner("another-host", 7)

    async def history(ref: ChannelRef, before: str | None, limit: int) -> list[ChatMessage]:
        # Another process took the job over (it found this one silent for too long).
        async with app.db.write() as session:
            await session.execute(
                update(Job).values(owner_host=other.host, owner_pid=other.pid, attempts=2)
            )
        taken.set()
        await asyncio.sleep(60)
        raise AssertionError("not stopped")

    app.runner.history["console"] = history
    job = await app.jobs.enqueue("backfill", REF, {})
    (result,) = await asyncio.wait_for(app.runner.run_pending(), 30)
    assert taken.is_set()
    assert (result.status, result.error) == ("failed", BUSY)
    row = await job_row(app, job.id)
    # Left as the new owner has it: not finished, not released by the old one.
    assert (row.status, row.owner, row.error) == ("running", other, None)


async def test_stopping_a_running_job_puts_it_back_in_the_queue(app: App) -> None:
    started = asyncio.Event()

    async def history(ref: ChannelRef, before: str | None, limit: int) -> list[ChatMessage]:
        started.set()
        await asyncio.sleep(60)
        return []

    app.runner.history["console"] = history
    job = await app.jobs.enqueue("backfill", REF, {})
    task = asyncio.create_task(app.runner.run_pending())
    await asyncio.wait_for(started.wait(), 30)
    assert (await job_row(app, job.id)).owner == app.jobs.owner
    task.cancel()  # Ctrl-C, or the bot shutting down
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await job_row(app, job.id)
    assert (row.status, row.owner, row.heartbeat_at) == ("queued", None, None)


async def test_claim_now_takes_over_a_dead_owners_job_but_never_a_live_ones(
    app: App, live_pid: int
) -> None:
    alive = SqlJobStore(app.db, JobOwner(HOST, live_pid))
    job = await alive.enqueue("train", REF, {"max_steps": 40})
    assert await alive.claim(job.id) is not None
    assert await app.runner.claim_now(REF, {"max_steps": 5}) is None  # training_busy

    async with app.db.write() as session:  # its owner dies
        await session.execute(update(Job).values(owner_pid=dead_pid()))
    claimed = await app.runner.claim_now(REF, {"max_steps": 5})
    assert claimed is not None
    assert (claimed.id, claimed.attempts, claimed.owner) == (job.id, 2, app.jobs.owner)
    assert claimed.payload == {"max_steps": 40}  # the interrupted run, to resume


async def test_run_claims_a_queued_job_and_never_runs_one_another_process_runs(
    app: App, live_pid: int
) -> None:
    """`tsuzuki train --all-due` runs what queue_due_training returns: a queued job is
    claimed first; one that a live process runs is left to it."""
    alive = SqlJobStore(app.db, JobOwner(HOST, live_pid))
    other = await alive.enqueue("backfill", ChannelRef.parse("console:other"), {})
    running = await alive.claim(other.id)
    assert running is not None
    result = await app.runner.run(running)
    assert (result.status, result.error) == (
        "failed",
        M.t("training_busy", channel=running.channel),
    )
    row = await job_row(app, other.id)
    assert (row.status, row.owner) == ("running", alive.owner)

    queued = await app.jobs.enqueue("backfill", REF, {})
    done = await app.runner.run(queued)
    assert done.status == "succeeded"
    row = await job_row(app, queued.id)
    assert (row.status, row.owner, row.attempts) == ("succeeded", app.jobs.owner, 1)


async def test_the_bots_runner_takes_over_a_job_whose_owner_died(app: App) -> None:
    gone = SqlJobStore(app.db, JobOwner(HOST, dead_pid()))
    job = await gone.enqueue("backfill", REF, {})
    assert await gone.claim(job.id) is not None
    serve = asyncio.create_task(app.runner.serve())
    try:
        for _ in range(300):
            row = await job_row(app, job.id)
            if row.status == "succeeded":
                break
            await asyncio.sleep(0.05)
        assert (row.status, row.attempts, row.owner) == ("succeeded", 2, app.jobs.owner)
    finally:
        serve.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serve
    assert os.getpid() == app.jobs.owner.pid
