"""The raw INSERT statements SqlMessageStore.add_batch stores messages with, one per
dialect: building ORM parameter dicts and processing them row by row was most of an
import's time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from functools import cache
from itertools import chain
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import ChatMessage
from storage.models import Message
from storage.stores.rows import as_utc

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
BulkInsert = Callable[[AsyncSession, int, list[ChatMessage], dict[str, int]], Awaitable[int]]


def bulk_insert(session: AsyncSession) -> BulkInsert:
    """The insert for the session's database. Messages already stored (the same
    channel and external id) are left out and not counted."""
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
            sqlite_time(m.created_at),
            None if m.edited_at is None else sqlite_time(m.edited_at),
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


def sqlite_time(dt: datetime) -> str:
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
        # COPY into a staging table, then one INSERT … SELECT: COPY's binary rows cost
        # the server less than unnesting six arrays (about 15% of an import).
        await _stage(connection, messages, columns)
        try:
            async with connection.begin_nested():
                result = await connection.exec_driver_sql(_POSTGRES_STAGED_NEW, (channel_id,))
            return int(result.rowcount)
        except IntegrityError:
            # Back to the savepoint. A failure that is no conflict (a NULL text…) is
            # raised again below and rolls the whole batch back.
            result = await connection.exec_driver_sql(_POSTGRES_STAGED_ANY, (channel_id,))
            return int(result.rowcount)
    result = await connection.exec_driver_sql(_POSTGRES_INSERT_ANY, params)
    # From the command tag "INSERT 0 n": the rows this statement inserted, exact even
    # while other transactions write to the same channel.
    return int(result.rowcount)


_STAGE = "tsuzuki_import_stage"
_STAGE_COLUMNS = ("e", "a", "t", "c", "d", "b")
# One per connection, emptied by every commit; `n` keeps the file's order.
_STAGE_CREATE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (e varchar(100), a integer, t text, "
    "c timestamptz, d timestamptz, b boolean, n bigserial) ON COMMIT DELETE ROWS"
)
_FROM_STAGE = (
    f"INSERT INTO {Message.__tablename__} ({_MESSAGE_COLUMNS}) "
    f"SELECT $1::integer, e, a, t, c, d, b FROM {_STAGE} r "
)
_POSTGRES_STAGED_NEW = (
    _FROM_STAGE + f"WHERE NOT EXISTS (SELECT 1 FROM {Message.__tablename__} m "
    "WHERE m.channel_id = $1 AND m.external_id = r.e) ORDER BY n"
)
_POSTGRES_STAGED_ANY = _FROM_STAGE + "ORDER BY n ON CONFLICT (channel_id, external_id) DO NOTHING"


async def _stage(
    connection: Any, messages: list[ChatMessage], columns: tuple[list[Any], ...]
) -> None:
    """The chunk's rows in the staging table, by COPY (asyncpg's binary protocol)."""
    await connection.exec_driver_sql(_STAGE_CREATE)
    await connection.exec_driver_sql(f"TRUNCATE {_STAGE}")
    raw = (await connection.get_raw_connection()).driver_connection
    await raw.copy_records_to_table(
        _STAGE, records=zip(*columns, strict=True), columns=_STAGE_COLUMNS
    )


async def lock_references(
    session: AsyncSession, channel_ids: Collection[int], user_ids: Collection[int]
) -> None:
    """On PostgreSQL, where messages carry no foreign-key triggers (migration 0009):
    checks once per batch that the channels and authors its rows name exist, and holds
    them (FOR KEY SHARE, the lock each trigger took per row) until the batch commits."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite's own constraints check every row
    for table, ids in (("channels", set(channel_ids)), ("users", set(user_ids))):
        if not ids:
            continue
        found = await session.execute(
            text(f"SELECT id FROM {table} WHERE id = ANY(:ids) FOR KEY SHARE"), {"ids": sorted(ids)}
        )
        missing = ids - {int(i) for (i,) in found}
        if missing:
            raise MissingReference(
                f"messages name {table} rows that do not exist: {sorted(missing)[:5]}"
            )


class MissingReference(Exception):
    """A batch names a channel or author row that is gone: it is stored not at all."""
