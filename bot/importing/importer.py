"""Import a history file into the database: parse it whole, then store it in one
transaction, so a broken file stores nothing and a re-import adds nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bot.domain import ChannelRef
from bot.importing.formats import DEFAULT_MAX_BYTES, parse_file
from bot.ports import ImportCounts, MessageStore


@dataclass(frozen=True)
class ImportReport:
    path: Path
    per_channel: dict[ChannelRef, ImportCounts]
    skipped: Counter[str]

    @property
    def imported(self) -> int:
        return sum(c.imported for c in self.per_channel.values())

    @property
    def duplicates(self) -> int:
        return sum(c.duplicates for c in self.per_channel.values())


async def import_history(
    messages: MessageStore,
    path: Path,
    fmt: str | None = None,
    channel: ChannelRef | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImportReport:
    # Parsing is CPU work: keep it off the event loop.
    batch = await asyncio.to_thread(parse_file, path, fmt, channel, max_bytes)
    counts = await messages.add_batch(batch)
    skipped = Counter(batch.skipped)
    refused = sum(c.opted_out for c in counts.values())
    if refused:
        skipped["written by members who opted out"] += refused
    return ImportReport(path, counts, skipped)
