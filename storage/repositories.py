"""The stores the core's ports ask for, on SQLAlchemy (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from itertools import chain
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Select, and_, case, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import Author, ChannelRef, ChatMessage, ModelVersionInfo, Platform
from bot.ports import ChannelInfo, ImportBatch, ImportCounts, JobInfo, JobOwner, TrainingText
from storage.db import Database
from storage.models import (
    AuditEntry,
    Channel,
    Job,
    Message,
    ModelVersion,
    User,
    VoiceConsent,
    Workspace,
)

# Rows per INSERT statement in bulk imports: large enough to amortise round trips,
# small enough to stay under PostgreSQL's 32767 bind parameters (8 columns a row).
BULK_CHUNK = 2000
# A model version trained on messages that were forgotten since (a member opted out):
# never served, activated, rolled back to or trained on again; its files are deleted.
FORGOTTEN = "forgotten"
# A version an admin's `/models reset` retired: never active again, and the channel is
# due for training on its whole history, from the base.
RESET = "reset"
# The audit entry a channel gets each time a member's messages in it are forgotten.
# How many it has is the channel's "forget epoch" (SqlModelRegistry.forget_epoch).
FORGET_ACTION = "messages.forget"


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


async def _ensure_user(session: AsyncSession, ws_id: int, external_id: str) -> int:
    await session.execute(
        _insert(session, User)
        .values(
            workspace_id=ws_id,
            external_id=external_id,
            display_name="",
            is_bot=False,
            opted_out=False,
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing()
    )
    uid = await session.scalar(
        select(User.id).where(User.workspace_id == ws_id, User.external_id == external_id)
    )
    assert uid is not None
    return uid


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
            await _ensure_user(session, ws_id, user_id)
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
            # Forgotten means no voice either, in any channel of the workspace.
            await session.execute(delete(VoiceConsent).where(VoiceConsent.user_id.in_(user_ids)))
            # Every version trained on these messages goes with them, in this transaction.
            firsts = await session.execute(
                select(Message.channel_id, func.min(Message.id), func.count())
                .where(Message.author_id.in_(user_ids))
                .group_by(Message.channel_id)
            )
            for channel_id, first_id, count in firsts.all():
                session.add(
                    AuditEntry(
                        actor=actor,
                        channel_id=channel_id,
                        action=FORGET_ACTION,
                        key=f"{platform}:{workspace}/{user_id}",
                        new_value=json.dumps(count),
                        at=datetime.now(UTC),
                    )
                )
                await _forget_versions(session, channel_id, first_id, actor)
            res = await session.execute(delete(Message).where(Message.author_id.in_(user_ids)))
            return int(res.rowcount)  # type: ignore[attr-defined]

    async def set_voice(self, ref: ChannelRef, user_id: str, on: bool, *, actor: str) -> None:
        """A member's own consent to being written as in this channel (audited)."""
        async with self.db.write() as session:
            channel = await _ensure_channel(session, ref, "")
            uid = await _ensure_user(session, channel.workspace_id, user_id)
            if on:
                await session.execute(
                    _insert(session, VoiceConsent)
                    .values(channel_id=channel.id, user_id=uid, created_at=datetime.now(UTC))
                    .on_conflict_do_nothing()
                )
            else:
                await session.execute(
                    delete(VoiceConsent).where(
                        VoiceConsent.channel_id == channel.id, VoiceConsent.user_id == uid
                    )
                )
            session.add(
                AuditEntry(
                    actor=actor,
                    channel_id=channel.id,
                    action="voice.on" if on else "voice.off",
                    key=f"{ref.platform}:{ref.workspace}/{user_id}",
                    new_value=json.dumps(on),
                    at=datetime.now(UTC),
                )
            )

    async def has_voice(self, ref: ChannelRef, user_id: str) -> bool:
        async with self.db.read() as session:
            found = await session.scalar(
                select(VoiceConsent.id)
                .join(User, VoiceConsent.user_id == User.id)
                .where(
                    VoiceConsent.channel_id == _channel_id_query(ref),
                    User.external_id == user_id,
                    User.opted_out.is_(False),
                )
            )
            return found is not None

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


# Rows per driver call in add_batch: few enough calls to cost nothing, and a progress
# report after each.
_IMPORT_CHUNK = 10_000
# SQLAlchemy's storage format for DateTime on SQLite (sqlite.DATETIME).
_SQLITE_TIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"
_MESSAGE_COLUMNS = "channel_id, external_id, author_id, text, created_at, edited_at, is_bot"
# Rows per SQLite INSERT: one statement for many rows costs less than a statement per
# row; 140 rows of 7 columns stay under the 999 parameters older SQLite allows.
_SQLITE_ROWS_PER_INSERT = 140


@cache
def _sqlite_insert(rows: int) -> str:
    # ON CONFLICT names the one constraint a re-import meets, so any other failure (a
    # NULL text…) still raises and rolls the batch back, as INSERT OR IGNORE would not.
    # SQLite inserts the VALUES rows in order: ids follow the file, and a message named
    # twice in one statement is left out the second time.
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO {Message.__tablename__} ({_MESSAGE_COLUMNS}) VALUES {values} "
        "ON CONFLICT (channel_id, external_id) DO NOTHING"
    )


# One statement per chunk, its columns sent as arrays: no per-row parameters, no
# 32767-parameter limit. ORDER BY keeps ids in file order, as recent() breaks ties
# on them.
_POSTGRES_INSERT = (
    f"INSERT INTO {Message.__tablename__} ({_MESSAGE_COLUMNS}) "
    "SELECT $1::integer, e, a, t, c, d, b FROM unnest("
    "$2::varchar[], $3::integer[], $4::text[], $5::timestamptz[], $6::timestamptz[], "
    "$7::boolean[]) WITH ORDINALITY AS r(e, a, t, c, d, b, n) "
)
# ON CONFLICT takes a speculative-insertion lock per row, which made the insert about
# 1.7 times slower than an anti-join that leaves out what is stored. The anti-join
# needs a savepoint (see _insert_postgresql), two more round trips that only pay off
# for chunks of at least this many rows: live ingest stores one message at a time.
_POSTGRES_ANTI_JOIN_MIN_ROWS = 64
_POSTGRES_INSERT_NEW = (
    _POSTGRES_INSERT + f"WHERE NOT EXISTS (SELECT 1 FROM {Message.__tablename__} m "
    "WHERE m.channel_id = $1 AND m.external_id = r.e) ORDER BY n"
)
# For a chunk the anti-join cannot do alone: one that names a message twice, or one
# racing another writer that stores the same message.
_POSTGRES_INSERT_ANY = (
    _POSTGRES_INSERT + "ORDER BY n ON CONFLICT (channel_id, external_id) DO NOTHING"
)

# (session, channel id, messages, author external id → users.id) → rows inserted
_BulkInsert = Callable[[AsyncSession, int, list[ChatMessage], dict[str, int]], Awaitable[int]]


def _group_batch(
    messages: list[ChatMessage],
) -> tuple[dict[ChannelRef, list[ChatMessage]], dict[tuple[str, str], dict[str, Author]]]:
    """Each channel's messages in batch order, and each (platform, workspace)'s
    authors by external id (the last one seen wins, as it names the user)."""
    groups: dict[ChannelRef, list[ChatMessage]] = {}
    authors: dict[tuple[str, str], dict[str, Author]] = {}
    ref: ChannelRef | None = None
    group: list[ChatMessage] = []
    seen: dict[str, Author] = {}
    for m in messages:
        # Parsers share one ChannelRef object per channel: the lookups run once per
        # run of messages, not once per message.
        if m.channel is not ref:
            ref = m.channel
            group = groups.setdefault(ref, [])
            seen = authors.setdefault((ref.platform, ref.workspace), {})
        group.append(m)
        seen[m.author.id] = m.author
    return groups, authors


def _bulk_insert(session: AsyncSession) -> _BulkInsert:
    # Raw driver statements: building ORM parameter dicts and processing them row by
    # row was most of an import's time.
    if session.get_bind().dialect.name == "postgresql":
        return _insert_postgresql
    return _insert_sqlite


async def _insert_sqlite(
    session: AsyncSession, channel_id: int, messages: list[ChatMessage], author_ids: dict[str, int]
) -> int:
    rows = [
        (
            channel_id,
            m.external_id,
            author_ids[m.author.id],
            m.text,
            _sqlite_time(m.created_at),
            None if m.edited_at is None else _sqlite_time(m.edited_at),
            m.author.is_bot,
        )
        for m in messages
    ]
    connection = await session.connection()
    per = _SQLITE_ROWS_PER_INSERT
    whole = len(rows) - len(rows) % per
    statements = [tuple(chain.from_iterable(rows[i : i + per])) for i in range(0, whole, per)]
    inserted = 0
    # sqlite3 sums executemany's row counts, and a row ON CONFLICT left out counts 0.
    if statements:
        inserted += (await connection.exec_driver_sql(_sqlite_insert(per), statements)).rowcount
    if whole < len(rows):
        inserted += (await connection.exec_driver_sql(_sqlite_insert(1), rows[whole:])).rowcount
    return inserted


def _sqlite_time(dt: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores for `dt` in UTC, in the same
    format; the fastest way to it (an aware datetime's isoformat is slower)."""
    if dt.tzinfo is not UTC:
        dt = as_utc(dt)
    return _SQLITE_TIME % (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond)


async def _insert_postgresql(
    session: AsyncSession, channel_id: int, messages: list[ChatMessage], author_ids: dict[str, int]
) -> int:
    columns = (
        [m.external_id for m in messages],
        [author_ids[m.author.id] for m in messages],
        [m.text for m in messages],
        # Aware times: asyncpg would read naive ones as the machine's local time.
        [as_utc(m.created_at) for m in messages],
        [None if m.edited_at is None else as_utc(m.edited_at) for m in messages],
        [m.author.is_bot for m in messages],
    )
    connection = await session.connection()
    params = (channel_id, *columns)
    if len(messages) >= _POSTGRES_ANTI_JOIN_MIN_ROWS:
        try:
            async with connection.begin_nested():
                result = await connection.exec_driver_sql(_POSTGRES_INSERT_NEW, params)
            return int(result.rowcount)
        except IntegrityError:
            # Back to the savepoint. A failure that is no conflict (a NULL text…) is
            # raised again below and rolls the whole batch back.
            pass
    result = await connection.exec_driver_sql(_POSTGRES_INSERT_ANY, params)
    # From the command tag "INSERT 0 n": the rows this statement inserted, exact even
    # while other transactions write to the same channel.
    return int(result.rowcount)


class SqlMessageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, message: ChatMessage) -> bool:
        batch = ImportBatch(messages=[message])
        counts = await self.add_batch(batch)
        return counts[message.channel].imported == 1

    async def add_batch(
        self, batch: ImportBatch, progress: Callable[[int, int], None] | None = None
    ) -> dict[ChannelRef, ImportCounts]:
        """Stores every message of the batch in one transaction: all or nothing.
        Messages already stored (same channel and external id) are counted as
        duplicates and left as they are. `progress`, when given, is called with
        (messages handled, messages in the batch) as the rows go in."""
        groups, authors = _group_batch(batch.messages)
        refs = sorted(set(groups) | set(batch.channel_names))
        done, total = 0, len(batch.messages)
        result: dict[ChannelRef, ImportCounts] = {}
        async with self.db.write() as session:
            channel_ids: dict[ChannelRef, int] = {}
            for ref in refs:
                channel = await _ensure_channel(session, ref, batch.channel_names.get(ref, ""))
                channel_ids[ref] = channel.id
            user_ids = await self._ensure_users(session, authors)
            opted_out = await self._opted_out(
                session, {uid for ids in user_ids.values() for uid in ids.values()}
            )
            insert = _bulk_insert(session)
            for ref in refs:
                messages = groups.get(ref, [])
                ids = user_ids.get((ref.platform, ref.workspace), {})
                kept = [m for m in messages if ids[m.author.id] not in opted_out]
                imported = 0
                for start in range(0, len(kept), _IMPORT_CHUNK):
                    chunk = kept[start : start + _IMPORT_CHUNK]
                    imported += await insert(session, channel_ids[ref], chunk, ids)
                    if progress is not None:
                        progress(done + start + len(chunk), total)
                done += len(messages)
                result[ref] = ImportCounts(
                    imported=imported,
                    duplicates=len(kept) - imported,
                    opted_out=len(messages) - len(kept),
                )
        if progress is not None:
            progress(total, total)
        return result

    @staticmethod
    async def _opted_out(session: AsyncSession, user_ids: set[int]) -> set[int]:
        """Which of these users opted out (their text is never stored again)."""
        found: set[int] = set()
        ids = sorted(user_ids)
        for start in range(0, len(ids), BULK_CHUNK):
            found.update(
                await session.scalars(
                    select(User.id).where(
                        User.id.in_(ids[start : start + BULK_CHUNK]), User.opted_out.is_(True)
                    )
                )
            )
        return found

    @staticmethod
    async def _ensure_users(
        session: AsyncSession, wanted: dict[tuple[str, str], dict[str, Author]]
    ) -> dict[tuple[str, str], dict[str, int]]:
        """(platform, workspace) → user external id → users.id, creating missing users."""
        ids: dict[tuple[str, str], dict[str, int]] = {}
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
            found = ids[platform, workspace] = {}
            external = list(authors)
            for start in range(0, len(external), BULK_CHUNK):
                rows_found = await session.execute(
                    select(User.external_id, User.id).where(
                        User.workspace_id == ws_id,
                        User.external_id.in_(external[start : start + BULK_CHUNK]),
                    )
                )
                for ext, uid in rows_found:
                    found[ext] = uid
        return ids

    async def edit(self, ref: ChannelRef, external_id: str, text: str, at: datetime) -> bool:
        async with self.db.write() as session:
            res = await session.execute(
                update(Message)
                .where(
                    Message.channel_id == _channel_id_query(ref),
                    Message.external_id == external_id,
                    # An edit older than the stored one (late, or delivered again) is stale.
                    or_(Message.edited_at.is_(None), Message.edited_at <= as_utc(at)),
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
                    .where(
                        Message.channel_id == _channel_id_query(ref),
                        # A reply's context never quotes a member who opted out.
                        or_(User.id.is_(None), User.opted_out.is_(False)),
                    )
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
    ) -> AsyncIterator[list[TrainingText]]:
        """Pages of (author name, text, voice), oldest first, up to message `max_id`;
        voice is the author's user id when they turned `/voice on` in this channel.
        Keyset pagination keeps each query cheap and memory flat on channels of
        millions."""
        after: tuple[Any, int] | None = None
        while True:
            query = (
                select(
                    Message.created_at,
                    Message.id,
                    User.display_name,
                    Message.text,
                    case((VoiceConsent.id.is_not(None), User.external_id), else_=""),
                )
                .outerjoin(User, Message.author_id == User.id)
                .outerjoin(
                    VoiceConsent,
                    and_(
                        VoiceConsent.user_id == Message.author_id,
                        VoiceConsent.channel_id == Message.channel_id,
                    ),
                )
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
            yield [(name or "", text, voice or "") for _, _, name, text, voice in rows]
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

    async def forget_epoch(self, ref: ChannelRef) -> int:
        """How many times members' messages in the channel were forgotten. A run reads
        it before it reads its data, and hands it to `add`."""
        async with self.db.read() as session:
            return await _forget_epoch(session, _channel_id_query(ref))

    async def add(self, info: ModelVersionInfo, *, forget_epoch: int | None = None) -> bool:
        """Records a finished version as a candidate (its files are already complete).
        With `forget_epoch` (what forget_epoch said before the run read its data), a
        version whose data may hold messages forgotten since is refused: nothing is
        recorded and this returns False."""
        async with self.db.write() as session:
            channel = await _ensure_channel(session, info.channel, "")
            if forget_epoch is not None:
                await _lock_channel(session, channel.id)  # see _forget_versions
                if await _forget_epoch(session, channel.id) != forget_epoch:
                    return False
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
            return True

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
            if target is None or target.status in (FORGOTTEN, RESET):
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
                        ModelVersion.status.not_in(("active", FORGOTTEN, RESET)),
                        ModelVersion.activated_at.is_not(None),
                    )
                    .order_by(ModelVersion.activated_at.desc())
                )
            ).first()
            return None if row is None else _version_info(ref, row)

    async def reset(self, ref: ChannelRef, *, actor: str) -> int:
        """Retires every version of the channel for good (status `reset`), in one
        transaction with its audit entry; returns how many."""
        async with self.db.write() as session:
            rows = list(
                await session.scalars(
                    select(ModelVersion).where(
                        ModelVersion.channel_id == _channel_id_query(ref),
                        ModelVersion.status.not_in((FORGOTTEN, RESET)),
                    )
                )
            )
            for row in rows:
                row.status = RESET
            if rows:
                session.add(
                    AuditEntry(
                        actor=actor,
                        channel_id=rows[0].channel_id,
                        action="model.reset",
                        old_value=json.dumps(sorted(r.version for r in rows)),
                        new_value=json.dumps(None),
                        at=datetime.now(UTC),
                    )
                )
            return len(rows)

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

    async def forget_epochs(self) -> list[tuple[ChannelRef, int]]:
        """Every channel whose members' messages were ever forgotten, with its epoch."""
        async with self.db.read() as session:
            rows = await session.execute(
                select(Workspace.platform, Workspace.external_id, Channel.external_id, func.count())
                .select_from(AuditEntry)
                .join(Channel, AuditEntry.channel_id == Channel.id)
                .join(Workspace, Channel.workspace_id == Workspace.id)
                .where(AuditEntry.action == FORGET_ACTION)
                .group_by(Workspace.platform, Workspace.external_id, Channel.external_id)
            )
            return [(_ref(p, w, c), int(n)) for p, w, c, n in rows.all()]

    async def forgotten_paths(self) -> list[str]:
        """The directories of every channel's forgotten versions (to delete)."""
        async with self.db.read() as session:
            rows = await session.scalars(
                select(ModelVersion.path).where(ModelVersion.status == FORGOTTEN)
            )
            return list(rows)

    async def remove(self, ref: ChannelRef, version: int) -> None:
        async with self.db.write() as session:
            await session.execute(
                delete(ModelVersion).where(
                    ModelVersion.channel_id == _channel_id_query(ref),
                    ModelVersion.version == version,
                    ModelVersion.status != "active",
                )
            )


async def _lock_channel(session: AsyncSession, channel_id: int) -> None:
    # Row lock on PostgreSQL; SQLite's write transactions are serial already.
    await session.execute(select(Channel.id).where(Channel.id == channel_id).with_for_update())


async def _forget_epoch(session: AsyncSession, channel_id: Any) -> int:
    n = await session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.channel_id == channel_id, AuditEntry.action == FORGET_ACTION)
    )
    return int(n or 0)


async def _forget_versions(
    session: AsyncSession, channel_id: int, first_id: int, actor: str
) -> None:
    """Marks forgotten every version of the channel that may have learnt from message
    `first_id` or a later one: those whose data reached it, and every later version
    (which may have started from such a one's weights); and every LoRA version over the
    channel's scratch base, whose tokenizer is fitted again without the forgotten
    messages (ModelResolver.scratch_base). If the active version is among
    them, the newest earlier version that was active answers instead; with none left,
    the base does, and the channel's next run starts from the base. The rows stay, so
    version numbers are never reused; the files go (TrainingService.delete_forgotten)."""
    # Taken before the versions are read, so a run registering a version meanwhile
    # (SqlModelRegistry.add) either is seen here or sees this forgetting.
    await _lock_channel(session, channel_id)
    rows = list(
        await session.scalars(
            select(ModelVersion)
            .where(ModelVersion.channel_id == channel_id)
            .order_by(ModelVersion.version)
        )
    )
    first = min(
        (r.version for r in rows if r.last_message_id is None or r.last_message_id >= first_id),
        default=None,
    )
    was_active = next((r for r in rows if r.status == "active"), None)
    for row in rows:
        on_scratch = row.method == "lora" and row.base_model.startswith("scratch")
        if on_scratch or (first is not None and row.version >= first):
            row.status = FORGOTTEN
    if was_active is None or was_active.status != FORGOTTEN:
        return
    earlier = [r for r in rows if r.status != FORGOTTEN and r.activated_at is not None]
    if not earlier:
        return
    fallback = max(earlier, key=lambda r: as_utc(cast(datetime, r.activated_at)))
    fallback.status = "active"
    fallback.activated_at = datetime.now(UTC)
    session.add(
        AuditEntry(
            actor=actor,
            channel_id=channel_id,
            action="model.activate",
            old_value=json.dumps(was_active.version),
            new_value=json.dumps(fallback.version),
            at=datetime.now(UTC),
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


def process_alive(pid: int) -> bool | None:
    """Whether a process with this id runs on this host; None where that cannot be told
    (on Windows os.kill would end the process instead). A killed process its parent has
    not reaped yet (a zombie) does not count: it runs nothing."""
    if sys.platform == "win32":
        return None
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, as another user
    except OSError:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no /proc (macOS): os.kill is all there is
    # "pid (name) state …": the name may hold spaces and parentheses.
    fields = stat.rsplit(")", 1)[-1].split()
    return not fields or fields[0] not in ("Z", "X")


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
            owner = self.owner
            job.status = "running"
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
                .where(Job.id == job_id, Job.status == "running", self._mine())
                .values(heartbeat_at=datetime.now(UTC))
            )
            return bool(res.rowcount == 1)  # type: ignore[attr-defined]

    async def release(self, job_id: int) -> None:
        self._held.discard(job_id)
        async with self.db.write() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", self._mine())
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

    async def finish(self, job_id: int, status: str, error: str | None = None) -> None:
        """Records how the job ended, unless another process has taken it over since."""
        self._held.discard(job_id)
        now = datetime.now(UTC)
        values: dict[str, Any] = {"status": status, "error": error, "finished_at": now}
        values["updated_at"] = now
        if status == "succeeded":
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
            rows = list(await session.scalars(select(Job).where(Job.status == "running")))
            found = []
            for row in rows:
                last_seen = as_utc(row.heartbeat_at or row.updated_at)
                owner = (
                    JobOwner(row.owner_host, row.owner_pid)
                    if row.owner_host is not None and row.owner_pid is not None
                    else None
                )
                stale = (now - last_seen).total_seconds() > stale_after_s
                if stale or self.is_orphaned(row.id, owner):
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
                    Job.status == "running",
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
            owner=(
                JobOwner(job.owner_host, job.owner_pid)
                if job.owner_host is not None and job.owner_pid is not None
                else None
            ),
            heartbeat_at=as_utc(job.heartbeat_at) if job.heartbeat_at else None,
        )


def _requeued() -> dict[str, Any]:
    """A job row's values once it is back in the queue, owned by nobody."""
    return {
        "status": "queued",
        "owner_host": None,
        "owner_pid": None,
        "heartbeat_at": None,
        "updated_at": datetime.now(UTC),
    }
