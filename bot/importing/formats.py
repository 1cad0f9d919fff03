"""Picks the parser for an import file, from --format or from the file itself."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Literal, get_args

from bot import messages as M
from bot.domain import ChannelRef
from bot.errors import UserError
from bot.importing import Progress, discord_export, jsonl, plaintext, slack_export
from bot.records import ImportBatch

Format = Literal["jsonl", "text", "discord", "slack"]
FORMATS: tuple[Format, ...] = get_args(Format)

_BY_SUFFIX: dict[str, Format] = {
    ".zip": "slack",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "text",
}


# The default size cap (settings.import_max_mb).
DEFAULT_MAX_BYTES = 512 * 2**20


def parse_file(
    path: Path,
    fmt: str | None = None,
    channel: ChannelRef | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Progress | None = None,
) -> ImportBatch:
    """Reads and checks all of `path`. `fmt` is one of FORMATS, or None to tell it from
    the file. `channel` names the channel for formats that do not (jsonl, text),
    replaces the one in a Discord export and gives a Slack export its team id.
    `progress` is told (records read, records in all) as it goes, and once more at the
    end.

    Raises UserError when the file is missing, larger than `max_bytes` (a zip: once
    unpacked), its format is unknown, it needs a channel, or any part of it is broken;
    nothing is returned for a broken file."""
    if not path.exists():
        raise UserError(M.t("import_missing", path=str(path)))
    check_size(path, max_bytes)
    preloaded: Any = None
    if fmt is None:
        fmt, preloaded = _detect(path)
    if fmt not in FORMATS or (fmt != "slack" and path.is_dir()):
        raise UserError(M.t("import_format_unknown", path=str(path)))
    batch = _parse(path, fmt, channel, preloaded, progress)
    if progress is not None:
        progress(len(batch.messages), len(batch.messages))
    return batch


def _parse(
    path: Path,
    fmt: str,
    channel: ChannelRef | None,
    preloaded: Any,
    progress: Progress | None,
) -> ImportBatch:
    if fmt == "slack":
        return slack_export.parse_slack(path, channel)
    if fmt == "discord":
        if preloaded is None:
            return discord_export.parse_discord(path, channel, progress)
        return discord_export.parse_data(preloaded, path, channel, progress)
    if channel is None:
        raise UserError(M.t("import_needs_channel", path=str(path)))
    if fmt == "jsonl":
        return jsonl.parse_jsonl(path, channel, progress)
    return plaintext.parse_text(path, channel, progress)


def check_size(path: Path, max_bytes: int) -> None:
    """Refuses, before reading a byte of content, a file, folder or zip whose content
    is larger than `max_bytes`. A zip's own directory gives each member's unpacked
    size, and zipfile never returns more than that, so a zip bomb is caught here."""
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            size = sum(info.file_size for info in archive.infolist())
    else:
        size = path.stat().st_size
    if size > max_bytes:
        unpacked = " unpacked" if path.is_file() and zipfile.is_zipfile(path) else ""
        raise UserError(
            M.t(
                "import_too_large",
                path=str(path),
                size=f"{size / 2**20:,.0f}",
                unpacked=unpacked,
                limit=f"{max_bytes / 2**20:,.0f}",
            )
        )


def detect_format(path: Path) -> Format:
    """The format of an existing `path`, or UserError(import_format_unknown)."""
    return _detect(path)[0]


def _detect(path: Path) -> tuple[Format, Any]:
    """The format, and for .json the parsed document, so it is not parsed twice."""
    if path.is_dir():
        return "slack", None
    suffix = path.suffix.lower()
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix], None
    if suffix == ".json":
        data = discord_export.load(path)
        if discord_export.looks_like_export(data):
            return "discord", data
    raise UserError(M.t("import_format_unknown", path=str(path)))
