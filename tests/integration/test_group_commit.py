"""Live ingest's group commit, on real SQLite and PostgreSQL: a burst of messages,
edits and deletes lands whole and in order in few transactions; a bad message fails
alone; a full queue makes callers wait instead of dropping; an opt-out made by another
process keeps the next batch out; stopping, and a killed process, lose nothing that was
acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.app import App
from bot.domain import Author, ChannelRef, ChatMessage
from bot.training.lineage import plan_forget
from storage.db import Database, open_database
from storage.models import Channel, Message
from storage.stores import SqlMessageStore, SqlUserStore
from storage.stores.rows import channel_id_query, channel_query

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REFS = [ChannelRef.parse(f"discord:guild/c{i}") for i in range(5)]


def msg(i: int, ref: ChannelRef, author: str = "u1", text: str | None = None) -> ChatMessage:
    return ChatMessage(
        ref,
        f"m{i}",
        Author(author, author.upper()),
        text or f"message {i}",
        T0 + timedelta(seconds=i),
    )


async def stored(db: Database, ref: ChannelRef) -> list[tuple[str, str]]:
    """The channel's (external id, text), in the order the rows were written."""
    async with db.read() as session:
        rows = await session.execute(
            select(Message.external_id, Message.text)
            .where(Message.channel_id == channel_id_query(ref))
            .order_by(Message.id)
        )
        return [(e, t) for e, t in rows]


async def test_a_burst_of_messages_edits_and_deletes_lands_whole_and_in_order(app: App) -> None:
    messages = [msg(i, REFS[i % len(REFS)], author=f"u{i % 7}") for i in range(1500)]
    events = [app.core.on_message(m) for m in messages]
    # Every tenth message edited, every fifteenth deleted, each after it was sent.
    for m in messages[::10]:
        events.append(
            app.core.on_edit(m.channel, m.external_id, m.text + " (edited)", T0 + timedelta(days=1))
        )
    for m in messages[::15]:
        events.append(app.core.on_delete(m.channel, [m.external_id]))
    writes = app.messages.writes
    assert writes is not None
    before = writes.batches
    await asyncio.gather(*events)
    assert writes.batches - before < len(events) / 20  # many events a transaction
    for ref in REFS:
        expected = [
            (m.external_id, m.text + (" (edited)" if int(m.external_id[1:]) % 10 == 0 else ""))
            for m in messages
            if m.channel == ref and int(m.external_id[1:]) % 15 != 0
        ]
        assert await stored(app.db, ref) == expected


async def test_an_edit_or_delete_that_overtakes_its_message_still_applies(app: App) -> None:
    ref = REFS[0]
    # The edit of m1 and the deletion of m2 reach the bot before the messages do.
    await asyncio.gather(
        app.core.on_edit(ref, "m1", "edited first", T0 + timedelta(days=1)),
        app.core.on_delete(ref, ["m2"]),
        app.core.on_message(msg(1, ref)),
        app.core.on_message(msg(2, ref)),
        app.core.on_message(msg(3, ref)),
    )
    assert await stored(app.db, ref) == [("m1", "edited first"), ("m3", "message 3")]


async def test_a_bad_message_fails_alone_and_the_rest_of_its_batch_is_stored(db: Database) -> None:
    store = SqlMessageStore(db)
    ref = REFS[0]
    good = [msg(i, ref) for i in range(60)]
    bad = ChatMessage(ref, "bad", Author("u1", "U1"), None, T0)  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(store.add(m) for m in [*good[:30], bad, *good[30:]]), return_exceptions=True
    )
    assert isinstance(results[30], IntegrityError)
    assert results[:30] + results[31:] == [True] * 60
    assert [e for e, _ in await stored(db, ref)] == [m.external_id for m in good]
    await store.close()


async def test_a_full_queue_makes_callers_wait_and_drops_nothing(db: Database) -> None:
    store = SqlMessageStore(db, max_queued=3)
    ref = REFS[1]
    results = await asyncio.gather(*(store.add(msg(i, ref)) for i in range(400)))
    assert results == [True] * 400
    assert [e for e, _ in await stored(db, ref)] == [f"m{i}" for i in range(400)]
    # Delivered again: stored once, and said so.
    assert await asyncio.gather(*(store.add(msg(i, ref)) for i in range(5))) == [False] * 5
    await store.close()


async def test_an_opt_out_made_by_another_process_keeps_the_next_batch_out(db_url: str) -> None:
    ours, theirs = await open_database(db_url), await open_database(db_url)
    try:
        store = SqlMessageStore(ours)
        ref = REFS[2]
        # This process knows u1 (its id is in memory) before the opt-out.
        known = await asyncio.gather(store.add(msg(1, ref)), store.add(msg(2, ref, "u2")))
        assert known == (True, True) or list(known) == [True, True]
        users = SqlUserStore(theirs, plan_forget)
        await users.set_opted_out("discord", "guild", "u1", True, actor="u1")
        results = await asyncio.gather(
            *(store.add(msg(i, ref, f"u{1 + i % 2}")) for i in range(3, 9))
        )
        assert results == [i % 2 == 1 for i in range(3, 9)]  # u2's only
        assert [e for e, _ in await stored(ours, ref)] == ["m2", "m3", "m5", "m7"]
        await store.close()
    finally:
        await ours.dispose()
        await theirs.dispose()


async def test_closing_commits_every_write_still_queued(db: Database) -> None:
    store = SqlMessageStore(db)
    ref = REFS[3]
    pending = [asyncio.ensure_future(store.add(msg(i, ref))) for i in range(300)]
    await asyncio.sleep(0)  # every write is queued; few, if any, have committed
    await store.close()  # as a stopping bot does, before it lets go of the database
    assert len(await stored(db, ref)) == 300  # committed by the time close returns
    assert await asyncio.gather(*pending) == [True] * 300


_INGESTING = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from bot.app import build_app
    from bot.config import load_settings
    from bot.domain import Author, ChannelRef, ChatMessage

    async def main():
        settings = load_settings(data_dir=sys.argv[1], database_url=sys.argv[2],
                                 base_model="scratch:tiny", torch_threads=1)
        app = await build_app(settings)
        ref = ChannelRef.parse("discord:guild/killed")
        gate = asyncio.Semaphore(50)

        async def one(i):
            m = ChatMessage(ref, f"m{i}", Author("u1", "U1"), f"message {i}",
                            datetime.now(UTC))
            await app.core.on_message(m)
            print(f"m{i}", flush=True)  # acknowledged
            gate.release()

        tasks, i = set(), 0
        while True:  # 50 in flight until killed
            await gate.acquire()
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1

    asyncio.run(main())
    """
)


async def test_a_killed_process_loses_no_message_it_acknowledged(
    tmp_path: Path, db_url: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _INGESTING,
        str(tmp_path / "data"),
        db_url,
        stdout=asyncio.subprocess.PIPE,
        env=os.environ | {"TSUZUKI_LOG_LEVEL": "WARNING"},
    )
    assert proc.stdout is not None
    acknowledged: list[str] = []
    try:
        while len(acknowledged) < 2000:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line, "the ingesting process ended early"
            acknowledged.append(line.decode().strip())
        proc.send_signal(signal.SIGKILL)
        rest = await asyncio.wait_for(proc.stdout.read(), 30)
        acknowledged += [line.strip() for line in rest.decode().splitlines() if line.strip()]
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    db = await open_database(db_url)
    try:
        ids = {e for e, _ in await stored(db, ChannelRef.parse("discord:guild/killed"))}
    finally:
        await db.dispose()
    assert set(acknowledged) <= ids


async def test_a_member_deleted_behind_the_bots_back_is_made_again(db: Database) -> None:
    from sqlalchemy import delete

    from storage.models import User

    store = SqlMessageStore(db)
    ref = REFS[4]
    assert await store.add(msg(1, ref))  # the member's id is now kept in memory
    async with db.write() as session:  # an operator deletes the users row by hand
        await session.execute(delete(User))
    # The next message still lands: the batch that names the gone row fails, and the
    # retry finds the member missing and makes them again.
    assert await store.add(msg(2, ref))
    (latest,) = await store.recent(ref, 1)
    assert (latest.external_id, latest.author.name) == ("m2", "U1")
    await store.close()


async def test_an_opt_out_goes_through_while_a_batch_holds_its_channels(db: Database) -> None:
    """A batch storing messages holds its channels (FOR KEY SHARE) and then asks for its
    authors. An opt-out that took the member's row first and then waited for the
    channel would deadlock with it, and PostgreSQL would end one of the two: the
    member's opt-out answered with an internal error, their messages kept. The opt-out
    takes the channels first, in a mode such a batch does not block."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    from sqlalchemy import text

    store = SqlMessageStore(db)
    users = SqlUserStore(db, plan_forget)
    try:
        history = [msg(i, REFS[i % 2], author="leaver") for i in range(4)]
        assert all(await asyncio.gather(*(store.add(m) for m in history)))
        async with db.write() as batch:  # a batch, part-way: its channels are held
            channels = [
                await batch.scalar(channel_query(ref).with_only_columns(Channel.id))
                for ref in REFS[:2]
            ]
            await batch.execute(
                text("SELECT id FROM channels WHERE id = ANY(:ids) FOR KEY SHARE"),
                {"ids": channels},
            )
            forgotten = await asyncio.wait_for(
                users.set_opted_out("discord", "guild", "leaver", True, actor="test"), 10
            )
            # ...and now asks for its authors, the leaving member among them.
            await batch.execute(text("SELECT id FROM users WHERE external_id = 'leaver' FOR SHARE"))
        assert forgotten == 4
        for ref in REFS[:2]:
            assert await stored(db, ref) == []
    finally:
        await store.close()
