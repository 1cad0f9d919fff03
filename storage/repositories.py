"""The stores the core's ports ask for, on SQLAlchemy (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Select, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import Author, ChannelRef, ChatMessage, ModelVersionInfo, Platform
from bot.ports import ChannelInfo, ImportBatch, ImportCounts, JobInfo
from storage.db import Database
from storage.models import AuditEntry, Channel, Job, Message, ModelVersion, User, Workspace

# Rows per INSERT statement in bulk imports: large enough to amortise round trips,
# small enough to stay under PostgreSQL's 32767 bind parameters (8 columns a row).
BULK_CHUNK = 2000


def as_utc(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _insert(session: AsyncSession, table: Any) -> Any:
    """INSERT that supports on_conflict_do_nothing on either backend."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _ref(platform: str, workspace: str, channel: str) -> ChannelRef:
    """A ChannelRef from stored columns (the platform was validated on the way in)."""
    return ChannelRef(cast(Platform, platform), workspace, channel)


def _channel_query(ref: ChannelRef) -> Select[Channel]:
    return (
        select(Channel)
        .join(Workspace, Channel.workspace_id == Workspace.id)
        .where(
            Workspace.platform == ref.platform,
            Workspace.external_id == ref.workspace,
            Channel.external_id == ref.channel,
        )
    )


def _channel_id_query(ref: ChannelRef) -> Any:
    return _channel_query(ref).with_only_columns(Channel.id).scalar_subquery()


async def _ensure_workspace(session: AsyncSession, platform: str, external_id: str) -> int:
    await session.execute(
        _insert(session, Workspace)
        .values(platform=platform, external_id=external_id, name="", created_at=datetime.now(UTC))
        .on_conflict_do_nothing()
    )
    ws_id = await session.scalar(
        select(Workspace.id).where(
            Workspace.platform == platform, Workspace.external_id == external_id
        )
    )
    assert ws_id is not None
    return ws_id


async def _ensure_channel(session: AsyncSession, ref: ChannelRef, name: str) -> Channel:
    ws_id = await _ensure_workspace(session, ref.platform, ref.workspace)
    now = datetime.now(UTC)
    await session.execute(
        _insert(session, Channel)
        .values(
            workspace_id=ws_id,
            external_id=ref.channel,
            name=name or ref.channel,
            training_enabled=False,
            sampling={},
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )
    channel = (await session.scalars(_channel_query(ref))).one()
    if name and channel.name != name:
        channel.name = name
    return channel


def _info(channel: Channel, ref: ChannelRef) -> ChannelInfo:
    return ChannelInfo(
        id=channel.id,
        ref=ref,
        name=channel.name,
        training_enabled=channel.training_enabled,
        sampling=dict(channel.sampling or {}),
    )


class SqlChannelStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def ensure(self, ref: ChannelRef, name: str = "") -> ChannelInfo:
        existing = await self.get(ref)
        if existing is not None and (not name or existing.name == name):
            return existing
        async with self.db.write() as session:
            return _info(await _ensure_channel(session, ref, name), ref)

    async def get(self, ref: ChannelRef) -> ChannelInfo | None:
        async with self.db.read() as session:
            channel = (await session.scalars(_channel_query(ref))).one_or_none()
            return None if channel is None else _info(channel, ref)

    async def set_sampling(
        self, ref: ChannelRef, key: str, value: Any, *, actor: str
    ) -> tuple[Any, Any]:
        async with self.db.write() as session:
            channel = await _ensure_channel(session, ref, "")
            sampling = dict(channel.sampling or {})
            old = sampling.get(key)
            if value is None:
                sampling.pop(key, None)
            else:
                sampling[key] = value
            # A new dict, so the JSON column is seen as changed.
            channel.sampling = sampling
            channel.updated_at = datetime.now(UTC)
            session.add(
                AuditEntry(
                    actor=actor,
                    channel_id=channel.id,
                    action="settings.set" if value is not None else "settings.reset",
                    key=key,
                    old_value=json.dumps(old),
                    new_value=json.dumps(value),
                    at=datetime.now(UTC),
                )
            )
            return old, value

    async def set_training(self, ref: ChannelRef, enabled: bool, *, actor: str) -> bool:
        """Turns training consent on or off (audited); returns the previous value."""
        async with self.db.write() as session:
            channel = await _ensure_channel(session, ref, "")
            old = channel.training_enabled
            channel.training_enabled = enabled
            channel.updated_at = datetime.now(UTC)
            session.add(
                AuditEntry(
                    actor=actor,
                    channel_id=channel.id,
                    action="training.on" if enabled else "training.off",
                    old_value=json.dumps(old),
                    new_value=json.dumps(enabled),
                    at=datetime.now(UTC),
                )
            )
            return old

    async def training_channels(self) -> list[ChannelRef]:
        """Channels whose admins turned training on."""
        async with self.db.read() as session:
            rows = await session.execute(
                select(Workspace.platform, Workspace.external_id, Channel.external_id)
                .join(Workspace, Channel.workspace_id == Workspace.id)
                .where(Channel.training_enabled.is_(True))
                .order_by(Channel.id)
            )
            return [_ref(*row) for row in rows]

    async def audit(self, ref: ChannelRef) -> list[AuditEntry]:
        async with self.db.read() as session:
            rows = await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.channel_id == _channel_id_query(ref))
                .order_by(AuditEntry.id)
            )
            return list(rows)


class SqlUserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def set_opted_out(
        self, platform: str, workspace: str, user_id: str, opted_out: bool, *, actor: str
    ) -> int:
        """A user's own choice. Opting out forgets every stored message of theirs in
        the workspace (returns how many) and keeps new ones out."""
        async with self.db.write() as session:
            ws_id = await _ensure_workspace(session, platform, workspace)
            await session.execute(
                _insert(session, User)
                .values(
                    workspace_id=ws_id,
                    external_id=user_id,
                    display_name="",
                    is_bot=False,
                    opted_out=opted_out,
                    created_at=datetime.now(UTC),
                )
                .on_conflict_do_nothing()
            )
            await session.execute(
                update(User)
                .where(User.workspace_id == ws_id, User.external_id == user_id)
                .values(opted_out=opted_out)
            )
            session.add(
                AuditEntry(
                    actor=actor,
                    action="user.optout" if opted_out else "user.optin",
                    key=f"{platform}:{workspace}/{user_id}",
                    new_value=json.dumps(opted_out),
                    at=datetime.now(UTC),
                )
            )
            if not opted_out:
                return 0
            user_ids = select(User.id).where(
                User.workspace_id == ws_id, User.external_id == user_id
            )
            res = await session.execute(delete(Message).where(Message.author_id.in_(user_ids)))
            return int(res.rowcount)  # type: ignore[attr-defined]

    async def is_opted_out(self, platform: str, workspace: str, user_id: str) -> bool:
        async with self.db.read() as session:
            value = await session.scalar(
                select(User.opted_out)
                .join(Workspace, User.workspace_id == Workspace.id)
                .where(
                    Workspace.platform == platform,
                    Workspace.external_id == workspace,
                    User.external_id == user_id,
                )
            )
            return bool(value)


class SqlMessageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, message: ChatMessage) -> bool:
        batch = ImportBatch(messages=[message])
        counts = await self.add_batch(batch)
        return counts[message.channel].imported == 1

    async def add_batch(self, batch: ImportBatch) -> dict[ChannelRef, ImportCounts]:
        """Stores every message of the batch in one transaction: all or nothing.
        Messages already stored (same channel and external id) are counted as
        duplicates and left as they are."""
        refs = {m.channel for m in batch.messages} | set(batch.channel_names)
        result: dict[ChannelRef, ImportCounts] = {}
        async with self.db.write() as session:
            channel_ids: dict[ChannelRef, int] = {}
            for ref in sorted(refs):
                channel = await _ensure_channel(session, ref, batch.channel_names.get(ref, ""))
                channel_ids[ref] = channel.id
            user_ids = await self._ensure_users(session, batch.messages)
            for ref in sorted(refs):
                rows = [
                    {
                        "channel_id": channel_ids[ref],
                        "external_id": m.external_id,
                        "author_id": user_ids[
                            (m.channel.platform, m.channel.workspace, m.author.id)
                        ],
                        "text": m.text,
                        "created_at": as_utc(m.created_at),
                        "edited_at": as_utc(m.edited_at) if m.edited_at else None,
                        "is_bot": m.author.is_bot,
                    }
                    for m in batch.messages
                    if m.channel == ref
                ]
                imported = 0
                for start in range(0, len(rows), BULK_CHUNK):
                    chunk = rows[start : start + BULK_CHUNK]
                    # RETURNING lists only the rows actually inserted, which stays exact
                    # even while other transactions insert into the same channel.
                    inserted = await session.scalars(
                        _insert(session, Message).on_conflict_do_nothing().returning(Message.id),
                        chunk,
                    )
                    imported += len(inserted.all())
                result[ref] = ImportCounts(imported=imported, duplicates=len(rows) - imported)
        return result

    @staticmethod
    async def _ensure_users(
        session: AsyncSession, messages: Iterable[ChatMessage]
    ) -> dict[tuple[str, str, str], int]:
        """(platform, workspace, user external id) → users.id, creating missing users."""
        wanted: dict[tuple[str, str], dict[str, Author]] = {}
        for m in messages:
            wanted.setdefault((m.channel.platform, m.channel.workspace), {})[m.author.id] = m.author
        ids: dict[tuple[str, str, str], int] = {}
        for (platform, workspace), authors in wanted.items():
            ws_id = await _ensure_workspace(session, platform, workspace)
            rows = [
                {
                    "workspace_id": ws_id,
                    "external_id": a.id,
                    "display_name": a.name[:200],
                    "is_bot": a.is_bot,
                    "opted_out": False,
                    "created_at": datetime.now(UTC),
                }
                for a in authors.values()
            ]
            for start in range(0, len(rows), BULK_CHUNK):
                await session.execute(
                    _insert(session, User)
                    .values(rows[start : start + BULK_CHUNK])
                    .on_conflict_do_nothing()
                )
            external = list(authors)
            for start in range(0, len(external), BULK_CHUNK):
                found = await session.execute(
                    select(User.external_id, User.id).where(
                        User.workspace_id == ws_id,
                        User.external_id.in_(external[start : start + BULK_CHUNK]),
                    )
                )
                for ext, uid in found:
                    ids[(platform, workspace, ext)] = uid
        return ids

    async def edit(self, ref: ChannelRef, external_id: str, text: str, at: datetime) -> bool:
        async with self.db.write() as session:
            res = await session.execute(
                update(Message)
                .where(
                    Message.channel_id == _channel_id_query(ref),
                    Message.external_id == external_id,
                )
                .values(text=text, edited_at=as_utc(at))
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def delete(self, ref: ChannelRef, external_ids: Sequence[str]) -> int:
        async with self.db.write() as session:
            res = await session.execute(
                delete(Message).where(
                    Message.channel_id == _channel_id_query(ref),
                    Message.external_id.in_(list(external_ids)),
                )
            )
            return int(res.rowcount)  # type: ignore[attr-defined]

    async def recent(self, ref: ChannelRef, limit: int) -> list[ChatMessage]:
        if limit <= 0:
            return []
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(Message, User)
                    .outerjoin(User, Message.author_id == User.id)
                    .where(Message.channel_id == _channel_id_query(ref))
                    .order_by(Message.created_at.desc(), Message.id.desc())
                    .limit(limit)
                )
            ).all()
        out = [
            ChatMessage(
                channel=ref,
                external_id=msg.external_id,
                author=Author(
                    id=user.external_id if user else "",
                    name=user.display_name if user else "",
                    is_bot=msg.is_bot,
                ),
                text=msg.text,
                created_at=as_utc(msg.created_at),
                edited_at=as_utc(msg.edited_at) if msg.edited_at else None,
            )
            for msg, user in rows
        ]
        out.reverse()
        return out

    async def count(self, ref: ChannelRef) -> int:
        async with self.db.read() as session:
            n = await session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.channel_id == _channel_id_query(ref))
            )
            return int(n or 0)

    @staticmethod
    def _trainable(ref: ChannelRef, max_id: int | None = None) -> list[Any]:
        """Messages a model may learn from: people's (not bots'), and never those of
        users who opted out."""
        conditions = [
            Message.channel_id == _channel_id_query(ref),
            Message.is_bot.is_(False),
            or_(User.id.is_(None), User.opted_out.is_(False)),
        ]
        if max_id is not None:
            conditions.append(Message.id <= max_id)
        return conditions

    async def training_snapshot(self, ref: ChannelRef) -> tuple[int, int]:
        """(how many trainable messages, the newest message id): a run reads exactly
        these, however many messages arrive while it prepares its data."""
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(func.count(), func.max(Message.id))
                    .select_from(Message)
                    .outerjoin(User, Message.author_id == User.id)
                    .where(*self._trainable(ref))
                )
            ).one()
            return int(row[0] or 0), int(row[1] or 0)

    async def count_trainable_after(self, ref: ChannelRef, after_id: int) -> int:
        """Trainable messages stored after message `after_id` (0: all of them)."""
        async with self.db.read() as session:
            n = await session.scalar(
                select(func.count())
                .select_from(Message)
                .outerjoin(User, Message.author_id == User.id)
                .where(*self._trainable(ref), Message.id > after_id)
            )
            return int(n or 0)

    async def iter_training_texts(
        self, ref: ChannelRef, max_id: int, page_size: int = 5000
    ) -> AsyncIterator[list[tuple[str, str]]]:
        """Pages of (author name, text), oldest first, up to message `max_id`. Keyset
        pagination keeps each query cheap and memory flat on channels of millions."""
        after: tuple[Any, int] | None = None
        while True:
            query = (
                select(Message.created_at, Message.id, User.display_name, Message.text)
                .outerjoin(User, Message.author_id == User.id)
                .where(*self._trainable(ref, max_id))
                .order_by(Message.created_at, Message.id)
                .limit(page_size)
            )
            if after is not None:
                query = query.where(tuple_(Message.created_at, Message.id) > tuple_(*after))
            async with self.db.read() as session:
                rows = (await session.execute(query)).all()
            if not rows:
                return
            yield [(name or "", text) for _, _, name, text in rows]
            after = (rows[-1][0], rows[-1][1])


class SqlModelRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def versions(self, ref: ChannelRef) -> list[ModelVersionInfo]:
        async with self.db.read() as session:
            rows = await session.scalars(
                select(ModelVersion)
                .where(ModelVersion.channel_id == _channel_id_query(ref))
                .order_by(ModelVersion.version)
            )
            return [_version_info(ref, row) for row in rows]

    async def active(self, ref: ChannelRef) -> ModelVersionInfo | None:
        async with self.db.read() as session:
            row = (
                await session.scalars(
                    select(ModelVersion).where(
                        ModelVersion.channel_id == _channel_id_query(ref),
                        ModelVersion.status == "active",
                    )
                )
            ).first()
            return None if row is None else _version_info(ref, row)

    async def next_version(self, ref: ChannelRef) -> int:
        async with self.db.read() as session:
            n = await session.scalar(
                select(func.max(ModelVersion.version)).where(
                    ModelVersion.channel_id == _channel_id_query(ref)
                )
            )
            return int(n or 0) + 1

    async def add(self, info: ModelVersionInfo) -> None:
        """Records a finished version as a candidate (its files are already complete)."""
        async with self.db.write() as session:
            channel = await _ensure_channel(session, info.channel, "")
            session.add(
                ModelVersion(
                    channel_id=channel.id,
                    version=info.version,
                    base_model=info.base_model,
                    method=info.method,
                    path=info.path,
                    train_loss=info.train_loss,
                    eval_loss=info.eval_loss,
                    eval_perplexity=info.eval_perplexity,
                    tokens_seen=info.tokens_seen,
                    status="candidate",
                    note=info.note,
                    last_message_id=info.last_message_id,
                    eval_bits_per_char=info.eval_bits_per_char,
                    markov_bits_per_char=info.markov_bits_per_char,
                    created_at=as_utc(info.created_at),
                )
            )

    async def activate(
        self, ref: ChannelRef, version: int, *, actor: str, note: str | None = None
    ) -> ModelVersionInfo | None:
        """Makes `version` the one that answers, in one transaction with retiring the
        previous one; None if the channel has no such version."""
        async with self.db.write() as session:
            rows = list(
                await session.scalars(
                    select(ModelVersion).where(ModelVersion.channel_id == _channel_id_query(ref))
                )
            )
            target = next((r for r in rows if r.version == version), None)
            if target is None:
                return None
            previous = next((r for r in rows if r.status == "active"), None)
            for row in rows:
                if row.status == "active" and row is not target:
                    row.status = "retired"
            target.status = "active"
            target.activated_at = datetime.now(UTC)
            if note is not None:
                target.note = note
            session.add(
                AuditEntry(
                    actor=actor,
                    channel_id=target.channel_id,
                    action="model.activate",
                    old_value=json.dumps(previous.version if previous else None),
                    new_value=json.dumps(version),
                    at=datetime.now(UTC),
                )
            )
            return _version_info(ref, target)

    async def previous_active(self, ref: ChannelRef) -> ModelVersionInfo | None:
        """The version that was active before the current one (for rollback)."""
        async with self.db.read() as session:
            row = (
                await session.scalars(
                    select(ModelVersion)
                    .where(
                        ModelVersion.channel_id == _channel_id_query(ref),
                        ModelVersion.status != "active",
                        ModelVersion.activated_at.is_not(None),
                    )
                    .order_by(ModelVersion.activated_at.desc())
                )
            ).first()
            return None if row is None else _version_info(ref, row)

    async def set_note(self, ref: ChannelRef, version: int, note: str) -> None:
        await self._update(ref, version, note=note)

    async def set_quality(
        self, ref: ChannelRef, version: int, bits_per_char: float | None, markov: float | None
    ) -> None:
        """The version's held-out figure and the Markov chain's, measured again."""
        await self._update(
            ref, version, eval_bits_per_char=bits_per_char, markov_bits_per_char=markov
        )

    async def _update(self, ref: ChannelRef, version: int, **values: Any) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(ModelVersion)
                .where(
                    ModelVersion.channel_id == _channel_id_query(ref),
                    ModelVersion.version == version,
                )
                .values(**values)
            )

    async def remove(self, ref: ChannelRef, version: int) -> None:
        async with self.db.write() as session:
            await session.execute(
                delete(ModelVersion).where(
                    ModelVersion.channel_id == _channel_id_query(ref),
                    ModelVersion.version == version,
                    ModelVersion.status != "active",
                )
            )


def _version_info(ref: ChannelRef, row: ModelVersion) -> ModelVersionInfo:
    return ModelVersionInfo(
        channel=ref,
        version=row.version,
        base_model=row.base_model,
        method=row.method,
        path=row.path,
        status=row.status,
        created_at=as_utc(row.created_at),
        train_loss=row.train_loss,
        eval_loss=row.eval_loss,
        eval_perplexity=row.eval_perplexity,
        tokens_seen=row.tokens_seen,
        note=row.note,
        last_message_id=row.last_message_id,
        eval_bits_per_char=row.eval_bits_per_char,
        markov_bits_per_char=row.markov_bits_per_char,
    )


ACTIVE_JOB_STATES = ("queued", "running")


class SqlJobStore:
    """Durable jobs: a row per job, so work survives restarts and `tsuzuki jobs` can
    show it from any process."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(
        self, kind: str, ref: ChannelRef | None, payload: dict[str, Any], priority: int = 0
    ) -> JobInfo:
        async with self.db.write() as session:
            channel_id = (await _ensure_channel(session, ref, "")).id if ref else None
            existing = (
                await session.scalars(
                    select(Job).where(
                        Job.kind == kind,
                        Job.channel_id == channel_id,
                        Job.status.in_(ACTIVE_JOB_STATES),
                    )
                )
            ).first()
            if existing is not None:
                return await self._info(session, existing)
            now = datetime.now(UTC)
            job = Job(
                kind=kind,
                channel_id=channel_id,
                status="queued",
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
                .where(Job.status == "queued")
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
            job.status = "running"
            job.attempts += 1
            job.started_at = job.updated_at = datetime.now(UTC)
            job.error = None
            return await self._info(session, job)

    async def set_progress(self, job_id: int, progress: float) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(progress=progress, updated_at=datetime.now(UTC))
            )

    async def set_payload(self, job_id: int, payload: dict[str, Any]) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(payload=payload, updated_at=datetime.now(UTC))
            )

    async def finish(self, job_id: int, status: str, error: str | None = None) -> None:
        now = datetime.now(UTC)
        values: dict[str, Any] = {"status": status, "error": error, "finished_at": now}
        values["updated_at"] = now
        if status == "succeeded":
            values["progress"] = 1.0
        async with self.db.write() as session:
            await session.execute(update(Job).where(Job.id == job_id).values(**values))

    async def requeue_interrupted(self) -> int:
        async with self.db.write() as session:
            res = await session.execute(
                update(Job)
                .where(Job.status == "running")
                .values(status="queued", updated_at=datetime.now(UTC))
            )
            return int(res.rowcount)  # type: ignore[attr-defined]

    async def recent(self, limit: int = 50) -> list[JobInfo]:
        async with self.db.read() as session:
            rows = list(await session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)))
            return [await self._info(session, row) for row in rows]

    @staticmethod
    async def _info(session: AsyncSession, job: Job) -> JobInfo:
        ref = None
        if job.channel_id is not None:
            row = (
                await session.execute(
                    select(Workspace.platform, Workspace.external_id, Channel.external_id)
                    .join(Workspace, Channel.workspace_id == Workspace.id)
                    .where(Channel.id == job.channel_id)
                )
            ).one_or_none()
            if row is not None:
                ref = _ref(*row)
        return JobInfo(
            id=job.id,
            kind=job.kind,
            channel=ref,
            status=job.status,
            priority=job.priority,
            attempts=job.attempts,
            progress=job.progress,
            payload=dict(job.payload or {}),
            error=job.error,
            created_at=as_utc(job.created_at),
            started_at=as_utc(job.started_at) if job.started_at else None,
            finished_at=as_utc(job.finished_at) if job.finished_at else None,
        )
