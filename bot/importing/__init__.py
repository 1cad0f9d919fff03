"""Parsers that turn chat exports into an ImportBatch: JSON Lines, plain text,
DiscordChatExporter JSON and Slack workspace exports. `formats.parse_file` is the
entry point.

Every parser reads and checks the whole input before returning, so a broken file
raises UserError(import_broken) and nothing of it is ever stored. This module holds
the small helpers the parsers share.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot import messages as M
from bot.errors import UserError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Same shape ChannelRef.parse accepts, so an imported channel can be named later.
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def broken(path: Path | str, position: str, problem: str) -> UserError:
    return UserError(M.t("import_broken", path=str(path), position=position, problem=problem))


def json_type(value: object) -> str:
    """JSON's name for the type of `value`, for error messages users can act on."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def json_error_position(err: json.JSONDecodeError) -> str:
    return f"line {err.lineno}, column {err.colno}"


def json_problem(err: json.JSONDecodeError) -> str:
    # json's messages expect a position after them ("Unterminated string starting at");
    # the position is reported on its own.
    return err.msg.removesuffix(" starting at").removesuffix(" at")


def utf8_error_position(data: bytes, err: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, err.start) + 1
    line_start = data.rfind(b"\n", 0, err.start) + 1
    return f"line {line}, column {err.start - line_start + 1}"


def strip_bom(data: bytes) -> bytes:
    # Windows editors often save UTF-8 with a byte-order mark; it is not content.
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def load_json(data: bytes, path: Path | str, member: str = "") -> Any:
    """Parses a whole JSON document; errors name `member` (a file inside an archive or
    folder) before the line and column."""
    prefix = f"{member}, " if member else ""
    data = strip_bom(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise broken(path, prefix + utf8_error_position(data, err), "not valid UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise broken(path, prefix + json_error_position(err), json_problem(err)) from None
    except RecursionError:
        raise broken(path, prefix + "line 1", "JSON nested too deeply") from None


def parse_iso(value: str) -> datetime:
    """An ISO-8601 timestamp as aware UTC; one without a zone is taken to be UTC.
    Raises ValueError."""
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def from_unix(seconds: float) -> datetime:
    """Unix seconds as aware UTC. Raises ValueError for NaN, infinities and values
    outside datetime's range."""
    if not math.isfinite(seconds):
        raise ValueError(seconds)
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(seconds) from None


def is_valid_id(value: str) -> bool:
    return bool(_ID.match(value))
