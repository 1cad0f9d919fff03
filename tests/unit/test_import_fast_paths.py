"""The parsers read with orjson and a fast path per record, and fall back to json and
the checked path for anything else: a file must be accepted, refused and reported
exactly as json alone would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.domain import Author, ChannelRef
from bot.errors import UserError
from bot.importing import jsonl
from bot.importing.formats import parse_file
from tests.exports import EMOJI, JA, discord_export, discord_message, write_jsonl

CONSOLE = ChannelRef.parse("console:general")
BIG = 2**64 + 5  # orjson reads this as a float; json as an int


def test_jsonl_fast_path_reads_records_as_the_checked_path_does(tmp_path: Path) -> None:
    lines: list[dict[str, Any]] = [
        {"author": "hana", "text": JA, "ts": "2024-01-02T03:04:05Z", "id": 1},
        {
            "author": "ken",
            "author_id": 7,
            "text": EMOJI,
            "ts": "2024-01-02T12:00:00+09:00",
            "id": "m",
        },
        {"author": "hana", "text": "padded", "ts": " 2024-01-02 03:04:05.5 ", "id": 3},
        {"author": "hana", "text": "unix", "ts": 1_700_000_000.25, "id": 4, "is_bot": False},
        {"author": "bot", "text": "beep", "ts": 0, "id": 5, "is_bot": True},
        {"author": "hana", "text": "big id", "ts": 0, "id": BIG, "author_id": BIG},
        {"author": "hana", "text": " ", "ts": 0, "id": 6},
    ]
    path = write_jsonl(tmp_path / "h.jsonl", lines)
    batch = parse_file(path, channel=CONSOLE)

    authors: dict[tuple[str, str], Author] = {}
    expected = [
        jsonl._message(json.loads(json.dumps(r)), path, n, CONSOLE, authors)
        for n, r in enumerate(lines, 1)
    ]
    assert batch.messages == [m for m in expected if m is not None and m.text.strip()]
    assert batch.messages[-1].external_id == str(BIG) == batch.messages[-1].author.id
    assert batch.skipped == {"bot author": 1, "empty text": 1}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"author": "a", "text": "x", "ts": NaN, "id": 1}', "'ts' is not a valid time: nan"),
        ('{"author": "a", "text": "x", "ts": 1e400, "id": 1}', "'ts' is not a valid time: inf"),
        (f'{{"author": "a", "text": "x", "ts": {BIG}, "id": 1}}', f"not a valid time: {BIG}"),
        ('{"author": "a", "text": "x", "ts": 0, "id": 1.5}', "'id' must be a non-empty string"),
        ('{"author": "a", "text": "x", "ts": 0, "id": 1,}', "column 47: Expecting property name"),
    ],
)
def test_jsonl_problems_read_as_json_reports_them(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"author": "a", "text": "fine", "ts": 0, "id": 1})
    path.write_text(f"{good}\n{line}\n{good}\n", encoding="utf-8")
    with pytest.raises(UserError) as excinfo:
        parse_file(path, channel=CONSOLE)
    assert "bad.jsonl: line 2" in excinfo.value.reason
    assert problem in excinfo.value.reason
    assert "cut off" not in excinfo.value.reason


def test_jsonl_cut_off_last_line_says_so_and_crlf_and_blank_lines_are_fine(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.jsonl"
    good = json.dumps({"author": "a", "text": "fine", "ts": 0, "id": 1})
    path.write_bytes(f"{good}\r\n\t\r\n{good}\r\n".encode())
    assert len(parse_file(path, channel=CONSOLE).messages) == 2
    path.write_bytes(f"{good}\n\n{good[:20]}".encode())
    with pytest.raises(UserError) as excinfo:
        parse_file(path, channel=CONSOLE)
    assert "line 3, column" in excinfo.value.reason
    assert "(the file looks cut off)" in excinfo.value.reason


def test_discord_ids_beyond_64_bits_and_nan_elsewhere_read_as_json_reads_them(
    tmp_path: Path,
) -> None:
    """orjson refuses NaN, and reads an integer beyond 64 bits as a float, which the
    export's ids may not be: both files are still read as json reads them."""
    export = discord_export([discord_message(0), discord_message(1)])
    export["messages"][1]["id"] = BIG
    export["messages"][1]["author"]["id"] = BIG
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    batch = parse_file(path)
    assert [m.external_id for m in batch.messages] == ["1000", str(BIG)]
    assert batch.messages[1].author.id == str(BIG)

    export["dateRange"] = {"after": float("nan")}
    path.write_text(json.dumps(export), encoding="utf-8")
    assert parse_file(path) == batch


def test_discord_export_reports_progress_to_the_end(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(discord_export([discord_message(i) for i in range(30)])))
    seen: list[tuple[int, int]] = []
    batch = parse_file(path, progress=lambda done, total: seen.append((done, total)))
    assert len(batch.messages) == 30
    assert seen[-1] == (30, 30)
