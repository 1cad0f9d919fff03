"""Slack's conventions as the fake uses them: the default ids and limits, `ok: false`
errors, message timestamps, history cursors, parameters as slack_sdk sends them, and
cursor pagination."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import string
from collections.abc import Sequence
from typing import Any

Json = dict[str, Any]

DEFAULT_TEAM_ID = "T0001"
DEFAULT_TEAM_NAME = "Tsuzuki Test"
DEFAULT_TEAM_DOMAIN = "tsuzuki-test"
DEFAULT_CHANNEL_ID = "C0001"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_ID = "A0001"
ADMIN_USER_ID = "UADMIN"
MEMBER_USER_ID = "UMEMBER"
VERIFICATION_TOKEN = "fake-verification-token"

ACK_TIMEOUT = 3.0
MAX_TEXT = 40_000
MAX_HISTORY_LIMIT = 999
DEFAULT_HISTORY_LIMIT = 100
MAX_EVENT_RETRIES = 3
BOT_SCOPES = "app_mentions:read,channels:history,channels:read,chat:write,commands,users:read"

ID_ALPHABET = string.ascii_uppercase + string.digits


# The scopes an app installed from the README's manifest holds; `chat:write.customize`
# (posting under another name and picture) only when a test grants it.
DEFAULT_SCOPES = frozenset(
    "app_mentions:read channels:history groups:history chat:write commands files:write"
    " users:read".split()
)
CUSTOMIZE = "chat:write.customize"


class SlackApiFailure(Exception):
    """Raised inside a method handler: the fake answers `{"ok": false, "error": ...}`."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


# --- timestamps and cursors ------------------------------------------------------------------


def ts_key(ts: str | float | int) -> int:
    """A Slack ts ("1700000000.000100") as integer microseconds (exact, unlike float)."""
    text = f"{ts:.6f}" if isinstance(ts, float) else str(ts)
    seconds, _, fraction = text.partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 6:
        raise ValueError(f"not a Slack ts: {ts!r}")
    return int(seconds) * 1_000_000 + int(fraction.ljust(6, "0") or "0")


def format_ts(key: int) -> str:
    return f"{key // 1_000_000}.{key % 1_000_000:06d}"


def encode_cursor(key: int) -> str:
    return base64.b64encode(f"next_ts:{key}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SlackApiFailure("invalid_cursor") from None
    prefix, _, digits = text.partition(":")
    if prefix != "next_ts" or not digits.isdigit():
        raise SlackApiFailure("invalid_cursor")
    return int(digits)


# --- parameters ------------------------------------------------------------------------------


def flag(value: Any) -> bool | None:
    """A boolean parameter as slack_sdk sends it: JSON bool, or "1"/"0"/"true"/"false"."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false", ""):
        return False
    return bool(value)


def json_list(value: Any) -> list[Any] | None:
    """`blocks` / `attachments`: a list in JSON bodies, a JSON string in form bodies."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SlackApiFailure("invalid_blocks_format") from None
    if not isinstance(value, list):
        raise SlackApiFailure("invalid_blocks_format")
    return value


def str_param(params: Json, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return str(value)


def int_param(params: Json, name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SlackApiFailure("invalid_arguments") from None


# --- history ---------------------------------------------------------------------------------


def is_top_level(message: Json) -> bool:
    thread_ts = message.get("thread_ts")
    return (
        thread_ts is None
        or thread_ts == message["ts"]
        or message.get("subtype") == "thread_broadcast"
    )


def paginate(
    messages: Sequence[Json], params: Json, *, newest_first: bool
) -> tuple[list[Json], bool, str]:
    """Slack's cursor pagination: a page of `limit`, `has_more`, the next cursor."""
    limit = int_param(params, "limit", DEFAULT_HISTORY_LIMIT)
    limit = DEFAULT_HISTORY_LIMIT if limit <= 0 else min(limit, MAX_HISTORY_LIMIT)
    inclusive = bool(flag(params.get("inclusive")))
    oldest = ts_key(str(params["oldest"])) if str_param(params, "oldest") else None
    latest = ts_key(str(params["latest"])) if str_param(params, "latest") else None
    cursor = str_param(params, "cursor")
    start = decode_cursor(cursor) if cursor else None

    def keep(message: Json) -> bool:
        key = ts_key(message["ts"])
        if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
            return False
        if latest is not None and (key > latest or (key == latest and not inclusive)):
            return False
        if start is not None:
            return key <= start if newest_first else key >= start
        return True

    ordered = list(reversed(messages)) if newest_first else list(messages)
    selected = [m for m in ordered if keep(m)]
    page = selected[:limit]
    has_more = len(selected) > limit
    next_cursor = encode_cursor(ts_key(selected[limit]["ts"])) if has_more else ""
    return [copy.deepcopy(m) for m in page], has_more, next_cursor
