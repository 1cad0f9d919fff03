"""Engine and session factory for SQLite and PostgreSQL, and migrations on start.

SQLite is the embedded default and must not fail with "database is locked" when many
coroutines (or the bot and a `tsuzuki import` in another process) write at once:
- WAL lets readers run alongside the one writer;
- every write transaction starts with BEGIN IMMEDIATE, so it takes the write lock up
  front and waits for it (busy_timeout) instead of failing on a read→write upgrade,
  which SQLite reports as SQLITE_BUSY at once, without waiting;
- inside one process, writers queue on an asyncio lock rather than on SQLite's
  polling busy handler, which is both fairer and faster.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot import messages as M
from bot.errors import UserError
from bot.outages import named

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Take over transaction control from the sqlite3 module (see _begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # NORMAL is durable across application crashes in WAL mode; only an OS crash can
    # lose the last transactions, which is fine for chat history.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


SQLITE_HEADER = b"SQLite format 3\x00"


class DatabaseUnusable(UserError):
    """The database exists but cannot be used as it is: the bot does not start over it."""


def check_sqlite_file(path: Path) -> None:
    """Refuses a database file that exists but is empty or not SQLite's: opening it
    would make a new, empty database over every message and consent it held."""
    if not path.exists():
        return  # a first start: the database is made
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise DatabaseUnusable(M.t("db_file_unreadable", path=path, cause=e.strerror)) from e
    if not head:
        raise DatabaseUnusable(M.t("db_file_empty", path=path))
    if head != SQLITE_HEADER:
        raise DatabaseUnusable(
            M.t("db_file_unreadable", path=path, cause="it is not a SQLite database")
        )


class Database:
    """Owns the engines. `write()` and `read()` hand out sessions in a transaction."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                check_sqlite_file(Path(parsed.database))
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            self.engine = create_async_engine(url, echo=echo, connect_args=connect_args)
            self._read_engine = create_async_engine(url, echo=echo, connect_args=connect_args)
            for eng, begin in ((self.engine, "BEGIN IMMEDIATE"), (self._read_engine, "BEGIN")):
                event.listen(eng.sync_engine, "connect", _sqlite_pragmas)
                event.listen(eng.sync_engine, "begin", _emit_begin(begin))
        else:
            self.engine = create_async_engine(url, echo=echo, pool_pre_ping=True)
            self._read_engine = self.engine
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self._read_engine, expire_on_commit=False)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a write transaction: committed on success, rolled back on error."""
        if self._write_lock is None:
            async with self._writer.begin() as session:
                yield session
            return
        async with self._write_lock, self._writer.begin() as session:
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._reader() as session:
            yield session

    async def migrate(self) -> None:
        """Brings the schema to the newest Alembic revision (a no-op when it is). A
        database that fails to open or read (damaged, unreachable) is named, with why."""
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(_upgrade_to_head)
        except (DBAPIError, OSError) as e:
            where = make_url(self.url).render_as_string(hide_password=True)
            cause = named(e) or str(getattr(e, "orig", e)).splitlines()[0][:200]
            raise DatabaseUnusable(M.t("db_file_unreadable", path=where, cause=cause)) from e

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._read_engine is not self.engine:
            await self._read_engine.dispose()


def _emit_begin(statement: str) -> Any:
    def begin(conn: Connection) -> None:
        conn.exec_driver_sql(statement)

    return begin


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade_to_head(connection: Connection) -> None:
    cfg = alembic_config()
    # env.py runs the migrations on this connection instead of opening its own.
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def open_database(url: str) -> Database:
    """A migrated, ready database."""
    db = Database(url)
    await db.migrate()
    return db


def sync_url(async_url: str) -> str:
    """The same database through a sync driver (APScheduler's job store is synchronous)."""
    url = make_url(async_url)
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}[url.get_backend_name()]
    return url.set(drivername=driver).render_as_string(hide_password=False)


def sync_engine(async_url: str) -> Any:
    """A synchronous engine on the same database, for the scheduler's job store; on
    SQLite it waits for the write lock as the bot's own connections do."""
    engine = create_engine(sync_url(async_url), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    return engine
