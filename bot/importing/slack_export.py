"""A Slack workspace export, as the .zip Slack hands out or that zip unpacked:
channels.json (+ groups.json), users.json and one folder of daily files per channel."""

from __future__ import annotations

import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from bot.domain import Author, ChannelRef, ChatMessage
from bot.importing import broken, from_unix, is_valid_id, json_type, load_json
from bot.records import ImportBatch

# Channel names may be Japanese and the like, so only path syntax is refused.
_FOLDER_NAME = re.compile(r"^[^/\\\x00]{1,200}$")
_DAILY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")
_SLACK_TS = re.compile(r"^(\d{1,12})(?:\.(\d{1,6}))?$")
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


def member_words(record: Mapping[str, Any]) -> tuple[object, object] | None:
    """(user, text): what a member wrote in a Slack message, an export's record or a
    live event alike; None when the message is Slack's own text.

    An allow-list: a message without a subtype, a thread reply also sent to the channel
    and a /me message are a person talking, and so are their words on a file. Every
    other subtype (channel_join, channel_leave, channel_name, channel_topic,
    channel_purpose, pinned_item, bot_message, bot_add, file_mention, and whatever
    Slack adds later) is Slack's notice or a bot's post, never chat history.
    Old-style file messages carry Slack's "<@U…> uploaded a file: <…|name>" as their
    text: only the member's comment on the file is theirs. The text may be "" (a file
    shared without a word), which is nothing to store. The values are the record's
    own, unchecked.
    """
    subtype = record.get("subtype")
    if not subtype or subtype in ("thread_broadcast", "me_message"):
        return record.get("user"), record.get("text", "")
    if subtype == "file_share":
        if "files" in record:
            # New style: a normal message with files; the text is the member's own.
            return record.get("user"), record.get("text", "")
        # Old style: the uploader's words are the file's initial comment.
        file = record.get("file")
        comment = file.get("initial_comment") if isinstance(file, Mapping) else None
        return _comment(record.get("user"), comment)
    if subtype == "file_comment":
        # Old style: "<@U…> commented on <@U…>'s file …: words"; the comment is the
        # commenter's (who need not be the uploader, or be in the record's "user").
        comment = record.get("comment")
        user = comment.get("user") if isinstance(comment, Mapping) else None
        return _comment(user or record.get("user"), comment)
    return None


def _comment(user: object, comment: object) -> tuple[object, object]:
    if not isinstance(comment, Mapping):
        return user, ""
    return user, comment.get("comment", "")


class _Source(Protocol):
    """The files of an export, named by their path relative to the export's root."""

    label: Path

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None when it is not there."""
        ...

    def daily_files(self, folder: str) -> list[str]: ...

    def member(self, name: str) -> str:
        """How errors name the file."""
        ...


class _Folder:
    def __init__(self, root: Path) -> None:
        self.label = root

    def read(self, name: str) -> bytes | None:
        file = self.label / name
        return file.read_bytes() if file.is_file() else None

    def daily_files(self, folder: str) -> list[str]:
        base = self.label / folder
        if not base.is_dir():
            return []
        return sorted(
            f"{folder}/{p.name}"
            for p in base.iterdir()
            if p.is_file() and _DAILY_FILE.match(p.name)
        )

    def member(self, name: str) -> str:
        return name


class _Zip:
    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.label = path
        self.archive = archive
        names = [n for n in archive.namelist() if not n.endswith("/")]
        # Zipping the unpacked folder again puts everything under one more folder;
        # the shallowest channels.json marks the root (macOS adds __MACOSX/ copies).
        roots = sorted(
            (
                n
                for n in names
                if n.rsplit("/", 1)[-1] == "channels.json" and not n.startswith("__MACOSX/")
            ),
            key=lambda n: (n.count("/"), n),
        )
        self.prefix = roots[0][: -len("channels.json")] if roots else ""
        self.names = {n[len(self.prefix) :] for n in names if n.startswith(self.prefix)}

    def read(self, name: str) -> bytes | None:
        if name not in self.names:
            return None
        try:
            return self.archive.read(self.prefix + name)
        except _ZIP_ERRORS as err:
            raise broken(self.label, self.member(name), f"corrupt zip member ({err})") from None

    def daily_files(self, folder: str) -> list[str]:
        start = f"{folder}/"
        return sorted(
            n
            for n in self.names
            if n.startswith(start)
            and "/" not in n[len(start) :]
            and _DAILY_FILE.match(n[len(start) :])
        )

    def member(self, name: str) -> str:
        return self.prefix + name


@dataclass(frozen=True)
class _User:
    name: str
    is_bot: bool


def parse_slack(path: Path, channel: ChannelRef | None = None) -> ImportBatch:
    """`channel`, when given, only supplies the team id (the export has no channel
    of its own to replace: it holds many)."""
    if channel is not None and channel.platform != "slack":
        raise broken(path, "--channel", f"{channel} is not a Slack channel")
    if path.is_dir():
        return _parse(_Folder(path), channel)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as err:
        raise broken(path, "zip archive", f"not a readable zip file ({err})") from None
    with archive:
        return _parse(_Zip(path, archive), channel)


def _parse(source: _Source, channel: ChannelRef | None) -> ImportBatch:
    channels = _channels(source)
    users, user_teams = _users(source)
    message_teams: Counter[str] = Counter()
    batch = ImportBatch()
    # Messages are collected with their channel id and get their ChannelRef once the
    # team id is known, which may come from the messages themselves.
    kept: list[tuple[str, str, Author, str, datetime, datetime | None]] = []
    authors: dict[str, Author] = {}
    for channel_id, name in channels.items():
        for file in source.daily_files(name):
            records = _load(source, file)
            if not isinstance(records, list):
                raise broken(
                    source.label,
                    source.member(file),
                    f"expected an array of messages, got {json_type(records)}",
                )
            for i, record in enumerate(records):
                where = f"{source.member(file)}[{i}]"
                if not isinstance(record, dict):
                    raise broken(
                        source.label, where, f"expected a JSON object, got {json_type(record)}"
                    )
                team = record.get("team")
                if isinstance(team, str) and team:
                    message_teams[team] += 1
                reason = _skip_reason(record, users, source.label, where)
                if reason:
                    batch.skipped[reason] += 1
                    continue
                ts, text, user, edited_at = _fields(record, source.label, where)
                if not text.strip():
                    batch.skipped["empty text"] += 1
                    continue
                author = authors.get(user)
                if author is None:
                    author = authors[user] = Author(id=user, name=_name(user, users, record))
                kept.append((channel_id, ts, author, text, _time(ts), edited_at))

    team_id = _team_id(source.label, channel, user_teams, message_teams)
    refs = {cid: ChannelRef("slack", team_id, cid) for cid in channels}
    batch.channel_names = {refs[cid]: name for cid, name in channels.items()}
    batch.messages = [
        ChatMessage(refs[cid], ts, author, text, created_at, edited_at)
        for cid, ts, author, text, created_at, edited_at in kept
    ]
    return batch


def _load(source: _Source, name: str) -> Any:
    data = source.read(name)
    if data is None:
        return None
    return load_json(data, source.label, source.member(name))


def _channels(source: _Source) -> dict[str, str]:
    """Channel id → name, public channels first, then private ones (groups.json)."""
    out: dict[str, str] = {}
    for listing in ("channels.json", "groups.json"):
        entries = _load(source, listing)
        if entries is None and listing == "channels.json":
            raise broken(
                source.label,
                "channels.json",
                "missing; this does not look like a Slack workspace export",
            )
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise broken(
                source.label, source.member(listing), f"expected an array, got {json_type(entries)}"
            )
        for i, entry in enumerate(entries):
            where = f"{source.member(listing)}[{i}]"
            if not isinstance(entry, dict):
                raise broken(source.label, where, f"expected an object, got {json_type(entry)}")
            cid, name = entry.get("id"), entry.get("name")
            if not isinstance(cid, str) or not is_valid_id(cid):
                raise broken(source.label, where, f"'id' is not a Slack channel id: {cid!r:.60}")
            # The name is also a folder name: refuse anything that could leave the export.
            if not isinstance(name, str) or not _FOLDER_NAME.match(name) or name in {".", ".."}:
                raise broken(
                    source.label, where, f"'name' is not a Slack channel name: {name!r:.60}"
                )
            out[cid] = name
    return out


def _users(source: _Source) -> tuple[dict[str, _User], Counter[str]]:
    entries = _load(source, "users.json")
    users: dict[str, _User] = {}
    teams: Counter[str] = Counter()
    if entries is None:
        return users, teams
    if not isinstance(entries, list):
        raise broken(
            source.label,
            source.member("users.json"),
            f"expected an array, got {json_type(entries)}",
        )
    for i, entry in enumerate(entries):
        where = f"{source.member('users.json')}[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise broken(source.label, where, "expected an object with a string 'id'")
        profile = entry.get("profile")
        profile = profile if isinstance(profile, dict) else {}
        candidates = (
            profile.get("display_name"),
            entry.get("real_name"),
            profile.get("real_name"),
            entry.get("name"),
        )
        name = next((c for c in candidates if isinstance(c, str) and c.strip()), entry["id"])
        users[entry["id"]] = _User(name=name, is_bot=entry.get("is_bot") is True)
        team = entry.get("team_id")
        if isinstance(team, str) and team:
            teams[team] += 1
    return users, teams


def _skip_reason(
    record: dict[str, Any], users: dict[str, _User], label: Path, where: str
) -> str | None:
    subtype = record.get("subtype")
    if subtype is not None and not isinstance(subtype, str):
        raise broken(label, where, f"'subtype' must be a string, got {json_type(subtype)}")
    words = member_words(record)
    if words is None:
        return f"subtype {subtype}"
    if record.get("type", "message") != "message":
        return "system message"
    user = users.get(words[0]) if isinstance(words[0], str) else None
    if record.get("bot_id") or (user is not None and user.is_bot):
        return "bot author"
    return None


def _fields(
    record: dict[str, Any], label: Path, where: str
) -> tuple[str, str, str, datetime | None]:
    """(ts, text, user, edited_at) of a message that is kept."""
    words = member_words(record)
    assert words is not None  # _skip_reason kept it
    ts, (user, text) = record.get("ts"), words
    if not isinstance(ts, str) or not _SLACK_TS.match(ts):
        raise broken(label, where, f"'ts' is not a Slack timestamp: {ts!r:.60}")
    if not isinstance(user, str) or not user:
        raise broken(label, where, f"'user' must be a non-empty string, got {json_type(user)}")
    if not isinstance(text, str):
        raise broken(label, where, f"'text' must be a string, got {json_type(text)}")
    edited = record.get("edited")
    edited_at = None
    if edited is not None:
        edited_ts = edited.get("ts") if isinstance(edited, dict) else None
        if not isinstance(edited_ts, str) or not _SLACK_TS.match(edited_ts):
            raise broken(label, where, "'edited' must be an object with a Slack 'ts'")
        edited_at = _time(edited_ts)
    return ts, text, user, edited_at


def _time(ts: str) -> datetime:
    """Exact to the microsecond, which a float of a 16-digit ts is not always."""
    match = _SLACK_TS.match(ts)
    if match is None:
        raise ValueError(ts)
    seconds, fraction = match.group(1), match.group(2) or ""
    return from_unix(int(seconds)) + timedelta(microseconds=int(fraction.ljust(6, "0")))


def _name(user: str, users: dict[str, _User], record: dict[str, Any]) -> str:
    known = users.get(user)
    if known is not None:
        return known.name
    # Users who left before the export may be missing from users.json; Slack still
    # copies their profile into each message.
    profile = record.get("user_profile")
    if isinstance(profile, dict):
        for key in ("display_name", "real_name", "name"):
            value = profile.get(key)
            if isinstance(value, str) and value.strip():
                return value
    return user


def _team_id(
    label: Path, channel: ChannelRef | None, user_teams: Counter[str], message_teams: Counter[str]
) -> str:
    if channel is not None:
        team = channel.workspace
    elif user_teams:
        team = user_teams.most_common(1)[0][0]
    elif message_teams:
        team = message_teams.most_common(1)[0][0]
    else:
        raise broken(
            label,
            "users.json",
            "cannot tell the Slack team id; pass --channel slack:TEAM/CHANNEL to name it",
        )
    if not is_valid_id(team):
        raise broken(label, "users.json", f"the team id {team!r:.60} is not a Slack team id")
    return team
