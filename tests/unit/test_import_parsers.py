"""The import parsers, on files built here: what they keep, what they skip and why, and
how they report broken input."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.domain import ChannelRef
from bot.errors import UserError
from bot.importing.formats import detect_format, parse_file
from tests.exports import (
    EMOJI,
    JA,
    discord_export,
    discord_message,
    slack_folder,
    slack_notices_and_files,
    write_jsonl,
    zip_folder,
)

CONSOLE = ChannelRef.parse("console:general")


def reason(exc: pytest.ExceptionInfo[UserError]) -> str:
    return exc.value.reason


# --- JSON Lines -------------------------------------------------------------------


def test_jsonl_keeps_fields_and_skips_bots_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {"author": "hana", "text": JA, "ts": "2024-01-02T03:04:05Z", "id": 1},
                {
                    "author": "ken",
                    "author_id": "u-7",
                    "text": EMOJI,
                    "ts": "2024-01-02T12:00:00+09:00",
                    "id": "m2",
                },
                {"author": "bot", "text": "beep", "ts": 1700000000, "id": 3, "is_bot": True},
                {"author": "hana", "text": "   ", "ts": 1700000000.5, "id": 4},
                {"author": "hana", "text": "naive", "ts": "2024-01-02 03:04:05.123456", "id": 5},
                {"author": "hana", "text": "unix", "ts": 1700000000.25, "id": 6},
            ]
        ).replace("\n", "\n\n", 1)  # a blank line is not a record
        + "\n",
        encoding="utf-8",
    )
    batch = parse_file(path, channel=CONSOLE)

    assert [m.external_id for m in batch.messages] == ["1", "m2", "5", "6"]
    assert batch.skipped == {"bot author": 1, "empty text": 1}
    first, second, naive, unix = batch.messages
    assert first.text == JA and second.text == EMOJI
    assert first.channel == CONSOLE
    assert (first.author.id, first.author.name) == ("hana", "hana")
    assert (second.author.id, second.author.name) == ("u-7", "ken")
    assert first.created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert second.created_at == datetime(2024, 1, 2, 3, 0, tzinfo=UTC)
    assert naive.created_at == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert unix.created_at == datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC)
    for m in batch.messages:
        assert m.created_at.utcoffset() == timedelta(0)
        assert m.edited_at is None
    assert batch.channel_names == {}


def test_jsonl_detected_by_extension(tmp_path: Path) -> None:
    record = {"author": "a", "text": "x", "ts": 0, "id": 1}
    for name in ("a.jsonl", "b.NDJSON"):
        path = write_jsonl(tmp_path / name, [record])
        assert detect_format(path) == "jsonl"
        assert len(parse_file(path, channel=CONSOLE).messages) == 1


def test_jsonl_truncated_last_line_names_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "cut.jsonl",
        [
            {"author": "a", "text": "one", "ts": 0, "id": 1},
            {"author": "a", "text": "two", "ts": 0, "id": 2},
        ],
    )
    with path.open("a", encoding="utf-8") as f:
        f.write('\n{"author": "a", "text": "thr')
    with pytest.raises(UserError) as exc:
        parse_file(path, channel=CONSOLE)
    assert "cut.jsonl" in reason(exc)
    assert "line 4, column 25" in reason(exc)
    assert "Nothing was imported" in reason(exc)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"author": "a", "ts": 0, "id": 1}, "'text'"),
        ({"author": "a", "text": "x", "ts": 0}, "'id'"),
        ({"author": "a", "text": 5, "ts": 0, "id": 1}, "'text' must be a string"),
        ({"author": "a", "text": "x", "ts": [1], "id": 1}, "'ts'"),
        ({"author": "a", "text": "x", "ts": "yesterday", "id": 1}, "'ts' is not a valid time"),
        ({"author": "a", "text": "x", "ts": 0, "id": True}, "'id'"),
        ({"author": "a", "text": "x", "ts": 0, "id": 1, "is_bot": "no"}, "'is_bot'"),
        (["not", "an", "object"], "expected a JSON object"),
    ],
)
def test_jsonl_bad_record_names_its_line(tmp_path: Path, record: Any, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"author": "a", "text": "fine", "ts": 0, "id": 1})
    path.write_text(f"{good}\n\n{json.dumps(record)}\n{good}\n", encoding="utf-8")
    with pytest.raises(UserError) as exc:
        parse_file(path, channel=CONSOLE)
    assert "bad.jsonl: line 3:" in reason(exc)
    assert problem in reason(exc)


def test_jsonl_100k_lines_all_arrive_in_order(tmp_path: Path) -> None:
    # Speed is `tsuzuki bench import`'s to measure, side by side; here: nothing lost.
    path = tmp_path / "big.jsonl"
    line = '{{"author": "u{0}", "text": "メッセージ {0}", "ts": {0}, "id": {0}}}\n'
    path.write_text("".join(line.format(i) for i in range(100_000)), encoding="utf-8")
    batch = parse_file(path, channel=CONSOLE)
    assert len(batch.messages) == 100_000
    assert batch.messages[-1].text == "メッセージ 99999"


# --- Plain text -------------------------------------------------------------------


def test_text_lines_become_messages_with_stable_ids(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(f"first line\r\n\n{JA}\n   \n{EMOJI}".encode())
    mtime = 1_700_000_000
    os.utime(path, (mtime, mtime))

    batch = parse_file(path, channel=CONSOLE)
    again = parse_file(path, channel=CONSOLE)

    assert [m.text for m in batch.messages] == ["first line", JA, EMOJI]
    assert [m.external_id for m in batch.messages] == [m.external_id for m in again.messages]
    ids = [m.external_id for m in batch.messages]
    assert ids[0].startswith("txt:1:") and ids[1].startswith("txt:3:")
    assert ids[2].startswith("txt:5:")
    assert len(set(ids)) == 3 and all(len(i.split(":")[2]) == 12 for i in ids)
    base = datetime.fromtimestamp(mtime, UTC)
    assert [m.created_at for m in batch.messages] == [
        base + timedelta(microseconds=n) for n in (1, 3, 5)
    ]
    assert all(m.author.id == "import" == m.author.name for m in batch.messages)
    assert batch.skipped == {}


def test_text_same_line_at_another_place_gets_another_id(tmp_path: Path) -> None:
    one = tmp_path / "one.txt"
    one.write_text("hello\nworld\n", encoding="utf-8")
    two = tmp_path / "two.txt"
    two.write_text("world\nhello\n", encoding="utf-8")
    ids_one = {m.external_id for m in parse_file(one, channel=CONSOLE).messages}
    ids_two = {m.external_id for m in parse_file(two, channel=CONSOLE).messages}
    assert ids_one.isdisjoint(ids_two)


def test_text_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok\nalso ok\ncaf\xe9\n")
    with pytest.raises(UserError) as exc:
        parse_file(path, channel=CONSOLE)
    assert "latin1.txt: line 3, column 4" in reason(exc)
    assert "UTF-8" in reason(exc)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.txt", "hello\n"),
        ("a.jsonl", '{"author": "a", "text": "x", "ts": 0, "id": 1}\n'),
    ],
)
def test_jsonl_and_text_need_a_channel(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as exc:
        parse_file(path)
    assert name in reason(exc) and "--channel" in reason(exc)


# --- Discord ----------------------------------------------------------------------


def test_discord_export_keeps_people_and_skips_the_rest(tmp_path: Path) -> None:
    bot_author = {"id": "9", "name": "helper", "nickname": "helper", "isBot": True}
    plain_author = {"id": "43", "name": "jiro", "isBot": False}
    path = tmp_path / "export.json"
    path.write_text(
        json.dumps(
            discord_export(
                [
                    discord_message(0, content=JA, timestampEdited="2023-05-01T02:00:00+00:00"),
                    discord_message(1, type="Reply", content=EMOJI, author=plain_author),
                    discord_message(2, type="GuildMemberJoin", content=""),
                    discord_message(3, type="ChannelPinnedMessage"),
                    discord_message(4, author=bot_author),
                    discord_message(5, content=""),
                    discord_message(6, content=" \n "),
                ]
            ),
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )

    assert detect_format(path) == "discord"
    batch = parse_file(path)

    ref = ChannelRef("discord", "111", "222")
    assert batch.channel_names == {ref: "雑談"}
    assert batch.skipped == {"system message": 2, "bot author": 1, "empty text": 2}
    assert [m.external_id for m in batch.messages] == ["1000", "1001"]
    first, reply = batch.messages
    assert first.channel == ref == reply.channel
    assert first.text == JA and reply.text == EMOJI
    assert (first.author.id, first.author.name) == ("42", "Taro-san")
    assert (reply.author.id, reply.author.name) == ("43", "jiro")
    assert first.created_at == datetime(2023, 5, 1, 1, 0, 0, 123000, tzinfo=UTC)
    assert first.created_at.tzinfo == UTC
    assert first.edited_at == datetime(2023, 5, 1, 2, 0, tzinfo=UTC)
    assert reply.edited_at is None


def test_discord_channel_argument_overrides_the_export(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(discord_export([discord_message(0)])), encoding="utf-8")
    other = ChannelRef.parse("discord:5/6")
    batch = parse_file(path, "discord", other)
    assert [m.channel for m in batch.messages] == [other]
    assert batch.channel_names == {other: "雑談"}


def test_broken_discord_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    text = json.dumps(discord_export([discord_message(0), discord_message(1)]), indent=2)
    lines = text.splitlines()
    target = next(i for i, line in enumerate(lines) if '"content": "message 1"' in line)
    lines[target] = lines[target].replace('"message 1"', '"message 1" oops')
    path.write_text("\n".join(lines), encoding="utf-8")
    column = lines[target].index("oops") + 1  # where a "," was expected
    with pytest.raises(UserError) as exc:
        parse_file(path)
    assert f"export.json: line {target + 1}, column {column}:" in reason(exc)


def test_discord_message_missing_fields_is_named_by_index(tmp_path: Path) -> None:
    broken = discord_message(1)
    del broken["timestamp"]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(discord_export([discord_message(0), broken])), encoding="utf-8")
    with pytest.raises(UserError) as exc:
        parse_file(path)
    assert "export.json: messages[1]:" in reason(exc)
    assert "timestamp" in reason(exc)


def test_json_that_is_not_a_discord_export_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"messages": []}', encoding="utf-8")
    with pytest.raises(UserError) as exc:
        parse_file(path)
    assert "Cannot tell the format of" in reason(exc) and "other.json" in reason(exc)


def test_unknown_extension_and_missing_path(tmp_path: Path) -> None:
    odd = tmp_path / "chat.csv"
    odd.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(UserError) as exc:
        parse_file(odd, channel=CONSOLE)
    assert "Cannot tell the format" in reason(exc)
    with pytest.raises(UserError) as exc:
        parse_file(tmp_path / "nope.jsonl", channel=CONSOLE)
    assert "nope.jsonl does not exist" in reason(exc)
    with pytest.raises(UserError):
        parse_file(odd, "csv", CONSOLE)


# --- Slack ------------------------------------------------------------------------


def test_slack_folder_export(tmp_path: Path) -> None:
    root = slack_folder(tmp_path / "export")
    assert detect_format(root) == "slack"
    batch = parse_file(root)

    general = ChannelRef("slack", "T123", "C01")
    assert batch.channel_names == {
        general: "general",
        ChannelRef("slack", "T123", "C02"): "random",
        ChannelRef("slack", "T123", "C03"): "never-used",
        ChannelRef("slack", "T123", "G01"): "secret",
    }
    assert batch.skipped == {
        "subtype channel_join": 2,
        "subtype bot_message": 1,
        "bot author": 2,
        "empty text": 1,
    }
    by_id = {m.external_id: m for m in batch.messages}
    assert list(by_id) == [
        "1700000000.000100",
        "1700000001.000200",
        "1700086400.000001",
        "1700086401.000002",
        "1700086405.123456",
        "1700000009.999999",
        "1700172800.500000",
    ]
    first = by_id["1700000000.000100"]
    assert first.channel == general and first.text == JA
    assert (first.author.id, first.author.name) == ("U1", "はな")
    assert first.created_at == datetime(2023, 11, 14, 22, 13, 20, 100, tzinfo=UTC)
    assert first.edited_at is None
    edited = by_id["1700000001.000200"]
    assert edited.text == EMOJI and edited.author.name == "Ken Ito"
    assert edited.edited_at == datetime.fromtimestamp(1700000100, UTC)
    assert by_id["1700086400.000001"].author.name == "mo"
    assert by_id["1700086405.123456"].author.name == "Former Member"
    assert by_id["1700086405.123456"].created_at.microsecond == 123456
    assert by_id["1700000009.999999"].channel == ChannelRef("slack", "T123", "C02")
    assert by_id["1700172800.500000"].channel == ChannelRef("slack", "T123", "G01")
    assert all(m.created_at.tzinfo == UTC for m in batch.messages)


def test_slack_notices_and_slacks_file_text_are_skipped_members_comments_kept(
    tmp_path: Path,
) -> None:
    root = slack_folder(tmp_path / "export")
    day = slack_notices_and_files("U1", "U2", start=1700200000)
    (root / "random" / "2023-11-17.json").write_text(json.dumps(day), encoding="utf-8")
    batch = parse_file(root)

    day_ids = {r["ts"] for r in day}
    kept = [
        (m.author.id, m.author.name, m.text) for m in batch.messages if m.external_id in day_ids
    ]
    assert kept == [
        ("U2", "Ken Ito", "議事録です"),
        ("U1", "はな", "ありがとう"),
        ("U1", "はな", "ここです"),
        ("U2", "Ken Ito", "手を振る"),
    ]
    assert not any("uploaded a file" in m.text or "<@" in m.text for m in batch.messages)
    # The folder's own day holds two joins, a bot post and an empty message.
    assert batch.skipped == {
        "subtype channel_join": 3,
        "subtype channel_leave": 1,
        "subtype channel_name": 1,
        "subtype channel_topic": 1,
        "subtype channel_purpose": 1,
        "subtype pinned_item": 1,
        "subtype bot_add": 1,
        "subtype file_mention": 1,
        "subtype bot_message": 1,
        "bot author": 2,
        "empty text": 3,  # an old-style upload without a comment, a bare new-style one
    }


def test_slack_zip_and_folder_give_the_same_batch(tmp_path: Path) -> None:
    root = slack_folder(tmp_path / "export")
    from_folder = parse_file(root)
    flat = zip_folder(root, tmp_path / "flat.zip")
    nested = zip_folder(root, tmp_path / "nested.zip", prefix="My Workspace Slack export/")
    assert detect_format(flat) == "slack"
    assert parse_file(flat) == from_folder
    assert parse_file(nested) == from_folder
    assert len(from_folder.messages) == 7


def test_slack_team_from_messages_or_channel_argument(tmp_path: Path) -> None:
    root = slack_folder(tmp_path / "export", with_users=False)
    batch = parse_file(root)
    assert {m.channel.workspace for m in batch.messages} == {"T123"}
    # Without users.json nobody is known to be a bot user, so UB's message is kept.
    assert batch.skipped["bot author"] == 1

    batch = parse_file(root, channel=ChannelRef.parse("slack:TGIVEN/C01"))
    assert {m.channel.workspace for m in batch.messages} == {"TGIVEN"}

    daily = root / "general" / "2023-11-14.json"
    records = [r for r in json.loads(daily.read_text(encoding="utf-8")) if "team" not in r]
    daily.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(UserError) as exc:
        parse_file(root)
    assert "cannot tell the Slack team id" in reason(exc)


def test_corrupt_slack_zip_names_the_file(tmp_path: Path) -> None:
    good = zip_folder(slack_folder(tmp_path / "export"), tmp_path / "good.zip")
    bad = tmp_path / "team-export.zip"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError) as exc:
        parse_file(bad)
    assert "team-export.zip" in reason(exc)
    assert "zip" in reason(exc).split("team-export.zip", 1)[1]


def test_corrupt_zip_member_names_the_member(tmp_path: Path) -> None:
    good = zip_folder(slack_folder(tmp_path / "export"), tmp_path / "good.zip")
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo("general/2023-11-15.json")
    # Flip bytes inside the compressed data: the CRC check then fails on read.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start, start + 8):
        data[i] ^= 0xFF
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(UserError) as exc:
        parse_file(bad)
    assert "bad.zip: general/2023-11-15.json:" in reason(exc)


def test_broken_json_in_slack_export_names_member_line_and_column(tmp_path: Path) -> None:
    root = slack_folder(tmp_path / "export")
    (root / "random" / "2023-11-14.json").write_text(
        '[\n  {"ts": "1", "text": }\n]', encoding="utf-8"
    )
    with pytest.raises(UserError) as exc:
        parse_file(root)
    assert "random/2023-11-14.json, line 2, column 23" in reason(exc)

    archive = zip_folder(root, tmp_path / "export.zip")
    with pytest.raises(UserError) as exc:
        parse_file(archive)
    assert "export.zip: random/2023-11-14.json, line 2, column 23:" in reason(exc)


def test_slack_message_with_bad_ts_is_rejected(tmp_path: Path) -> None:
    root = slack_folder(tmp_path / "export")
    (root / "random" / "2023-11-14.json").write_text(
        json.dumps([{"type": "message", "user": "U1", "text": "x", "ts": 17.5e9}]),
        encoding="utf-8",
    )
    with pytest.raises(UserError) as exc:
        parse_file(root)
    assert "random/2023-11-14.json[0]" in reason(exc) and "'ts'" in reason(exc)


def test_slack_folder_without_channels_json_is_rejected(tmp_path: Path) -> None:
    root = slack_folder(tmp_path / "export")
    (root / "channels.json").unlink()
    shutil.rmtree(root / "general")
    with pytest.raises(UserError) as exc:
        parse_file(root)
    assert "channels.json" in reason(exc)


def test_timezone_offsets_are_converted_to_utc(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "tz.jsonl",
        [
            {"author": "a", "text": "x", "ts": "2024-03-01T09:00:00-05:00", "id": 1},
        ],
    )
    (message,) = parse_file(path, channel=CONSOLE).messages
    assert message.created_at.tzinfo == UTC
    assert message.created_at == datetime(2024, 3, 1, 9, tzinfo=timezone(timedelta(hours=-5)))
    assert message.created_at.hour == 14
