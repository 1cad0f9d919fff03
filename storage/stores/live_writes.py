"""Live ingest's writes, many events in one transaction: the messages a platform shows
the bot, their edits and their deletions, applied in the order they came.

One transaction per event made live ingest cost about eight statements and a commit a
message (~45 messages/s while training on two cores). Here a batch costs a few
statements however many messages it holds: channel and user ids come from memory once
known (those rows are never deleted), the batch's authors are checked for opt-outs in
one query inside the write transaction (so an opt-out committed by any process before
it is seen, and on PostgreSQL one racing it waits for it: see _opted_out), and the
messages go in with one multi-row INSERT … RETURNING per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, groupby
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import Author, ChannelRef, ChatMessage
from storage.db import Database
from storage.models import Channel, Message, UnlearnedMessage, User
from storage.stores.message_bulk import MissingReference, lock_references, sqlite_time
from storage.stores.rows import (
    BULK_CHUNK,
    as_utc,
    channel_query,
    ensure_channel,
    ensure_workspace,
    insert,
    lock_channels,
    new_user,
)


@dataclass(frozen=True)
class Store:
    """Store a member's message; the result says whether it was new (not a re-delivery,
    not written by a member who opted out)."""

    message: ChatMessage


@dataclass(frozen=True)
class Edit:
    """A message's new text; the result says whether a stored message changed."""

    ref: ChannelRef
    external_id: str
    text: str
    at: datetime


@dataclass(frozen=True)
class Delete:
    """Messages deleted on the platform; the result is how many were stored."""

    ref: ChannelRef
    external_ids: tuple[str, ...]


Write = Store | Edit | Delete
Result = bool | int

_COLUMNS = "channel_id, external_id, author_id, text, created_at, edited_at, is_bot"
# Rows per SQLite INSERT: 7 columns × 140 stays under the 999 parameters older SQLite
# builds allow.
_SQLITE_ROWS = 140
# Every message of a batch in one statement, its columns sent as arrays; RETURNING says
# which were new. ORDER BY keeps ids in arrival order, as recent() breaks ties on them.
_POSTGRES_STORE = (
    f"INSERT INTO {Message.__tablename__} ({_COLUMNS}) "
    "SELECT h, e, a, t, c, d, b FROM unnest($1::integer[], $2::varchar[], $3::integer[], "
    "$4::text[], $5::timestamptz[], $6::timestamptz[], $7::boolean[]) "
    "WITH ORDINALITY AS r(h, e, a, t, c, d, b, n) ORDER BY n "
    "ON CONFLICT (channel_id, external_id) DO NOTHING RETURNING channel_id, external_id"
)


# Edits as one UPDATE … FROM the batch's rows; RETURNING says which messages changed.
# An edit older than the stored one (late, or delivered again) changes nothing.
_EDIT_WHERE = (
    "m.channel_id = v.c AND m.external_id = v.e "
    "AND (m.edited_at IS NULL OR m.edited_at <= v.a) RETURNING channel_id, external_id"
)
_POSTGRES_EDIT = (
    f"UPDATE {Message.__tablename__} AS m SET text = v.t, edited_at = v.a FROM unnest("
    "$1::integer[], $2::varchar[], $3::text[], $4::timestamptz[]) AS v(c, e, t, a) "
    f"WHERE {_EDIT_WHERE}"
)
_SQLITE_EDIT_ROWS = 240  # 4 columns a row, under 999 parameters


def _sqlite_edit(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?)"] * rows)
    return (
        f"WITH v(c, e, t, a) AS (VALUES {values}) "
        f"UPDATE {Message.__tablename__} AS m SET text = v.t, edited_at = v.a FROM v "
        f"WHERE {_EDIT_WHERE}"
    )


def _sqlite_store(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO {Message.__tablename__} ({_COLUMNS}) VALUES {values} "
        "ON CONFLICT (channel_id, external_id) DO NOTHING RETURNING channel_id, external_id"
    )


UserKey = tuple[str, str, str]  # platform, workspace, user external id


class LiveWrites:
    """Applies batches of writes, each batch in one transaction (all or nothing)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._channels: dict[ChannelRef, int] = {}
        self._workspaces: dict[tuple[str, str], int] = {}
        self._users: dict[UserKey, int] = {}

    async def apply(self, writes: Sequence[Write]) -> list[Result]:
        """The result of each write, in order. The batch's stores go first, then its
        edits in the order they came, then its deletes: whatever order a message's
        events arrived in, it ends stored with its newest edit, or deleted, never
        brought back by a late re-delivery (bot/core/ingest.py remembers changes across
        batches the same way)."""
        fresh = _Fresh()
        results: list[Result] = [False] * len(writes)
        try:
            async with self.db.write() as session:
                await self._apply(session, writes, results, fresh)
        except Exception:
            # Ids kept in memory may name rows that are gone (deleted by hand): found or
            # made again by the next try (the batch's writes one by one, GroupCommit).
            self._channels.clear()
            self._workspaces.clear()
            self._users.clear()
            raise
        # Ids learnt in a transaction that rolled back may name rows that never were.
        self._channels.update(fresh.channels)
        self._workspaces.update(fresh.workspaces)
        self._users.update(fresh.users)
        return results

    async def _apply(
        self, session: AsyncSession, writes: Sequence[Write], results: list[Result], fresh: _Fresh
    ) -> None:
        stores = [i for i, w in enumerate(writes) if isinstance(w, Store)]
        edits = [i for i, w in enumerate(writes) if isinstance(w, Edit)]
        deletes = [i for i, w in enumerate(writes) if isinstance(w, Delete)]
        # The channels whose stored messages change, locked before anything else (the
        # order every such transaction keeps: rows.lock_channels).
        changing = set()
        for i in edits + deletes:
            change = writes[i]
            assert isinstance(change, Edit | Delete)
            changing.add(await self._known_channel(session, change.ref, fresh))
        await lock_channels(session, [c for c in changing if c is not None])
        if stores:
            stored = await self._store(session, [writes[i].message for i in stores], fresh)  # type: ignore[union-attr]
            for i, result in zip(stores, stored, strict=True):
                results[i] = result
        if edits:
            edited = await self._edit(session, [writes[i] for i in edits], fresh)  # type: ignore[misc]
            for i, result in zip(edits, edited, strict=True):
                results[i] = result
        if deletes:
            gone = await self._delete(session, [writes[i] for i in deletes], fresh)  # type: ignore[misc]
            for i, result in zip(deletes, gone, strict=True):
                results[i] = result
        await self._history_changed(session, fresh.changed)

    # --- ids, from memory once known ---------------------------------------------------

    async def _channel_id(self, session: AsyncSession, ref: ChannelRef, fresh: _Fresh) -> int:
        known = self._channels.get(ref) or fresh.channels.get(ref)
        if known is None:
            known = fresh.channels[ref] = (await ensure_channel(session, ref, "")).id
        return known

    async def _user_ids(
        self, session: AsyncSession, messages: list[ChatMessage], fresh: _Fresh
    ) -> dict[UserKey, int]:
        wanted: dict[UserKey, Author] = {}
        for m in messages:
            wanted[(m.channel.platform, m.channel.workspace, m.author.id)] = m.author
        ids = {k: i for k in wanted if (i := self._users.get(k) or fresh.users.get(k))}
        missing = [k for k in wanted if k not in ids]
        for (platform, workspace), keys in groupby(sorted(missing), lambda k: k[:2]):
            ws = self._workspaces.get((platform, workspace)) or fresh.workspaces.get(
                (platform, workspace)
            )
            if ws is None:
                ws = fresh.workspaces[platform, workspace] = await ensure_workspace(
                    session, platform, workspace
                )
            new = list(keys)
            rows = [new_user(ws, k[2], wanted[k].name, wanted[k].is_bot) for k in new]
            await session.execute(insert(session, User).values(rows).on_conflict_do_nothing())
            found = await session.execute(
                select(User.external_id, User.id).where(
                    User.workspace_id == ws, User.external_id.in_([k[2] for k in new])
                )
            )
            for external, uid in found:
                ids[platform, workspace, external] = fresh.users[platform, workspace, external] = (
                    uid
                )
        return ids

    async def _opted_out(self, session: AsyncSession, user_ids: set[int]) -> set[int]:
        """Which of the batch's authors opted out. Read inside the write transaction: on
        SQLite it holds the write lock, so no opt-out commits between this and the
        insert; on PostgreSQL the rows are share-locked, so an opt-out racing the batch
        waits for it and then forgets its messages too."""
        query = select(User.id, User.opted_out).where(User.id.in_(sorted(user_ids)))
        if session.get_bind().dialect.name != "postgresql":
            return {uid for uid, out in await session.execute(query) if out}
        rows = list(await session.execute(query.with_for_update(read=True)))
        if len(rows) != len(user_ids):
            # Messages on PostgreSQL have no foreign-key triggers (migration 0009).
            raise MissingReference("messages name users rows that do not exist")
        return {uid for uid, out in rows if out}

    # --- the writes --------------------------------------------------------------------

    async def _store(
        self, session: AsyncSession, messages: list[ChatMessage], fresh: _Fresh
    ) -> list[Result]:
        channel_ids = {
            m.channel: await self._channel_id(session, m.channel, fresh) for m in messages
        }
        user_ids = await self._user_ids(session, messages, fresh)
        # The authors are held by _opted_out's lock; the channels here.
        await lock_references(session, set(channel_ids.values()), ())
        refused = await self._opted_out(session, set(user_ids.values()))
        gone = await _unlearned(
            session, [(channel_ids[m.channel], m.external_id) for m in messages]
        )
        rows: list[tuple[Any, ...]] = []
        kept: set[int] = set()
        for i, m in enumerate(messages):
            author = user_ids[m.channel.platform, m.channel.workspace, m.author.id]
            if author in refused or (channel_ids[m.channel], m.external_id) in gone:
                continue
            kept.add(i)
            rows.append(
                (
                    channel_ids[m.channel],
                    m.external_id,
                    author,
                    m.text,
                    m.created_at,
                    m.edited_at,
                    m.author.is_bot,
                )
            )
        inserted = await _insert(session, rows)
        results: list[Result] = []
        for i, m in enumerate(messages):
            key = (channel_ids[m.channel], m.external_id)
            # A message named twice in one batch is new the first time only.
            results.append(i in kept and key in inserted and not _seen(inserted, key))
        return results

    async def _edit(self, session: AsyncSession, edits: list[Edit], fresh: _Fresh) -> list[Result]:
        """One UPDATE for the batch's edits; each says whether its message changed."""
        newest: dict[tuple[int, str], tuple[str, datetime]] = {}
        keys: list[tuple[int, str] | None] = []
        for w in edits:
            channel_id = await self._known_channel(session, w.ref, fresh)
            if channel_id is None:
                keys.append(None)  # a channel never seen: nothing to edit, none made
                continue
            key = (channel_id, w.external_id)
            keys.append(key)
            at = as_utc(w.at)
            # Two edits of one message in one batch: the newer wins, as it would have
            # one after the other (an edit older than the stored one is stale).
            if key not in newest or newest[key][1] <= at:
                newest[key] = (w.text, at)
        rows = [(c, e, t, at) for (c, e), (t, at) in newest.items()]
        changed = await _update(session, rows)
        fresh.changed.update(c for c, _ in changed)
        return [key is not None and key in changed for key in keys]

    async def _delete(
        self, session: AsyncSession, deletes: list[Delete], fresh: _Fresh
    ) -> list[Result]:
        """One DELETE per channel; each says how many of its messages were stored."""
        by_channel: dict[int, set[str]] = {}
        channel_ids: list[int | None] = []
        for w in deletes:
            channel_id = await self._known_channel(session, w.ref, fresh)
            channel_ids.append(channel_id)
            if channel_id is not None:
                by_channel.setdefault(channel_id, set()).update(w.external_ids)
        gone: set[tuple[int, str]] = set()
        for channel_id, external_ids in by_channel.items():
            wanted = sorted(external_ids)
            for start in range(0, len(wanted), BULK_CHUNK):
                found = await session.execute(
                    delete(Message)
                    .where(
                        Message.channel_id == channel_id,
                        Message.external_id.in_(wanted[start : start + BULK_CHUNK]),
                    )
                    .returning(Message.external_id)
                )
                gone.update((channel_id, str(e)) for (e,) in found)
        fresh.changed.update(c for c, _ in gone)
        results: list[Result] = []
        for w, channel_id in zip(deletes, channel_ids, strict=True):
            ids = set(w.external_ids)
            results.append(sum((channel_id, e) in gone for e in ids) if channel_id else 0)
            # A message named by two deletes of one batch counts for the first.
            gone.difference_update((channel_id, e) for e in ids)
        return results

    async def _known_channel(
        self, session: AsyncSession, ref: ChannelRef, fresh: _Fresh
    ) -> int | None:
        """The channel's id if it is stored (an edit of a channel never seen changes
        nothing, and makes no channel)."""
        known = self._channels.get(ref) or fresh.channels.get(ref)
        if known is None:
            found = await session.scalar(channel_query(ref).with_only_columns(Channel.id))
            if found is not None:
                known = fresh.channels[ref] = found
        return known

    @staticmethod
    async def _history_changed(session: AsyncSession, channel_ids: set[int]) -> None:
        """Marks the history under these channels' versions as changed (an edit, a
        delete): the nightly run retrains them."""
        if channel_ids:
            await session.execute(
                update(Channel)
                .where(Channel.id.in_(sorted(channel_ids)))
                .values(history_changed_at=datetime.now(UTC))
            )


class _Fresh:
    """What one transaction learnt: ids (kept once it commits) and the channels whose
    history it changed."""

    def __init__(self) -> None:
        self.channels: dict[ChannelRef, int] = {}
        self.workspaces: dict[tuple[str, str], int] = {}
        self.users: dict[UserKey, int] = {}
        self.changed: set[int] = set()


async def _update(
    session: AsyncSession, rows: list[tuple[int, str, str, datetime]]
) -> set[tuple[int, str]]:
    """Applies the edits (channel id, external id, text, when); the messages changed."""
    if not rows:
        return set()
    connection = await session.connection()
    found: list[Any] = []
    if session.get_bind().dialect.name == "postgresql":
        columns = tuple(map(list, zip(*rows, strict=True)))
        found = list(await connection.exec_driver_sql(_POSTGRES_EDIT, columns))
    else:
        for start in range(0, len(rows), _SQLITE_EDIT_ROWS):
            chunk = [
                (c, e, t, sqlite_time(at))
                for c, e, t, at in rows[start : start + _SQLITE_EDIT_ROWS]
            ]
            params = tuple(chain.from_iterable(chunk))
            found += list(await connection.exec_driver_sql(_sqlite_edit(len(chunk)), params))
    return {(int(c), str(e)) for c, e in found}


def _seen(inserted: dict[tuple[int, str], bool], key: tuple[int, str]) -> bool:
    """Whether an inserted row was already claimed by an earlier message of the batch
    (claims it otherwise)."""
    claimed = inserted[key]
    inserted[key] = True
    return claimed


async def _insert(
    session: AsyncSession, rows: list[tuple[Any, ...]]
) -> dict[tuple[int, str], bool]:
    """Inserts the rows, leaving out those already stored; the (channel id, external
    id) of each row inserted, each marked unclaimed (False)."""
    if not rows:
        return {}
    connection = await session.connection()
    found: list[Any] = []
    if session.get_bind().dialect.name == "postgresql":
        columns = list(zip(*rows, strict=True))
        # Aware times: asyncpg reads naive ones as the machine's local time.
        columns[4] = tuple(as_utc(t) for t in columns[4])
        columns[5] = tuple(None if t is None else as_utc(t) for t in columns[5])
        found = list(await connection.exec_driver_sql(_POSTGRES_STORE, tuple(map(list, columns))))
    else:
        for start in range(0, len(rows), _SQLITE_ROWS):
            chunk = [
                (c, e, a, t, sqlite_time(at), None if d is None else sqlite_time(d), b)
                for c, e, a, t, at, d, b in rows[start : start + _SQLITE_ROWS]
            ]
            params = tuple(chain.from_iterable(chunk))
            found += list(await connection.exec_driver_sql(_sqlite_store(len(chunk)), params))
    return {(int(c), str(e)): False for c, e in found}


async def _unlearned(session: AsyncSession, keys: list[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these (channel id, external id) were taken out of the history at a
    member's word: a platform delivering one again (Slack retries) stores nothing. One
    query for the batch; the table is small (a row per "Don't learn from this")."""
    if not keys:
        return set()
    rows = await session.execute(
        select(UnlearnedMessage.channel_id, UnlearnedMessage.external_id).where(
            UnlearnedMessage.channel_id.in_({c for c, _ in keys}),
            UnlearnedMessage.external_id.in_({e for _, e in keys}),
        )
    )
    return {(c, e) for c, e in rows} & set(keys)
