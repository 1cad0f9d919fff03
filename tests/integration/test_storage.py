"""Storage against real databases: SQLite always, PostgreSQL when configured."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from bot.domain import Author, ChannelRef, ChatMessage
from bot.records import ImportBatch
from storage.db import Database
from storage.stores import SqlChannelStore, SqlMessageStore

REF = ChannelRef.parse("console:general")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def msg(i: int, text: str | None = None, ref: ChannelRef = REF, author: str = "u1") -> ChatMessage:
    return ChatMessage(
        channel=ref,
        external_id=f"m{i}",
        author=Author(id=author, name=author.upper()),
        text=text if text is not None else f"message {i}",
        created_at=T0 + timedelta(seconds=i),
    )


async def test_storing_the_same_event_twice_stores_one_row(db: Database) -> None:
    store = SqlMessageStore(db)
    assert await store.add(msg(1, "織田信長は、尾張の大名 🎌"))
    assert not await store.add(msg(1, "a replayed copy"))
    assert await store.count(REF) == 1
    (only,) = await store.recent(REF, 10)
    assert only.text == "織田信長は、尾張の大名 🎌"
    assert only.author.name == "U1"
    assert only.created_at == T0 + timedelta(seconds=1)


async def test_recent_returns_the_newest_oldest_first(db: Database) -> None:
    store = SqlMessageStore(db)
    for i in (3, 1, 2, 5, 4):
        await store.add(msg(i))
    assert [m.external_id for m in await store.recent(REF, 3)] == ["m3", "m4", "m5"]


async def test_edits_and_deletes_reach_the_stored_rows(db: Database) -> None:
    store = SqlMessageStore(db)
    for i in range(3):
        await store.add(msg(i))
    assert await store.edit(REF, "m1", "edited text", T0 + timedelta(hours=1))
    assert not await store.edit(REF, "missing", "x", T0)
    assert await store.delete(REF, ["m0", "m2", "missing"]) == 2
    (left,) = await store.recent(REF, 10)
    assert (left.external_id, left.text) == ("m1", "edited text")
    assert left.edited_at == T0 + timedelta(hours=1)


async def test_same_external_id_in_two_channels_is_two_messages(db: Database) -> None:
    store = SqlMessageStore(db)
    other = ChannelRef.parse("discord:1/2")
    assert await store.add(msg(1))
    assert await store.add(msg(1, ref=other))
    assert await store.count(REF) == 1 and await store.count(other) == 1


async def test_a_batch_is_all_or_nothing(db: Database) -> None:
    store = SqlMessageStore(db)
    good = [msg(i) for i in range(2500)]
    # A NULL text fails in the second INSERT chunk, after the first one went in.
    bad = ChatMessage(REF, "bad", Author("u1", "U1"), None, T0)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        await store.add_batch(ImportBatch(messages=[*good, bad]))
    assert await store.count(REF) == 0
    assert await SqlChannelStore(db).get(REF) is None


async def test_counts_are_exact_for_imports(db: Database) -> None:
    store = SqlMessageStore(db)
    first = await store.add_batch(ImportBatch(messages=[msg(i) for i in range(100)]))
    assert (first[REF].imported, first[REF].duplicates) == (100, 0)
    again = await store.add_batch(ImportBatch(messages=[msg(i) for i in range(50, 150)]))
    assert (again[REF].imported, again[REF].duplicates) == (50, 50)
    assert await store.count(REF) == 150


async def test_channel_settings_changes_are_audited(db: Database) -> None:
    channels = SqlChannelStore(db)
    assert await channels.get(REF) is None
    info = await channels.ensure(REF, "general")
    assert info.sampling == {} and not info.training_enabled
    assert await channels.set_sampling(REF, "temperature", 0.5, actor="console:alice") == (
        None,
        0.5,
    )
    assert await channels.set_sampling(REF, "temperature", None, actor="console:alice") == (
        0.5,
        None,
    )
    entries = await channels.audit(REF)
    assert [
        (
            e.actor,
            e.action,
            e.key,
            json.loads(e.old_value or "null"),
            json.loads(e.new_value or "null"),
        )
        for e in entries
    ] == [
        ("console:alice", "settings.set", "temperature", None, 0.5),
        ("console:alice", "settings.reset", "temperature", 0.5, None),
    ]


async def test_fifty_concurrent_writers_and_readers_see_no_errors(db: Database) -> None:
    """The bot's live ingest, an import and command handlers all write at once."""
    store = SqlMessageStore(db)
    channels = SqlChannelStore(db)
    refs = [ChannelRef.parse(f"console:c{i % 5}") for i in range(50)]

    async def writer(w: int) -> None:
        for j in range(10):
            await store.add(msg(w * 100 + j, ref=refs[w], author=f"user{w % 7}"))
            if j % 5 == 0:
                await channels.set_sampling(refs[w], "top_k", w, actor=f"console:w{w}")
        await store.add_batch(
            ImportBatch(messages=[msg(w * 100 + 50 + k, ref=refs[w]) for k in range(20)])
        )

    async def reader(r: int) -> int:
        seen = 0
        for _ in range(10):
            seen += len(await store.recent(refs[r], 5))
            await store.count(refs[r])
            await asyncio.sleep(0)
        return seen

    results = await asyncio.gather(
        *(writer(w) for w in range(50)), *(reader(r) for r in range(20)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    total = sum([await store.count(ChannelRef.parse(f"console:c{i}")) for i in range(5)])
    assert total == 50 * 30


async def test_migrations_are_idempotent(db: Database) -> None:
    await db.migrate()
    await db.migrate()
    assert await SqlMessageStore(db).count(REF) == 0


async def test_the_live_counts_fingerprint_sees_every_kind_of_change(db: Database) -> None:
    """What bot/engine/live.py compares: a new message, an edit, a delete and an opt-out
    each change the fingerprint, and the rows it then reads are the changed ones."""
    from bot.training.lineage import plan_forget
    from storage.stores import SqlUserStore

    store = SqlMessageStore(db)
    for i in range(4):
        await store.add(msg(i, author="u2" if i == 3 else "u1"))
    first = await store.live_fingerprint(REF, None)
    assert (first.count, first.edited) == (4, None)
    assert first.id_sum == sum(await store.live_ids(REF, None))
    await store.add(msg(4))
    added = await store.live_fingerprint(REF, None)
    assert added.newest > first.newest
    new = await store.live_rows(REF, upto=None, newest=100, after_id=first.newest)
    assert [r.text for r in new] == ["message 4"]
    await store.edit(REF, "m1", "edited", T0 + timedelta(hours=1))
    edited = await store.live_fingerprint(REF, None)
    assert edited.edited == T0 + timedelta(hours=1)
    rows = await store.live_rows(REF, upto=None, newest=100, edited_after=T0)
    assert [r.text for r in rows] == ["edited"]
    await store.delete(REF, ["m0"])
    deleted = await store.live_fingerprint(REF, None)
    assert (deleted.count, deleted.id_sum) != (edited.count, edited.id_sum)
    users = SqlUserStore(db, plan_forget)
    await users.set_opted_out(REF.platform, REF.workspace, "u2", True, actor="u2")
    gone = await store.live_fingerprint(REF, None)
    assert gone.count == deleted.count - 1
    assert len(await store.live_ids(REF, None)) == gone.count
    # Up to a message id: what a version was trained on, when training is off.
    assert (await store.live_fingerprint(REF, first.newest)).newest <= first.newest


async def test_the_voice_key_is_made_once_for_every_process(db: Database) -> None:
    # Two processes asking at once (two stores, each with its own cache) get one key,
    # and a process started later reads the same one.
    first, second = await asyncio.gather(
        SqlMessageStore(db).voice_key(), SqlMessageStore(db).voice_key()
    )
    assert first == second and len(first) == 32
    later = Database(db.url)
    try:
        assert await SqlMessageStore(later).voice_key() == first
    finally:
        await later.dispose()
