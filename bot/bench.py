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

import orjson

from bot.config import Settings
from bot.domain import Author, ChannelRef, ChatMessage, GenerationRequest
from bot.importing.importer import import_history
from storage.db import open_database
from storage.stores import SqlMessageStore

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


def write_discord_export(path: Path, n: int, seed: int = 0) -> None:
    """A DiscordChatExporter JSON export of one channel with `n` messages, shaped like
    the real thing: indented, authors with nicknames and avatars, the empty lists of
    attachments and reactions, some edits and replies."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    messages: list[dict[str, object]] = []
    for i in range(n):
        who = rng.randint(0, 200)
        at = start + timedelta(seconds=i, milliseconds=rng.randint(0, 999))
        messages.append(
            {
                "id": str(1_300_000_000_000_000_000 + i),
                "type": "Reply" if i % 10 == 0 else "Default",
                "timestamp": at.isoformat(timespec="milliseconds"),
                "timestampEdited": (at + timedelta(minutes=1)).isoformat() if i % 20 == 0 else None,
                "callEndedTimestamp": None,
                "isPinned": False,
                "content": _fake_text(rng),
                "author": {
                    "id": str(900_000_000_000_000_000 + who),
                    "name": f"user{who}",
                    "discriminator": "0000",
                    "nickname": f"ユーザー{who}",
                    "color": None,
                    "isBot": False,
                    "roles": [],
                    "avatarUrl": f"https://cdn.discordapp.com/embed/avatars/{who % 5}.png",
                },
                "attachments": [],
                "embeds": [],
                "stickers": [],
                "reactions": [],
                "mentions": [],
            }
        )
    export = {
        "guild": {"id": "1200000000000000000", "name": "Bench", "iconUrl": ""},
        "channel": {
            "id": "1200000000000000001",
            "type": "GuildTextChat",
            "categoryId": "1200000000000000002",
            "category": "Text Channels",
            "name": "general",
            "topic": None,
        },
        "dateRange": {"after": None, "before": None},
        "exportedAt": start.isoformat(),
        "messages": messages,
        "messageCount": n,
    }
    # Indented, as DiscordChatExporter writes it; orjson, as json takes seconds here.
    path.write_bytes(orjson.dumps(export, option=orjson.OPT_INDENT_2))


@dataclass(frozen=True)
class ImportRun:
    """One file imported through `tsuzuki import`'s own path (import_history)."""

    messages: int
    parse_s: float
    store_s: float

    @property
    def rate(self) -> float:
        return self.messages / (self.parse_s + self.store_s)


@dataclass(frozen=True)
class ImportBench:
    jsonl: ImportRun
    discord: ImportRun | None
    baseline_messages: int
    baseline_s: float

    @property
    def baseline_rate(self) -> float:
        return self.baseline_messages / self.baseline_s


async def bench_import(
    database_url: str, messages: int, baseline_messages: int, discord: bool = True
) -> ImportBench:
    """Imports `messages` JSONL messages into a new channel, then (with `discord`) a
    DiscordChatExporter export of as many; the baseline stores `baseline_messages` one
    by one, each in its own transaction (live ingest's path)."""
    db = await open_database(database_url)
    store = SqlMessageStore(db)
    tag = uuid.uuid4().hex[:8]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            jsonl_path = Path(tmp) / "history.jsonl"
            write_jsonl(jsonl_path, messages)
            jsonl_run = await _import_run(
                store, "JSONL", jsonl_path, "jsonl", ChannelRef.parse(f"console:bench-{tag}")
            )
            jsonl_path.unlink()
            discord_run = None
            if discord:
                export = Path(tmp) / "export.json"
                write_discord_export(export, messages)
                ref = ChannelRef.parse(f"discord:bench-{tag}/export")
                discord_run = await _import_run(store, "Discord export", export, "discord", ref)
        ref = ChannelRef.parse(f"console:bench-{tag}-baseline")
        author = Author("u", "u")
        t3 = time.perf_counter()
        for i in range(baseline_messages):
            await store.add(ChatMessage(ref, str(i), author, "hello", datetime.now(UTC)))
        t4 = time.perf_counter()
    finally:
        await db.dispose()
    return ImportBench(jsonl_run, discord_run, baseline_messages, t4 - t3)


async def _import_run(
    store: SqlMessageStore, label: str, path: Path, fmt: str, channel: ChannelRef
) -> ImportRun:
    # The size cap is the operator's setting, not part of what is measured.
    report = await import_history(store, path, fmt, channel, max_bytes=path.stat().st_size)
    if report.imported != report.messages:
        raise AssertionError(f"{label}: {report.imported} of {report.messages} imported")
    return ImportRun(report.imported, report.parse_s, report.store_s)


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
                settings=await app.commands.settings.effective(
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
