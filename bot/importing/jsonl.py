"""JSON Lines: one message object per line,
`{"author": str, "text": str, "ts": ISO-8601 | unix seconds, "id": str | int}` with
optional `author_id` (defaults to the author's name) and `is_bot`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from bot.domain import Author, ChannelRef, ChatMessage
from bot.importing import (
    PROGRESS_STEP,
    Progress,
    Unusual,
    broken,
    from_unix,
    json_problem,
    json_type,
    parse_iso,
    plain_id,
    strip_bom,
)
from bot.records import ImportBatch

# One Author per distinct (id, name) keeps memory flat on large files.
_Authors = dict[tuple[str, str], Author]


def parse_jsonl(path: Path, channel: ChannelRef, progress: Progress | None = None) -> ImportBatch:
    data = strip_bom(path.read_bytes())
    lines = data.split(b"\n")
    batch = ImportBatch()
    authors: _Authors = {}
    for start in range(0, len(lines), PROGRESS_STEP):
        stop = min(start + PROGRESS_STEP, len(lines))
        _read_lines(lines, range(start, stop), data, path, channel, batch, authors)
        if progress is not None:
            progress(stop, len(lines))
    return batch


def _read_lines(
    lines: list[bytes],
    indexes: range,
    data: bytes,
    path: Path,
    channel: ChannelRef,
    batch: ImportBatch,
    authors: _Authors,
) -> None:
    kept, skipped = batch.messages, batch.skipped
    for index in indexes:
        raw = lines[index]
        try:
            message = _fast_message(orjson.loads(raw), channel, authors)
        except (orjson.JSONDecodeError, Unusual):
            # Blank lines, broken lines, and whatever orjson and json read differently
            # (NaN, integers beyond 64 bits…) all go through the exact path, so a file
            # is accepted, refused and reported just as with json alone.
            if not raw.strip():
                continue
            record = _exact_record(lines, index, data, path)
            message = _message(record, path, index + 1, channel, authors)
        if message is None:
            skipped["bot author"] += 1
        elif not message.text.strip():
            skipped["empty text"] += 1
        else:
            kept.append(message)


def _fast_message(record: Any, channel: ChannelRef, authors: _Authors) -> ChatMessage | None:
    """What _message returns for a plain, valid record; raises Unusual for anything
    else, including every record _message would refuse."""
    if type(record) is not dict:
        raise Unusual
    name, text = record.get("author"), record.get("text")
    if type(name) is not str or type(text) is not str or not name.strip():
        raise Unusual
    ident = plain_id(record.get("id"))
    author_id = plain_id(record.get("author_id", name))
    is_bot = record.get("is_bot", False)
    if is_bot is not False and is_bot is not True:
        raise Unusual
    created_at = _plain_time(record.get("ts"))
    if is_bot:
        return None
    author = authors.get((author_id, name))
    if author is None:
        author = authors[author_id, name] = Author(id=author_id, name=name)
    return ChatMessage(channel, ident, author, text, created_at)


def _plain_time(ts: object) -> datetime:
    try:
        if type(ts) is str:
            return parse_iso(ts)
        if type(ts) is int or type(ts) is float:
            return from_unix(ts)
    except ValueError:
        raise Unusual from None
    raise Unusual


def _exact_record(lines: list[bytes], index: int, data: bytes, path: Path) -> Any:
    """The line as json reads it, or the UserError that names where it is broken."""
    number = index + 1
    try:
        text = lines[index].decode("utf-8")
    except UnicodeDecodeError as err:
        where = f"line {number}, column {err.start + 1}"
        raise broken(path, where, "not valid UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        problem = json_problem(err)
        is_last = not any(raw.strip() for raw in lines[index + 1 :])
        if is_last and not data.endswith(b"\n"):
            problem += " (the file looks cut off)"
        raise broken(path, f"line {number}, column {err.colno}", problem) from None


def _message(
    record: Any,
    path: Path,
    number: int,
    channel: ChannelRef,
    authors: _Authors,
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
