"""DiscordChatExporter's JSON export of one channel:
`{"guild": {...}, "channel": {...}, "messages": [...]}`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from bot.domain import Author, ChannelRef, ChatMessage
from bot.errors import UserError
from bot.importing import (
    PROGRESS_STEP,
    Progress,
    Unusual,
    broken,
    is_valid_id,
    json_type,
    load_json,
    load_json_fast,
    parse_iso,
    plain_id,
)
from bot.records import ImportBatch

# Everything else (joins, pins, calls, thread starts…) is written by Discord itself.
_USER_TYPES = frozenset({"Default", "Reply"})
# One Author per distinct (id, name, is_bot) keeps memory flat on large exports.
_Authors = dict[tuple[str, str, bool], Author]


def load(path: Path) -> Any:
    return load_json_fast(path.read_bytes(), path)


def looks_like_export(data: Any) -> bool:
    return isinstance(data, dict) and "messages" in data and "channel" in data


def parse_discord(
    path: Path, channel: ChannelRef | None = None, progress: Progress | None = None
) -> ImportBatch:
    return parse_data(load(path), path, channel, progress)


def parse_data(
    data: Any, path: Path, channel: ChannelRef | None = None, progress: Progress | None = None
) -> ImportBatch:
    """`data` is the already parsed JSON of `path` (see load); `channel`, when given,
    replaces the channel named in the export."""
    try:
        return _parse(data, path, channel, progress)
    except UserError:
        # What orjson read as a float (an integer id beyond 64 bits) json reads as an
        # int: the file is refused, and the problem named, only as json reads it.
        return _parse(load_json(path.read_bytes(), path), path, channel, None)


def _parse(
    data: Any, path: Path, channel: ChannelRef | None, progress: Progress | None
) -> ImportBatch:
    if not isinstance(data, dict):
        raise broken(path, "top level", f"expected a JSON object, got {json_type(data)}")
    guild = _object(data, "guild", path, "top level")
    info = _object(data, "channel", path, "top level")
    guild_id = _id(guild, "id", path, "guild")
    channel_id = _id(info, "id", path, "channel")
    name = info.get("name", "")
    if not isinstance(name, str):
        raise broken(path, "channel", f"'name' must be a string, got {json_type(name)}")
    for ident, where in ((guild_id, "guild"), (channel_id, "channel")):
        if not is_valid_id(ident):
            raise broken(path, where, f"'id' is not a Discord id: {ident!r:.60}")
    ref = channel or ChannelRef("discord", guild_id, channel_id)
    records = data.get("messages")
    if not isinstance(records, list):
        raise broken(path, "messages", f"expected an array, got {json_type(records)}")

    batch = ImportBatch(channel_names={ref: name})
    authors: _Authors = {}
    for start in range(0, len(records), PROGRESS_STEP):
        stop = min(start + PROGRESS_STEP, len(records))
        _read_records(records, range(start, stop), path, ref, batch, authors)
        if progress is not None:
            progress(stop, len(records))
    return batch


def _read_records(
    records: list[Any],
    indexes: range,
    path: Path,
    ref: ChannelRef,
    batch: ImportBatch,
    authors: _Authors,
) -> None:
    kept, skipped = batch.messages, batch.skipped
    for i in indexes:
        try:
            kind, message = _fast_message(records[i], ref, authors)
        except Unusual:
            kind, message = _checked_message(records[i], path, f"messages[{i}]", ref, authors)
        if kind not in _USER_TYPES:
            skipped["system message"] += 1
        elif message.author.is_bot:
            skipped["bot author"] += 1
        elif not message.text.strip():
            skipped["empty text"] += 1
        else:
            kept.append(message)


def _fast_message(record: Any, ref: ChannelRef, authors: _Authors) -> tuple[str, ChatMessage]:
    """What _checked_message returns for a plain, valid record; raises Unusual for
    anything else, including every record _checked_message would refuse."""
    if type(record) is not dict:
        raise Unusual
    kind, content, who = record.get("type"), record.get("content"), record.get("author")
    if type(kind) is not str or type(content) is not str or type(who) is not dict:
        raise Unusual
    ident = plain_id(record.get("id"))
    created_at = _plain_time(record.get("timestamp"))
    edited = record.get("timestampEdited")
    edited_at = None if edited is None else _plain_time(edited)
    author_id = plain_id(who.get("id"))
    name, nickname, is_bot = who.get("name"), who.get("nickname"), who.get("isBot", False)
    if type(name) is not str or (nickname is not None and type(nickname) is not str):
        raise Unusual
    if is_bot is not False and is_bot is not True:
        raise Unusual
    author = _author(authors, author_id, nickname or name, is_bot)
    return kind, ChatMessage(ref, ident, author, content, created_at, edited_at)


def _plain_time(value: object) -> datetime:
    if type(value) is not str:
        raise Unusual
    try:
        return parse_iso(value)
    except ValueError:
        raise Unusual from None


def _author(authors: _Authors, author_id: str, name: str, is_bot: bool) -> Author:
    key = (author_id, name, is_bot)
    author = authors.get(key)
    if author is None:
        author = authors[key] = Author(id=author_id, name=name, is_bot=is_bot)
    return author


def _checked_message(
    record: Any, path: Path, where: str, ref: ChannelRef, authors: _Authors
) -> tuple[str, ChatMessage]:
    """(type, message) of one record, or the UserError that says what is wrong."""
    if not isinstance(record, dict):
        raise broken(path, where, f"expected a JSON object, got {json_type(record)}")
    kind = record.get("type")
    if not isinstance(kind, str):
        raise broken(path, where, f"'type' must be a string, got {json_type(kind)}")
    return kind, _message(record, path, where, ref, authors)


def _message(
    record: dict[str, Any],
    path: Path,
    where: str,
    ref: ChannelRef,
    authors: _Authors,
) -> ChatMessage:
    ident = _id(record, "id", path, where)
    content = record.get("content")
    if not isinstance(content, str):
        raise broken(path, where, f"'content' must be a string, got {json_type(content)}")
    created_at = _time(record.get("timestamp"), "timestamp", path, where)
    edited = record.get("timestampEdited")
    edited_at = None if edited is None else _time(edited, "timestampEdited", path, where)
    who = _object(record, "author", path, where)
    author_id = _id(who, "id", path, f"{where}.author")
    name = who.get("name")
    if not isinstance(name, str):
        raise broken(path, f"{where}.author", f"'name' must be a string, got {json_type(name)}")
    nickname = who.get("nickname")
    if nickname is not None and not isinstance(nickname, str):
        raise broken(
            path, f"{where}.author", f"'nickname' must be a string, got {json_type(nickname)}"
        )
    is_bot = who.get("isBot", False)
    if not isinstance(is_bot, bool):
        raise broken(path, f"{where}.author", f"'isBot' must be true or false, got {is_bot!r:.60}")
    author = _author(authors, author_id, nickname or name, is_bot)
    return ChatMessage(ref, ident, author, content, created_at, edited_at)


def _object(parent: dict[str, Any], key: str, path: Path, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise broken(path, where, f"'{key}' must be an object, got {json_type(value)}")
    return value


def _id(parent: dict[str, Any], key: str, path: Path, where: str) -> str:
    """Discord ids are strings in the export, but numbers are accepted as well."""
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise broken(path, where, f"'{key}' must be a non-empty string, got {json_type(value)}")
    return str(value)


def _time(value: object, key: str, path: Path, where: str) -> datetime:
    if not isinstance(value, str):
        raise broken(path, where, f"'{key}' must be an ISO-8601 string, got {json_type(value)}")
    try:
        return parse_iso(value)
    except ValueError:
        raise broken(path, where, f"'{key}' is not a valid time: {value!r:.60}") from None
