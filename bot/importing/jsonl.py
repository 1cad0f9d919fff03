"""JSON Lines: one message object per line,
`{"author": str, "text": str, "ts": ISO-8601 | unix seconds, "id": str | int}` with
optional `author_id` (defaults to the author's name) and `is_bot`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.domain import Author, ChannelRef, ChatMessage
from bot.importing import broken, from_unix, json_problem, json_type, parse_iso, strip_bom
from bot.ports import ImportBatch


def parse_jsonl(path: Path, channel: ChannelRef) -> ImportBatch:
    data = strip_bom(path.read_bytes())
    lines = data.split(b"\n")
    last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    batch = ImportBatch()
    # One Author per distinct (id, name) keeps memory flat on large files.
    authors: dict[tuple[str, str], Author] = {}
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        number = index + 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            where = f"line {number}, column {err.start + 1}"
            raise broken(path, where, "not valid UTF-8") from None
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            problem = json_problem(err)
            if index == last and not data.endswith(b"\n"):
                problem += " (the file looks cut off)"
            raise broken(path, f"line {number}, column {err.colno}", problem) from None
        message = _message(record, path, number, channel, authors)
        if message is None:
            batch.skipped["bot author"] += 1
        elif not message.text.strip():
            batch.skipped["empty text"] += 1
        else:
            batch.messages.append(message)
    return batch


def _message(
    record: Any,
    path: Path,
    number: int,
    channel: ChannelRef,
    authors: dict[tuple[str, str], Author],
) -> ChatMessage | None:
    """The line's message, or None when a bot wrote it. Raises import_broken."""
    where = f"line {number}"
    if not isinstance(record, dict):
        raise broken(path, where, f"expected a JSON object, got {json_type(record)}")
    for required in ("author", "text", "ts", "id"):
        if required not in record:
            raise broken(path, where, f"missing key '{required}'")
    name, text, ts, ident = record["author"], record["text"], record["ts"], record["id"]
    if not isinstance(name, str) or not name.strip():
        raise broken(path, where, f"'author' must be a non-empty string, got {json_type(name)}")
    if not isinstance(text, str):
        raise broken(path, where, f"'text' must be a string, got {json_type(text)}")
    if isinstance(ident, bool) or not isinstance(ident, str | int) or ident == "":
        raise broken(path, where, f"'id' must be a non-empty string or integer, got {ident!r:.60}")
    author_id = record.get("author_id", name)
    if isinstance(author_id, bool) or not isinstance(author_id, str | int) or author_id == "":
        raise broken(path, where, f"'author_id' must be a non-empty string, got {author_id!r:.60}")
    is_bot = record.get("is_bot", False)
    if not isinstance(is_bot, bool):
        raise broken(path, where, f"'is_bot' must be true or false, got {json_type(is_bot)}")
    created_at = _timestamp(ts, path, where)
    if is_bot:
        return None
    key = (str(author_id), name)
    author = authors.get(key)
    if author is None:
        author = authors[key] = Author(id=key[0], name=name)
    return ChatMessage(channel, str(ident), author, text, created_at)


def _timestamp(ts: object, path: Path, where: str) -> datetime:
    try:
        if isinstance(ts, str):
            return parse_iso(ts)
        if isinstance(ts, int | float) and not isinstance(ts, bool):
            return from_unix(ts)
    except ValueError:
        raise broken(path, where, f"'ts' is not a valid time: {ts!r:.60}") from None
    raise broken(
        path, where, f"'ts' must be an ISO-8601 string or unix seconds, got {json_type(ts)}"
    )
