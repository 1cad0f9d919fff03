"""Plain UTF-8 text: every non-empty line is one message by the author "import"."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.domain import Author, ChannelRef, ChatMessage
from bot.importing import PROGRESS_STEP, Progress, broken, strip_bom
from bot.records import ImportBatch

IMPORT_AUTHOR = Author(id="import", name="import")


def external_id(line_number: int, text: str) -> str:
    """Depends only on the line's place and content, so importing the same file again
    finds the messages already stored instead of adding them twice."""
    digest = hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"txt:{line_number}:{digest[:12]}"


def parse_text(path: Path, channel: ChannelRef, progress: Progress | None = None) -> ImportBatch:
    data = strip_bom(path.read_bytes())
    # A text file has no times of its own; the file's mtime plus one microsecond per
    # line keeps the lines in order without pretending to know when they were written.
    base = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    batch = ImportBatch()
    lines = data.split(b"\n")
    for index, raw in enumerate(lines):
        if progress is not None and index % PROGRESS_STEP == 0:
            progress(index, len(lines))
        number = index + 1
        try:
            text = raw.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as err:
            where = f"line {number}, column {err.start + 1}"
            raise broken(path, where, "not valid UTF-8") from None
        if not text.strip():
            continue
        batch.messages.append(
            ChatMessage(
                channel,
                external_id(number, text),
                IMPORT_AUTHOR,
                text,
                base + timedelta(microseconds=number),
            )
        )
    return batch
