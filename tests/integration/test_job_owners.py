"""Job owners and heartbeats on real databases (SQLite always, PostgreSQL when
configured): a job whose owner is gone is taken over, once; a live one never is."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from bot.domain import ChannelRef
from bot.processes import JobOwner, process_alive
from bot.statuses import JobStatus
from storage.db import Database, open_database
from storage.models import Job
from storage.stores import SqlJobStore

REF = ChannelRef.parse("console:general")
HOST = socket.gethostname()
STALE_S = 50.0


def dead_pid() -> int:
    """The id of a process of this host that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def age_heartbeat(db: Database, job_id: int, seconds: float) -> None:
    """The job's owner last said it was alive `seconds` ago."""
    async with db.write() as session:
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


async def running_job(store: SqlJobStore, ref: ChannelRef = REF) -> int:
    job = await store.enqueue("train", ref, {"max_steps": 5})
    claimed = await store.claim(job.id)
    assert claimed is not None and claimed.status == "running"
    return claimed.id


async def test_a_claim_records_the_owner_and_the_heartbeat_moves(db: Database) -> None:
    store = SqlJobStore(db)
    before = datetime.now(UTC)
    job = await store.enqueue("train", REF, {})
    assert (job.owner, job.heartbeat_at) == (None, None)
    claimed = await store.claim(job.id)
    assert claimed is not None
    assert claimed.owner == JobOwner(HOST, os.getpid()) == store.owner
    assert claimed.heartbeat_at is not None and claimed.heartbeat_at >= before

    await age_heartbeat(db, job.id, 100)
    assert await store.heartbeat(job.id)
    (row,) = await store.recent()
    assert row.heartbeat_at is not None and row.heartbeat_at >= before
    # Not another process's to beat for; nor a finished job's.
    assert not await SqlJobStore(db, JobOwner("elsewhere", 1)).heartbeat(job.id)
    await store.finish(job.id, JobStatus.SUCCEEDED)
    assert not await store.heartbeat(job.id)
    (row,) = await store.recent()
    assert (row.status, row.owner) == ("succeeded", store.owner)  # who ran it stays


async def test_progress_is_a_heartbeat_too(db: Database) -> None:
    store = SqlJobStore(db)
    job_id = await running_job(store)
    await age_heartbeat(db, job_id, 1000)
    await store.set_progress(job_id, 0.5)
    (row,) = await store.recent()
    assert row.progress == 0.5
    assert row.heartbeat_at is not None
    assert datetime.now(UTC) - row.heartbeat_at < timedelta(seconds=60)
    assert await store.requeue_orphaned(STALE_S) == []


async def test_a_job_whose_owner_process_ended_is_taken_over(db: Database) -> None:
    gone = SqlJobStore(db, JobOwner(HOST, dead_pid()))
    job_id = await running_job(gone)
    mine = SqlJobStore(db)

    # Its heartbeat is fresh, but its process has ended: orphaned at once.
    (taken,) = await mine.requeue_orphaned(STALE_S)
    assert (taken.id, taken.owner) == (job_id, gone.owner)
    (row,) = await mine.recent()
    assert (row.status, row.owner, row.heartbeat_at) == ("queued", None, None)

    resumed = await mine.claim_next()
    assert resumed is not None
    assert (resumed.id, resumed.attempts, resumed.owner) == (job_id, 2, mine.owner)
    # The old owner can no longer touch it.
    assert not await gone.heartbeat(job_id)
    await gone.finish(job_id, JobStatus.FAILED, "late")
    await gone.release(job_id)
    (row,) = await mine.recent()
    assert (row.status, row.error, row.owner) == ("running", None, mine.owner)
    assert await mine.requeue_orphaned(STALE_S) == []


async def test_a_live_job_is_never_taken(db: Database, live_pid: int) -> None:
    here = SqlJobStore(db, JobOwner(HOST, live_pid))
    far = SqlJobStore(db, JobOwner("another-host", live_pid))
    near_job = await running_job(here, ChannelRef.parse("console:a"))
    far_job = await running_job(far, ChannelRef.parse("console:b"))
    me = SqlJobStore(db)
    assert await me.requeue_orphaned(STALE_S) == []
    # Nor can a new claim of the same channel's job take it: it is running.
    again = await me.enqueue("train", ChannelRef.parse("console:a"), {})
    assert again.id == near_job and await me.claim(again.id) is None
    assert await me.claim_next() is None

    # An owner on another host is judged by its heartbeat alone: silent too long, it
    # is gone; a live one on this host keeps its job however old its heartbeat is…
    await age_heartbeat(db, far_job, STALE_S - 5)
    assert await me.requeue_orphaned(STALE_S) == []
    await age_heartbeat(db, far_job, STALE_S + 5)
    assert [j.id for j in await me.requeue_orphaned(STALE_S)] == [far_job]
    # …until it has been silent past the threshold as well (hung, or its id reused).
    assert await here.heartbeat(near_job)
    assert await me.requeue_orphaned(STALE_S) == []
    await age_heartbeat(db, near_job, STALE_S + 5)
    assert [j.id for j in await me.requeue_orphaned(STALE_S)] == [near_job]


async def test_this_process_id_on_a_job_it_does_not_hold_is_an_earlier_process(
    db: Database,
) -> None:
    """A restarted container: the new process has the old one's host name and id."""
    before = SqlJobStore(db)
    job_id = await running_job(before)
    assert await before.requeue_orphaned(STALE_S) == []  # its own, held: alive
    after = SqlJobStore(db)
    assert after.owner == before.owner
    assert [j.id for j in await after.requeue_orphaned(STALE_S)] == [job_id]


async def test_a_job_left_running_before_owners_existed_is_taken_over(db: Database) -> None:
    store = SqlJobStore(db)
    job = await store.enqueue("train", REF, {})
    async with db.write() as session:
        await session.execute(update(Job).where(Job.id == job.id).values(status="running"))
    assert [j.id for j in await store.requeue_orphaned(STALE_S)] == [job.id]


async def test_a_taker_that_read_the_job_before_another_took_it_loses(db: Database) -> None:
    gone = SqlJobStore(db, JobOwner(HOST, dead_pid()))
    job_id = await running_job(gone)
    a = SqlJobStore(db, JobOwner(HOST, os.getpid()))
    b = SqlJobStore(db, JobOwner(HOST, os.getppid()))
    (seen_by_a,) = await a.orphaned(STALE_S)
    (seen_by_b,) = await b.orphaned(STALE_S)  # both read it as orphaned

    assert await a.take_over(seen_by_a)
    claimed = await a.claim(job_id)
    assert claimed is not None and claimed.owner == a.owner
    assert not await b.take_over(seen_by_b)  # what b read is no longer so
    (row,) = await a.recent()
    assert (row.status, row.owner) == ("running", a.owner)

    # Nor does a heartbeat between the read and the take-over lose the job.
    await age_heartbeat(db, job_id, STALE_S + 5)
    (stale,) = await b.orphaned(STALE_S)
    assert await a.heartbeat(job_id)
    assert not await b.take_over(stale)
    (row,) = await a.recent()
    assert (row.status, row.owner) == ("running", a.owner)


async def test_two_processes_taking_over_at_once_take_each_job_once(db_url: str) -> None:
    """Two processes (two engines, two connection pools) start at the same moment."""
    first, second = await open_database(db_url), await open_database(db_url)
    try:
        gone = SqlJobStore(first, JobOwner(HOST, dead_pid()))
        ids = {await running_job(gone, ChannelRef.parse(f"console:c{i}")) for i in range(12)}
        a = SqlJobStore(first, JobOwner(HOST, os.getpid()))
        b = SqlJobStore(second, JobOwner(HOST, os.getppid()))

        async def take_and_claim(store: SqlJobStore) -> tuple[set[int], set[int]]:
            taken = {j.id for j in await store.requeue_orphaned(STALE_S)}
            claimed = set()
            while (job := await store.claim_next()) is not None:
                claimed.add(job.id)
            return taken, claimed

        (taken_a, claimed_a), (taken_b, claimed_b) = await asyncio.gather(
            take_and_claim(a), take_and_claim(b)
        )
        assert taken_a | taken_b == ids and not taken_a & taken_b
        assert claimed_a | claimed_b == ids and not claimed_a & claimed_b
        owners = {j.id: j.owner for j in await a.recent()}
        assert all(owners[i] == a.owner for i in claimed_a)
        assert all(owners[i] == b.owner for i in claimed_b)
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_released_job_is_queued_ownerless(db: Database) -> None:
    store = SqlJobStore(db)
    job_id = await running_job(store)
    await SqlJobStore(db, JobOwner("elsewhere", 3)).release(job_id)  # not theirs
    (row,) = await store.recent()
    assert (row.status, row.owner) == ("running", store.owner)
    await store.release(job_id)
    (row,) = await store.recent()
    assert (row.status, row.owner, row.heartbeat_at) == ("queued", None, None)
    again = await store.claim(job_id)
    assert again is not None and again.attempts == 2


def test_process_liveness() -> None:
    assert process_alive(os.getpid())
    assert process_alive(dead_pid()) is False
    # A killed child not yet reaped by its parent is a zombie: not alive.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(proc.pid)
        proc.kill()
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while process_alive(proc.pid) and datetime.now(UTC) < deadline:
            time.sleep(0.01)
        assert process_alive(proc.pid) is False
        assert proc.poll() is not None  # reaped only now
    finally:
        proc.kill()
        proc.wait()


async def test_the_migrated_jobs_table_matches_the_model(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.models import Base

    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})  # type: ignore[arg-type]
        return [d for d in compare_metadata(context, Base.metadata) if "jobs" in repr(d)]

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
