"""Export files of each import format, built in the test's own directory."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

JA = "今日は良い天気ですね 🌸☀️"
EMOJI = "👩‍👩‍👧‍👦 family, 🇯🇵 flag, e\u0301 combining"


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    return path


def discord_message(i: int, **changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": str(1000 + i),
        "type": "Default",
        "timestamp": "2023-05-01T10:00:00.123+09:00",
        "timestampEdited": None,
        "isPinned": False,
        "content": f"message {i}",
        "author": {
            "id": "42",
            "name": "taro",
            "discriminator": "0000",
            "nickname": "Taro-san",
            "isBot": False,
        },
        "attachments": [],
    }
    message.update(changes)
    return message


def discord_export(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "guild": {"id": "111", "name": "Server", "iconUrl": ""},
        "channel": {"id": "222", "type": "GuildTextChat", "name": "雑談", "topic": None},
        "dateRange": {"after": None, "before": None},
        "messages": messages,
        "messageCount": len(messages),
    }


def slack_folder(root: Path, *, with_users: bool = True) -> Path:
    root.mkdir()
    (root / "channels.json").write_text(
        json.dumps(
            [
                {"id": "C01", "name": "general", "created": 1},
                {"id": "C02", "name": "random"},
                {"id": "C03", "name": "never-used"},
            ]
        ),
        encoding="utf-8",
    )
    (root / "groups.json").write_text(
        json.dumps([{"id": "G01", "name": "secret"}]), encoding="utf-8"
    )
    if with_users:
        (root / "users.json").write_text(
            json.dumps(
                [
                    {
                        "id": "U1",
                        "team_id": "T123",
                        "name": "hana",
                        "profile": {"display_name": "はな", "real_name": "Hana Sato"},
                    },
                    {
                        "id": "U2",
                        "team_id": "T123",
                        "name": "ken",
                        "real_name": "Ken Ito",
                        "profile": {"display_name": "", "real_name": "Ken Ito"},
                    },
                    {"id": "U3", "team_id": "T123", "name": "mo", "profile": {}},
                    {"id": "UB", "team_id": "T123", "name": "robot", "is_bot": True, "profile": {}},
                    {"id": "UX", "team_id": "TOTHER", "name": "guest", "profile": {}},
                ],
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
    general = root / "general"
    general.mkdir()

    def msg(ts: str, user: str, text: str, **extra: Any) -> dict[str, Any]:
        return {"type": "message", "user": user, "text": text, "ts": ts, **extra}

    (general / "2023-11-14.json").write_text(
        json.dumps(
            [
                msg("1700000000.000100", "U1", JA, team="T123"),
                msg(
                    "1700000001.000200",
                    "U2",
                    EMOJI,
                    edited={"user": "U2", "ts": "1700000100.000000"},
                ),
                msg("1700000002.000300", "U1", "", subtype="channel_join"),
                msg("1700000003.000400", "U3", "joined", subtype="channel_join"),
                {
                    "type": "message",
                    "subtype": "bot_message",
                    "bot_id": "B1",
                    "text": "hi",
                    "ts": "1700000004.000500",
                },
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    (general / "2023-11-15.json").write_text(
        json.dumps(
            [
                msg("1700086400.000001", "U3", "broadcast", subtype="thread_broadcast"),
                msg(
                    "1700086401.000002",
                    "U1",
                    "file!",
                    subtype="file_share",
                    files=[{"id": "F0", "name": "photo.png"}],
                    upload=True,
                ),
                msg("1700086402.000003", "UB", "i am a bot user"),
                msg("1700086403.000004", "U1", "app says", bot_id="B2"),
                msg("1700086404.000005", "U2", "   "),
                msg(
                    "1700086405.123456",
                    "UGONE",
                    "I left",
                    user_profile={"display_name": "", "real_name": "Former Member"},
                ),
            ]
        ),
        encoding="utf-8",
    )
    (general / "notes.txt").write_text("not a daily file", encoding="utf-8")
    (root / "random").mkdir()
    (root / "random" / "2023-11-14.json").write_text(
        json.dumps(
            [
                msg("1700000009.999999", "U2", "in random"),
            ]
        ),
        encoding="utf-8",
    )
    (root / "secret").mkdir()
    (root / "secret" / "2023-11-16.json").write_text(
        json.dumps(
            [
                msg("1700172800.500000", "U1", "private"),
            ]
        ),
        encoding="utf-8",
    )
    return root


def slack_notices_and_files(first: str, second: str, start: int) -> list[dict[str, Any]]:
    """Slack messages whose text Slack wrote (notices, old-style file messages) among a
    few that members wrote, as a channel's export file or its live events hold them,
    one second apart from `start`. The members' own words are "議事録です" (`second`'s
    comment on their upload), "ありがとう" (`first`'s comment on that file), "ここです"
    (`first`'s message with a file) and "手を振る" (`second`'s /me)."""
    link = "https://example.slack.com/files"
    records: list[dict[str, Any]] = [
        {"subtype": "channel_join", "user": first, "text": f"<@{first}> has joined the channel"},
        {"subtype": "channel_leave", "user": second, "text": f"<@{second}> has left the channel"},
        {
            "subtype": "channel_name",
            "user": first,
            "text": f'<@{first}> renamed the channel from "old" to "general"',
            "old_name": "old",
            "name": "general",
        },
        {
            "subtype": "channel_topic",
            "user": first,
            "text": f"<@{first}> set the channel topic: 今日の話題",
            "topic": "今日の話題",
        },
        {
            "subtype": "channel_purpose",
            "user": first,
            "text": f"<@{first}> set the channel purpose: 雑談",
            "purpose": "雑談",
        },
        {
            "subtype": "pinned_item",
            "user": first,
            "text": f"<@{first}> pinned a message to this channel.",
            "item_type": "C",
        },
        {
            "subtype": "bot_add",
            "user": first,
            "bot_id": "B9",
            "text": f"<@{first}> added an integration to this channel: <https://x|app>",
        },
        {
            "subtype": "file_mention",
            "user": second,
            "text": f"<@{second}> mentioned a file: <{link}/{first}/F2/notes.txt|notes.txt>",
        },
        # Old style: Slack wrote the text; only the initial comment is the member's.
        {
            "subtype": "file_share",
            "user": first,
            "upload": True,
            "text": f"<@{first}|hana> uploaded a file: <{link}/{first}/F1/photo.png|photo.png>",
            "file": {"id": "F1", "name": "photo.png"},
        },
        {
            "subtype": "file_share",
            "user": second,
            "upload": True,
            "text": f"<@{second}|ken> uploaded a file: <{link}/{second}/F2/notes.txt|notes.txt>"
            " and commented: 議事録です",
            "file": {
                "id": "F2",
                "name": "notes.txt",
                "initial_comment": {"id": "Fc1", "user": second, "comment": "議事録です"},
            },
        },
        {
            "subtype": "file_comment",
            "text": f"<@{first}|hana> commented on <@{second}|ken>'s file"
            f" <{link}/{second}/F2/notes.txt|notes.txt>: ありがとう",
            "file": {"id": "F2", "name": "notes.txt"},
            "comment": {"id": "Fc2", "user": first, "comment": "ありがとう"},
        },
        # New style: a member's message with files; its text is theirs, maybe empty.
        {
            "subtype": "file_share",
            "user": first,
            "upload": True,
            "text": "ここです",
            "files": [{"id": "F3", "name": "map.png"}],
        },
        {"user": second, "upload": True, "text": "", "files": [{"id": "F4", "name": "a.png"}]},
        {"subtype": "me_message", "user": second, "text": "手を振る"},
    ]
    return [
        {"type": "message", **record, "ts": f"{start + i}.000100"}
        for i, record in enumerate(records)
    ]


def zip_folder(folder: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, prefix + file.relative_to(folder).as_posix())
    return target
