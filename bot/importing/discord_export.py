"""DiscordChatExporter's JSON export of one channel:
`{"guild": {...}, "channel": {...}, "messages": [...]}`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from bot.domain import Author, ChannelRef, ChatMessage
from bot.importing import broken, is_valid_id, json_type, load_json, parse_iso
from bot.ports import ImportBatch

# Everything else (joins, pins, calls, thread starts…) is written by Discord itself.
_USER_TYPES = frozenset({"Default", "Reply"})


def load(path: Path) -> Any:
    return load_json(path.read_bytes(), path)


def looks_like_export(data: Any) -> bool:
    return isinstance(data, dict) and "messages" in data and "channel" in data


def parse_discord(path: Path, channel: ChannelRef | None = None) -> ImportBatch:
    return parse_data(load(path), path, channel)


def parse_data(data: Any, path: Path, channel: ChannelRef | None = None) -> ImportBatch:
    """`data` is the already parsed JSON of `path`; `channel`, when given, replaces the
    channel named in the export."""
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
    authors: dict[tuple[str, str, bool], Author] = {}
    for i, record in enumerate(records):
        where = f"messages[{i}]"
        if not isinstance(record, dict):
            raise broken(path, where, f"expected a JSON object, got {json_type(record)}")
        kind = record.get("type")
        if not isinstance(kind, str):
            raise broken(path, where, f"'type' must be a string, got {json_type(kind)}")
        message = _message(record, path, where, ref, authors)
        if kind not in _USER_TYPES:
            batch.skipped["system message"] += 1
        elif message.author.is_bot:
            batch.skipped["bot author"] += 1
        elif not message.text.strip():
            batch.skipped["empty text"] += 1
        else:
            batch.messages.append(message)
    return batch


def _message(
    record: dict[str, Any],
    path: Path,
    where: str,
    ref: ChannelRef,
    authors: dict[tuple[str, str, bool], Author],
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
    key = (author_id, nickname or name, is_bot)
    author = authors.get(key)
    if author is None:
        author = authors[key] = Author(id=author_id, name=key[1], is_bot=is_bot)
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
