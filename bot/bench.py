"""Benchmarks behind `tsuzuki bench …`. Each prints its figures and, where there is a
baseline, the baseline measured in the same run on the same machine."""

from __future__ import annotations

import json
import random
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import Settings
from bot.domain import Author, ChannelRef, ChatMessage, GenerationRequest
from bot.importing.formats import parse_file
from storage.db import open_database
from storage.repositories import SqlMessageStore

_WORDS = (
    "織田信長 は 、 桶狭間 で 今日 明日 天気 いい ね ！ そう だ よ 。 "
    "hello there general kenobi the quick brown fox jumps over lazy dog 🎌 🍣 lol ok"
).split()


def _fake_text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 25)))


def write_jsonl(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            record = {
                "author": f"user{rng.randint(0, 200)}",
                "text": _fake_text(rng),
                "ts": (start + timedelta(seconds=i)).isoformat(),
                "id": i,
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class ImportBench:
    messages: int
    parse_s: float
    store_s: float
    baseline_messages: int
    baseline_s: float

    @property
    def rate(self) -> float:
        return self.messages / (self.parse_s + self.store_s)

    @property
    def baseline_rate(self) -> float:
        return self.baseline_messages / self.baseline_s


async def bench_import(database_url: str, messages: int, baseline_messages: int) -> ImportBench:
    """Imports `messages` JSONL messages into a new channel; the baseline stores
    `baseline_messages` one by one, each in its own transaction (live ingest's path)."""
    db = await open_database(database_url)
    store = SqlMessageStore(db)
    tag = uuid.uuid4().hex[:8]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "history.jsonl"
            write_jsonl(path, messages)
            t0 = time.perf_counter()
            batch = parse_file(path, "jsonl", ChannelRef.parse(f"console:bench-{tag}"))
            t1 = time.perf_counter()
            counts = await store.add_batch(batch)
            t2 = time.perf_counter()
        assert sum(c.imported for c in counts.values()) == messages
        ref = ChannelRef.parse(f"console:bench-{tag}-baseline")
        author = Author("u", "u")
        t3 = time.perf_counter()
        for i in range(baseline_messages):
            await store.add(ChatMessage(ref, str(i), author, "hello", datetime.now(UTC)))
        t4 = time.perf_counter()
    finally:
        await db.dispose()
    return ImportBench(messages, t1 - t0, t2 - t1, baseline_messages, t4 - t3)


@dataclass(frozen=True)
class LatencyBench:
    model: str
    parameters: int
    first_s: float  # includes building/loading the model
    latencies_s: list[float]
    new_tokens: list[int]


async def bench_continue(settings: Settings, prompt: str, runs: int, tokens: int) -> LatencyBench:
    """`/continue` through the app's generator (model resolution, prompt building,
    sampling, decoding) on the configured base model, `runs` times after a first call
    that builds or loads the model."""
    from bot.app import running_app
    from bot.generation.loading import load_directory

    async with running_app(settings) as app:
        ref = ChannelRef.parse(f"console:bench-{uuid.uuid4().hex[:8]}")
        latencies, counts = [], []
        first = 0.0
        for i in range(runs + 1):
            request = GenerationRequest(
                channel=ref,
                settings=await app.commands.effective_settings(
                    ref, {"max_new_tokens": tokens, "seed": i}
                ),
                prompt=prompt,
            )
            t = time.perf_counter()
            result = await app.generator.generate(request)
            if i == 0:
                first = time.perf_counter() - t
                continue
            latencies.append(time.perf_counter() - t)
            counts.append(result.new_tokens)
        source = await app.resolver.resolve(ref)
        loaded = await app.worker.run(load_directory, Path(source.location), source.name)
        params = int(sum(p.numel() for p in loaded.model.parameters()))
    return LatencyBench(settings.base_model, params, first, latencies, counts)
