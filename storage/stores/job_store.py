"""Durable jobs: queued, claimed by one process, kept alive by its heartbeat, taken
over once its owner is gone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import ChannelRef
from bot.processes import JobOwner, process_alive
from bot.records import JobInfo
from bot.statuses import ACTIVE_JOBS, JobStatus
from storage.db import Database
from storage.models import Channel, Job
from storage.stores.rows import as_utc, channel_ref, ensure_channel, ref_query

# In a fixed order for the SQL.
_ACTIVE = tuple(sorted(ACTIVE_JOBS))


class SqlJobStore:
    """Durable jobs: a row per job, so work survives restarts and `tsuzuki jobs` can
    show it from any process.

    A running job has an owner (host, process id) and a heartbeat. A job whose owner is
    gone is taken over by the next process (`requeue_orphaned`); a live one never is."""

    def __init__(self, db: Database, owner: JobOwner | None = None) -> None:
        self.db = db
        self._owner = owner  # None: this process (looked up when asked: fork changes it)
        # The jobs this store claimed and has not finished or released: a running job
        # owned by this very process id but not held here belongs to an earlier process
        # whose id this one got again (a restarted container), so it is orphaned.
        self._held: set[int] = set()

    @property
    def owner(self) -> JobOwner:
        return self._owner or JobOwner.this_process()

    async def enqueue(
        self, kind: str, ref: ChannelRef | None, payload: dict[str, Any], priority: int = 0
    ) -> JobInfo:
        async with self.db.write() as session:
            channel_id = (await ensure_channel(session, ref, "")).id if ref else None
            existing = (
                await session.scalars(
                    select(Job).where(
                        Job.kind == kind,
                        Job.channel_id == channel_id,
                        Job.status.in_(_ACTIVE),
                    )
                )
            ).first()
            if existing is not None:
                return await self._info(session, existing)
            now = datetime.now(UTC)
            job = Job(
                kind=kind,
                channel_id=channel_id,
                status=JobStatus.QUEUED,
                priority=priority,
                attempts=0,
                progress=0.0,
                payload=payload,
                created_at=now,
                updated_at=now,
            )
            session.add(job)
            await session.flush()
            return await self._info(session, job)

    async def claim_next(self) -> JobInfo | None:
        return await self._claim(None)

    async def claim(self, job_id: int) -> JobInfo | None:
        return await self._claim(job_id)

    async def _claim(self, job_id: int | None) -> JobInfo | None:
        async with self.db.write() as session:
            query = (
                select(Job)
                .where(Job.status == JobStatus.QUEUED)
                .order_by(Job.priority.desc(), Job.id)
                .limit(1)
            )
            if job_id is not None:
                query = query.where(Job.id == job_id)
            if not self.db.is_sqlite:
                # Two bot processes on one PostgreSQL never take the same job.
                query = query.with_for_update(skip_locked=True)
            job = (await session.scalars(query)).first()
            if job is None:
                return None
            owner = self.owner
            job.status = JobStatus.RUNNING
            job.attempts += 1
            job.started_at = job.updated_at = job.heartbeat_at = datetime.now(UTC)
            job.owner_host, job.owner_pid = owner.host, owner.pid
            job.error = None
            self._held.add(job.id)
            return await self._info(session, job)

    async def heartbeat(self, job_id: int) -> bool:
        async with self.db.write() as session:
            res = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.RUNNING, self._mine())
                .values(heartbeat_at=datetime.now(UTC))
            )
            return bool(res.rowcount == 1)  # type: ignore[attr-defined]

    async def release(self, job_id: int) -> None:
        self._held.discard(job_id)
        async with self.db.write() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.RUNNING, self._mine())
                .values(**_requeued())
            )

    async def set_progress(self, job_id: int, progress: float) -> None:
        # Progress is a sign of life too: the heartbeat goes with it.
        now = datetime.now(UTC)
        async with self.db.write() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id, self._not_others())
                .values(progress=progress, updated_at=now, heartbeat_at=now)
            )

    async def set_payload(self, job_id: int, payload: dict[str, Any]) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id, self._not_others())
                .values(payload=payload, updated_at=datetime.now(UTC))
            )

    async def finish(self, job_id: int, status: JobStatus, error: str | None = None) -> None:
        """Records how the job ended, unless another process has taken it over since."""
        self._held.discard(job_id)
        now = datetime.now(UTC)
        values: dict[str, Any] = {"status": status, "error": error, "finished_at": now}
        values["updated_at"] = now
        if status == JobStatus.SUCCEEDED:
            values["progress"] = 1.0
        async with self.db.write() as session:
            await session.execute(
                update(Job).where(Job.id == job_id, self._not_others()).values(**values)
            )

    async def requeue_orphaned(self, stale_after_s: float) -> list[JobInfo]:
        taken = []
        for job in await self.orphaned(stale_after_s):
            if await self.take_over(job):
                taken.append(job)
        return taken

    async def orphaned(self, stale_after_s: float) -> list[JobInfo]:
        """Running jobs whose owner is gone, as they are now: silent (no heartbeat) for
        longer than `stale_after_s`, whatever the host, or gone by `is_orphaned`."""
        now = datetime.now(UTC)
        async with self.db.read() as session:
            rows = list(await session.scalars(select(Job).where(Job.status == JobStatus.RUNNING)))
            found = []
            for row in rows:
                last_seen = as_utc(row.heartbeat_at or row.updated_at)
                stale = (now - last_seen).total_seconds() > stale_after_s
                if stale or self.is_orphaned(row.id, _owner(row)):
                    found.append(await self._info(session, row))
            return found

    def is_orphaned(self, job_id: int, owner: JobOwner | None) -> bool:
        """Whether a running job's owner is gone, as far as this host can tell without
        the heartbeat: no owner (left by a version before owners); an owner on this host
        whose process has ended; this very process id, but the job is not one this store
        holds (an earlier process whose id this one got again). Owners on other hosts
        are judged by their heartbeat alone."""
        me = self.owner
        if owner is None:
            return True
        if owner.host != me.host:
            return False
        if owner.pid == me.pid:
            return job_id not in self._held
        return process_alive(owner.pid) is False

    async def take_over(self, job: JobInfo) -> bool:
        """Puts an orphaned job back in the queue, if it is still as it was read: the
        same owner and heartbeat. Whoever changed it since (a heartbeat, another taker
        who queued or claimed it) wins, and this returns False."""
        owner_host = job.owner.host if job.owner else None
        owner_pid = job.owner.pid if job.owner else None
        async with self.db.write() as session:
            res = await session.execute(
                update(Job)
                .where(
                    Job.id == job.id,
                    Job.status == JobStatus.RUNNING,
                    Job.owner_host.is_not_distinct_from(owner_host),
                    Job.owner_pid.is_not_distinct_from(owner_pid),
                    Job.heartbeat_at.is_not_distinct_from(job.heartbeat_at),
                )
                .values(**_requeued())
            )
            return bool(res.rowcount == 1)  # type: ignore[attr-defined]

    def _mine(self) -> Any:
        owner = self.owner
        return and_(Job.owner_host == owner.host, Job.owner_pid == owner.pid)

    def _not_others(self) -> Any:
        """Owned by this process, or by nobody (a job run without being claimed)."""
        return or_(Job.owner_pid.is_(None), self._mine())

    async def recent(self, limit: int = 50) -> list[JobInfo]:
        async with self.db.read() as session:
            rows = list(await session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)))
            return [await self._info(session, row) for row in rows]

    @staticmethod
    async def _info(session: AsyncSession, job: Job) -> JobInfo:
        ref = None
        if job.channel_id is not None:
            row = (
                await session.execute(ref_query().where(Channel.id == job.channel_id))
            ).one_or_none()
            if row is not None:
                ref = channel_ref(*row)
        return job_info(job, ref)


def job_info(job: Job, ref: ChannelRef | None) -> JobInfo:
    return JobInfo(
        id=job.id,
        kind=job.kind,
        channel=ref,
        status=JobStatus(job.status),
        priority=job.priority,
        attempts=job.attempts,
        progress=job.progress,
        payload=dict(job.payload or {}),
        error=job.error,
        created_at=as_utc(job.created_at),
        started_at=as_utc(job.started_at) if job.started_at else None,
        finished_at=as_utc(job.finished_at) if job.finished_at else None,
        owner=_owner(job),
        heartbeat_at=as_utc(job.heartbeat_at) if job.heartbeat_at else None,
    )


def _owner(job: Job) -> JobOwner | None:
    """The process that runs the job, or ran it last; None when nobody holds it."""
    if job.owner_host is None or job.owner_pid is None:
        return None
    return JobOwner(job.owner_host, job.owner_pid)


def _requeued() -> dict[str, Any]:
    """A job row's values once it is back in the queue, owned by nobody."""
    return {
        "status": JobStatus.QUEUED,
        "owner_host": None,
        "owner_pid": None,
        "heartbeat_at": None,
        "updated_at": datetime.now(UTC),
    }
