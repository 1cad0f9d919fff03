"""Parsers that turn chat exports into an ImportBatch: JSON Lines, plain text,
DiscordChatExporter JSON and Slack workspace exports. `formats.parse_file` is the
entry point.

Every parser reads and checks the whole input before returning, so a broken file
raises UserError(import_broken) and nothing of it is ever stored. This module holds
the small helpers the parsers share.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bot import messages as M
from bot.domain import ID_PART
from bot.errors import UserError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Called with (records done, records in all) while a file is read or stored.
Progress = Callable[[int, int], None]
# How many records a parser handles between two progress reports.
PROGRESS_STEP = 8192


@contextmanager
def gc_paused() -> Iterator[None]:
    """Holds off the cyclic garbage collector. An import allocates millions of
    containers that all stay alive (parsed records, messages, rows), so each pass of
    the collector frees nothing, yet those passes took up to half of the parse time
    (a Discord export). Nothing is lost: reference counting still frees everything
    else at once, and the collector catches up when this ends."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Unusual(Exception):
    """Raised by a parser's fast path for a record it does not vouch for; the parser
    then reads that record the exact way, which accepts it or names what is wrong."""


def plain_id(value: object) -> str:
    """A JSON id (a non-empty string, or an integer) as a string; raises Unusual for
    anything else. Exact types: JSON never yields subclasses, and bool is refused."""
    if type(value) is str and value:
        return value
    if type(value) is int:
        return str(value)
    raise Unusual


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


def load_json_fast(data: bytes, path: Path | str) -> Any:
    """Parses a whole JSON document with orjson, about 1.7 times as fast as json on a
    large export.

    orjson is stricter (no NaN, Infinity or lone surrogates) and its errors read
    differently, so a document it refuses goes to load_json: what json accepts is still
    accepted, and a broken file is reported exactly as before. orjson also turns
    integers beyond 64 bits into floats: a caller that refuses the document parses it
    again with load_json before saying why."""
    try:
        return orjson.loads(strip_bom(data))
    except orjson.JSONDecodeError:
        return load_json(data, path)


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
    # The shape ChannelRef.parse accepts, so an imported channel can be named later.
    return bool(ID_PART.match(value))
