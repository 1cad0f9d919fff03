"""Import a history file into the database: parse it whole, then store it in one
transaction, so a broken file stores nothing and a re-import adds nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.domain import ChannelRef
from bot.importing import Progress, gc_paused
from bot.importing.formats import DEFAULT_MAX_BYTES, parse_file
from bot.records import ImportBatch, ImportCounts


class ImportTarget(Protocol):
    """Where an import stores its batch: the message store, which can say how far it
    has got."""

    async def add_batch(
        self, batch: ImportBatch, progress: Progress | None = None
    ) -> dict[ChannelRef, ImportCounts]: ...


@dataclass(frozen=True)
class ImportProgress:
    """Called with (done, in all) while the file is read (records) and while it is
    stored (messages)."""

    parse: Progress
    store: Progress


@dataclass(frozen=True)
class ImportReport:
    path: Path
    per_channel: dict[ChannelRef, ImportCounts]
    skipped: Counter[str]
    parse_s: float = 0.0
    store_s: float = 0.0

    @property
    def imported(self) -> int:
        return sum(c.imported for c in self.per_channel.values())

    @property
    def duplicates(self) -> int:
        return sum(c.duplicates for c in self.per_channel.values())

    @property
    def messages(self) -> int:
        """Messages the file held for storing: imported, duplicates and refused."""
        return sum(
            c.imported + c.duplicates + c.opted_out + c.unlearned for c in self.per_channel.values()
        )


async def import_history(
    messages: ImportTarget,
    path: Path,
    fmt: str | None = None,
    channel: ChannelRef | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: ImportProgress | None = None,
) -> ImportReport:
    with gc_paused():
        start = time.perf_counter()
        # Parsing is CPU work: keep it off the event loop.
        batch = await asyncio.to_thread(
            parse_file, path, fmt, channel, max_bytes, progress.parse if progress else None
        )
        parsed = time.perf_counter()
        counts = await messages.add_batch(batch, progress.store if progress else None)
        stored = time.perf_counter()
    skipped = Counter(batch.skipped)
    refused = sum(c.opted_out for c in counts.values())
    if refused:
        skipped["written by members who opted out"] += refused
    if unlearned := sum(c.unlearned for c in counts.values()):
        skipped["taken out of the history by their author or an admin"] += unlearned
    return ImportReport(path, counts, skipped, parsed - start, stored - parsed)
