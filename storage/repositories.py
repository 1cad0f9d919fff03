"""The stores the core's ports ask for, on SQLAlchemy (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import Author, ChannelRef, ChatMessage, ModelVersionInfo
from bot.ports import ChannelInfo, ImportBatch, ImportCounts
from storage.db import Database
from storage.models import AuditEntry, Channel, Message, ModelVersion, User, Workspace

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

    async def audit(self, ref: ChannelRef) -> list[AuditEntry]:
        async with self.db.read() as session:
            rows = await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.channel_id == _channel_id_query(ref))
                .order_by(AuditEntry.id)
            )
            return list(rows)


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
    )
