"""The bulk path of an import on both backends: what a user sees when a file is large
(several driver chunks), imported again, broken in the middle, or holds members who
opted out. Chunks and statements are made small so that a few hundred messages span
many of each."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from bot.domain import Author, ChannelRef, ChatMessage
from bot.errors import UserError
from bot.importing.importer import ImportProgress, import_history
from bot.records import ImportBatch
from bot.training.lineage import plan_forget
from storage.db import Database
from storage.models import Message
from storage.stores import (
    SqlChannelStore,
    SqlMessageStore,
    SqlUserStore,
    message_bulk,
    message_store,
)
from storage.stores.rows import as_utc
from tests.exports import JA, discord_export, discord_message, write_jsonl

CONSOLE = ChannelRef.parse("console:general")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
N = 450


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(message_store, "_IMPORT_CHUNK", 100)
    monkeypatch.setattr(message_bulk, "_SQLITE_ROWS_PER_INSERT", 7)


def records(n: int, start: int = 0, **extra: object) -> list[dict[str, object]]:
    return [
        {"author": f"user{i % 3}", "text": f"{JA} #{i}", "ts": 1_700_000_000 + i, "id": i, **extra}
        for i in range(start, start + n)
    ]


async def test_reimporting_a_large_file_counts_every_message_as_a_duplicate(
    db: Database, tmp_path: Path
) -> None:
    store = SqlMessageStore(db)
    path = write_jsonl(tmp_path / "h.jsonl", records(N))
    first = await import_history(store, path, channel=CONSOLE)
    assert (first.imported, first.duplicates) == (N, 0)
    again = await import_history(store, path, channel=CONSOLE)
    assert (again.imported, again.duplicates) == (0, N)
    assert await store.count(CONSOLE) == N


async def test_a_file_overlapping_what_is_stored_adds_only_the_new_messages(
    db: Database, tmp_path: Path
) -> None:
    store = SqlMessageStore(db)
    # A message the bot stored live, before the export that also holds it.
    live = ChatMessage(CONSOLE, "7", Author("user1", "user1"), "live", T0)
    assert await store.add(live)
    await import_history(store, write_jsonl(tmp_path / "a.jsonl", records(200)), channel=CONSOLE)
    report = await import_history(
        store, write_jsonl(tmp_path / "b.jsonl", records(200, start=100)), channel=CONSOLE
    )
    assert (report.imported, report.duplicates) == (100, 100)
    assert await store.count(CONSOLE) == 300
    # The stored message is left as it was.
    assert {m.text for m in await store.recent(CONSOLE, 400) if m.external_id == "7"} == {"live"}


async def test_the_same_id_twice_in_one_file_is_stored_once(db: Database, tmp_path: Path) -> None:
    store = SqlMessageStore(db)
    lines = records(150)
    # Once within one statement, once in a later chunk.
    lines.insert(32, {**lines[30], "text": "a second copy"})
    lines.insert(130, {**lines[10], "text": "a second copy"})
    report = await import_history(store, write_jsonl(tmp_path / "h.jsonl", lines), channel=CONSOLE)
    assert (report.imported, report.duplicates) == (150, 2)
    stored = await store.recent(CONSOLE, 200)
    assert [m.text for m in stored if m.external_id in ("10", "30")] == [f"{JA} #10", f"{JA} #30"]


async def test_an_opted_out_members_messages_are_refused_in_a_new_file(
    db: Database, tmp_path: Path
) -> None:
    store = SqlMessageStore(db)
    await SqlUserStore(db, plan_forget).set_opted_out("console", "local", "user1", True, actor="t")
    report = await import_history(
        store, write_jsonl(tmp_path / "h.jsonl", records(N)), channel=CONSOLE
    )
    counts = report.per_channel[CONSOLE]
    assert (counts.imported, counts.duplicates, counts.opted_out) == (300, 0, 150)
    assert report.skipped["written by members who opted out"] == 150
    assert {m.author.id for m in await store.recent(CONSOLE, N)} == {"user0", "user2"}


async def test_a_broken_record_in_the_middle_of_a_large_file_stores_nothing(
    db: Database, tmp_path: Path
) -> None:
    store = SqlMessageStore(db)
    lines = records(N)
    lines[300]["ts"] = "sometime in spring"
    path = write_jsonl(tmp_path / "h.jsonl", lines)
    with pytest.raises(UserError) as excinfo:
        await import_history(store, path, channel=CONSOLE)
    assert "h.jsonl: line 301:" in excinfo.value.reason
    assert "'ts' is not a valid time" in excinfo.value.reason
    assert await store.count(CONSOLE) == 0
    assert await SqlChannelStore(db).get(CONSOLE) is None
    assert gc.isenabled()


async def test_a_broken_message_in_a_discord_export_stores_nothing(
    db: Database, tmp_path: Path
) -> None:
    store = SqlMessageStore(db)
    messages = [discord_message(i) for i in range(N)]
    messages[200]["author"] = {"id": "42", "name": None}
    path = tmp_path / "export.json"
    path.write_text(json.dumps(discord_export(messages)), encoding="utf-8")
    with pytest.raises(UserError) as excinfo:
        await import_history(store, path)
    assert "export.json: messages[200].author: 'name' must be a string" in excinfo.value.reason
    assert await store.count(ChannelRef("discord", "111", "222")) == 0


async def test_a_failure_while_storing_stores_nothing(db: Database, tmp_path: Path) -> None:
    """The last chunk fails after the first ones went in, also when it holds a message
    stored before: the batch is one transaction."""
    store = SqlMessageStore(db)
    good = [ChatMessage(CONSOLE, str(i), Author("a", "a"), "hi", T0) for i in range(N)]
    bad = ChatMessage(CONSOLE, "bad", Author("a", "a"), None, T0)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        await store.add_batch(ImportBatch(messages=[*good, good[5], bad]))
    assert await store.count(CONSOLE) == 0


async def test_stored_messages_read_back_as_imported_in_file_order(
    db: Database, tmp_path: Path
) -> None:
    """Times keep their microseconds and zone; messages sharing a time keep the file's
    order (ids follow it); an edit time works with later edits."""
    store = SqlMessageStore(db)
    ts = "2024-03-01T09:00:00.000001-05:00"
    lines = [{"author": "a", "text": f"same time {i}", "ts": ts, "id": f"s{i}"} for i in range(250)]
    await import_history(store, write_jsonl(tmp_path / "h.jsonl", lines), channel=CONSOLE)
    recent = await store.recent(CONSOLE, 300)
    assert [m.external_id for m in recent] == [f"s{i}" for i in range(250)]
    at = datetime(2024, 3, 1, 14, 0, 0, 1, tzinfo=UTC)
    assert {m.created_at for m in recent} == {at}
    assert all(m.created_at.tzinfo == UTC for m in recent)


async def test_an_imported_edit_time_orders_against_later_edits(db: Database) -> None:
    """SQLite compares stored times as text: the bulk path must store them exactly as
    the rest of the app writes them, or an older edit would win."""
    from bot.records import ImportBatch

    store = SqlMessageStore(db)
    edited = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    message = ChatMessage(CONSOLE, "e1", Author("a", "a"), "v1", T0, edited)
    await store.add_batch(ImportBatch(messages=[message]))
    assert not await store.edit(CONSOLE, "e1", "stale", edited - timedelta(microseconds=1))
    assert await store.edit(CONSOLE, "e1", "v2", edited + timedelta(microseconds=1))
    (only,) = await store.recent(CONSOLE, 1)
    assert (only.text, only.edited_at) == ("v2", edited + timedelta(microseconds=1))


@pytest.mark.parametrize(
    "at",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2025, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=9))),
        datetime(2025, 1, 1, 0, 0, 0, 5),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
)
def test_sqlite_times_are_written_as_sqlalchemy_writes_them(at: datetime) -> None:
    dialect = sqlite.dialect()
    write = Message.__table__.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert write is not None
    assert message_bulk.sqlite_time(at) == write(as_utc(at))


async def test_progress_reaches_the_end_of_both_phases(db: Database, tmp_path: Path) -> None:
    store = SqlMessageStore(db)
    parse: list[tuple[int, int]] = []
    stored: list[tuple[int, int]] = []
    progress = ImportProgress(
        parse=lambda done, total: parse.append((done, total)),
        store=lambda done, total: stored.append((done, total)),
    )
    path = write_jsonl(tmp_path / "h.jsonl", records(N))
    await import_history(store, path, channel=CONSOLE, progress=progress)
    assert parse[-1] == (N, N)
    assert stored[-1] == (N, N)
    # One report per chunk of 100, then the end.
    assert [done for done, _ in stored] == [100, 200, 300, 400, 450, 450]
