"""`tsuzuki bench ingest`: live ingest's messages/s through `Core.on_message`, with
group commit against one transaction per message (the path before it), each idle and
while a training run has the CPU; then a burst of 10,000 events (messages, edits,
deletes) sent at once, checked for loss and order once it has drained.

Messages come from 20 channels, 50 in flight at a time (a busy server: many handlers
awaiting the store at once). Both paths run in this process, one app each, on the same
database kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bot.benchmarks.fixtures import percentile
from bot.demo import DEMO_HISTORY
from bot.domain import Author, ChannelRef, ChatMessage

CHANNELS = 20
IN_FLIGHT = 50
AUTHORS = 300
BURST = 10_000
_WORDS = "織田信長 は 桶狭間 で 今日 天気 いい ね そう だ よ hello there the quick fox lol".split()


@dataclass(frozen=True)
class IngestRun:
    path: str  # "group commit" | "per message"
    training: bool
    messages: int
    seconds: float
    latencies: list[float]  # each on_message call, start to return
    batches: int  # transactions the group commit took (0 on the per-message path)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


@dataclass(frozen=True)
class BurstRun:
    events: int
    seconds: float
    lost: int  # messages that should be stored and are not
    wrong_text: int  # stored with other than their last edit's text
    resurrected: int  # deleted, yet stored
    out_of_order: int  # channels whose rows are not in arrival order
    batches: int


@dataclass(frozen=True)
class IngestBench:
    database: str
    runs: list[IngestRun]
    burst: BurstRun | None


class _Feed:
    """Messages of CHANNELS channels and AUTHORS members, numbered as they arrive."""

    def __init__(self, tag: str) -> None:
        self.refs = [ChannelRef.parse(f"discord:bench-{tag}/c{i}") for i in range(CHANNELS)]
        self.authors = [Author(f"u{i}", f"member {i}") for i in range(AUTHORS)]
        self.rng = random.Random(0)
        self.start = datetime(2026, 1, 1, tzinfo=UTC)
        self.n = 0

    def next(self) -> ChatMessage:
        i, self.n = self.n, self.n + 1
        words = " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(3, 20)))
        return ChatMessage(
            self.refs[i % CHANNELS],
            str(i),
            self.authors[self.rng.randrange(AUTHORS)],
            words,
            self.start + timedelta(milliseconds=i),
        )


async def _in_flight(calls: list[Callable[[], Awaitable[Any]]], limit: int) -> list[float]:
    """Runs the calls `limit` at a time, in order; each one's latency."""
    gate = asyncio.Semaphore(limit)
    latencies: list[float] = []

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one(c) for c in calls))
    return latencies


async def _ingest(app: Any, feed: _Feed, count: int, path: str, training: bool) -> IngestRun:
    messages = [feed.next() for _ in range(count)]
    writes = app.messages.writes
    batches = writes.batches if writes is not None else 0
    started = time.perf_counter()
    latencies = await _in_flight([partial(app.core.on_message, m) for m in messages], IN_FLIGHT)
    seconds = time.perf_counter() - started
    batches = (writes.batches - batches) if writes is not None else 0
    return IngestRun(path, training, count, seconds, latencies, batches)


@contextlib.asynccontextmanager
async def _training(app: Any) -> Any:
    """A LoRA training run of another channel, under way until the block ends."""
    from bot.importing.importer import import_history
    from bot.training.outcome import TrainOptions

    club = ChannelRef.parse(f"console:bench-club-{uuid.uuid4().hex[:6]}")
    await import_history(app.messages, DEMO_HISTORY, "jsonl", club)
    await app.channels.set_training(club, True, actor="bench")
    under_way = asyncio.Event()
    task = asyncio.create_task(
        app.training.train(
            club,
            TrainOptions.of(max_steps=1_000_000, batch_size=4),
            lambda *_: under_way.set(),
        )
    )
    waiting = asyncio.create_task(under_way.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiting.cancel()
        task.result()  # raises what stopped it
        raise RuntimeError("the background training run ended before the measurement")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _side(
    settings: Any, group: bool, counts: tuple[int, int], burst: bool
) -> tuple[list[IngestRun], BurstRun | None]:
    from bot.app import running_app

    path = "group commit" if group else "per message"
    side = settings.model_copy(update={"ingest_group_commit": group})
    feed = _Feed(uuid.uuid4().hex[:8])
    async with running_app(side) as app:
        await _ingest(app, feed, 200, path, False)  # channels, members and caches made
        runs = [await _ingest(app, feed, counts[0], path, False)]
        async with _training(app):
            runs.append(await _ingest(app, feed, counts[1], path, True))
        result = await _burst(app, _Feed(uuid.uuid4().hex[:8])) if burst else None
    return runs, result


async def _burst(app: Any, feed: _Feed) -> BurstRun:
    """BURST events at once: messages, then (mixed in) edits and deletes of earlier
    ones, each sent after the message it changes, as a platform sends them."""
    rng = random.Random(1)
    events: list[Callable[[], Awaitable[Any]]] = []
    stored: list[ChatMessage] = []
    text: dict[tuple[ChannelRef, str], str] = {}
    deleted: set[tuple[ChannelRef, str]] = set()
    for _ in range(BURST):
        roll = rng.random()
        if roll < 0.85 or len(stored) < 10:
            m = feed.next()
            stored.append(m)
            text[m.channel, m.external_id] = m.text
            events.append(partial(app.core.on_message, m))
            continue
        target = rng.choice(stored[-500:])
        key = (target.channel, target.external_id)
        if roll < 0.95 and key not in deleted:
            new = f"{text[key]} (edited {len(events)})"
            text[key] = new
            at = target.created_at + timedelta(seconds=1 + len(events) / 1000)
            events.append(partial(app.core.on_edit, key[0], key[1], new, at))
        else:
            deleted.add(key)
            events.append(partial(app.core.on_delete, key[0], [key[1]]))
    writes = app.messages.writes
    batches = writes.batches if writes is not None else 0
    started = time.perf_counter()
    await asyncio.gather(*(call() for call in events))
    seconds = time.perf_counter() - started
    batches = (writes.batches - batches) if writes is not None else 0
    lost = wrong = resurrected = disorder = 0
    for ref in feed.refs:
        rows = await _stored(app, ref)
        expected = [
            m.external_id
            for m in stored
            if m.channel == ref and (ref, m.external_id) not in deleted
        ]
        ids = [external for external, _ in rows]
        resurrected += sum(1 for e in ids if (ref, e) in deleted)
        lost += len(set(expected) - set(ids))
        wrong += sum(1 for e, t in rows if (ref, e) in text and text[ref, e] != t)
        disorder += ids != expected
    return BurstRun(len(events), seconds, lost, wrong, resurrected, disorder, batches)


async def _stored(app: Any, ref: ChannelRef) -> list[tuple[str, str]]:
    """The channel's (external id, text) in the order they were stored."""
    from sqlalchemy import select

    from storage.models import Message
    from storage.stores.rows import channel_id_query

    async with app.db.read() as session:
        rows = await session.execute(
            select(Message.external_id, Message.text)
            .where(Message.channel_id == channel_id_query(ref))
            .order_by(Message.id)
        )
        return [(str(e), str(t)) for e, t in rows]


async def measure(
    settings: Any, group_counts: tuple[int, int], baseline_counts: tuple[int, int]
) -> IngestBench:
    ours, burst = await _side(settings, True, group_counts, burst=True)
    theirs, _ = await _side(settings, False, baseline_counts, burst=False)
    database = "PostgreSQL" if settings.resolved_database_url.startswith("postgresql") else "SQLite"
    return IngestBench(database, [*ours, *theirs], burst)


def report(r: IngestBench) -> list[str]:
    lines = [f"{r.database}: {CHANNELS} channels, {IN_FLIGHT} messages in flight"]
    by = {(run.path, run.training): run for run in r.runs}
    for training in (False, True):
        ours, theirs = by["group commit", training], by["per message", training]
        when = "while training" if training else "idle          "
        lines.append(
            f"{when}  group commit {ours.rate:8,.0f} msg/s"
            f" (p50 {percentile(ours.latencies, 0.5) * 1000:5.1f} ms,"
            f" p99 {percentile(ours.latencies, 0.99) * 1000:6.1f} ms,"
            f" {ours.messages / max(1, ours.batches):5.1f} per transaction)"
            f"  per message {theirs.rate:6,.0f} msg/s"
            f" (p50 {percentile(theirs.latencies, 0.5) * 1000:6.1f} ms)"
            f"  → {ours.rate / theirs.rate:5.1f}x"
        )
    if r.burst is not None:
        b = r.burst
        lines.append(
            f"burst of {b.events:,} events at once: drained in {b.seconds:.2f}s"
            f" ({b.events / b.seconds:,.0f} events/s, {b.batches} transactions);"
            f" lost {b.lost}, wrong text {b.wrong_text}, deleted yet stored {b.resurrected},"
            f" channels out of order {b.out_of_order}"
        )
    return lines


def settings_for(workdir: Path, threads: int, database_url: str | None) -> Any:
    """The benchmark's own app: the 124M-shaped base to train in the background, a fresh data
    directory, and SQLite unless a database is named."""
    from bot.benchmarks.fixtures import bench_settings, build_base

    base = build_base(workdir / "base")
    settings = bench_settings(workdir, "ingest", base, threads)
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings


def run(
    workdir: Path,
    threads: int,
    database_url: str | None,
    group: tuple[int, int],
    baseline: tuple[int, int],
) -> IngestBench:
    settings = settings_for(workdir, threads, database_url)
    return asyncio.run(measure(settings, group, baseline))
