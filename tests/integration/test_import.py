"""`tsuzuki import` end to end below the CLI: parse, store in one transaction, count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.domain import ChannelRef
from bot.errors import UserError
from bot.importing.importer import import_history
from storage.db import Database
from storage.stores import SqlChannelStore, SqlMessageStore
from tests.exports import (
    JA,
    discord_export,
    discord_message,
    slack_folder,
    write_jsonl,
    zip_folder,
)

CONSOLE = ChannelRef.parse("console:general")


def jsonl_records(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"author": f"user{i % 3}", "text": f"{JA} #{i}", "ts": 1_700_000_000 + i, "id": i}
        for i in range(start, start + n)
    ]


async def test_jsonl_import_counts_and_reimport_adds_nothing(db: Database, tmp_path: Path) -> None:
    store = SqlMessageStore(db)
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [*jsonl_records(20), {"author": "b", "text": "beep", "ts": 1, "id": "b1", "is_bot": True}],
    )
    first = await import_history(store, path, channel=CONSOLE)
    assert (first.imported, first.duplicates, dict(first.skipped)) == (20, 0, {"bot author": 1})
    again = await import_history(store, path, channel=CONSOLE)
    assert (again.imported, again.duplicates) == (0, 20)
    assert await store.count(CONSOLE) == 20
    newest = (await store.recent(CONSOLE, 1))[0]
    assert newest.text == f"{JA} #19"


async def test_text_import_is_idempotent(db: Database, tmp_path: Path) -> None:
    store = SqlMessageStore(db)
    path = tmp_path / "chat.txt"
    path.write_text("おはよう\n\nhello\nおはよう\n", encoding="utf-8")
    first = await import_history(store, path, channel=CONSOLE)
    assert first.imported == 3  # the same words on another line are another message
    assert (await import_history(store, path, channel=CONSOLE)).imported == 0
    assert [m.text for m in await store.recent(CONSOLE, 10)] == ["おはよう", "hello", "おはよう"]


async def test_discord_export_lands_in_its_own_channel(db: Database, tmp_path: Path) -> None:
    store = SqlMessageStore(db)
    messages = [
        discord_message(1),
        discord_message(2, type="ChannelPinnedMessage"),
        discord_message(3, author={"id": "9", "name": "b", "isBot": True}),
        discord_message(4, content="続きはまた明日"),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(discord_export(messages), ensure_ascii=False), encoding="utf-8")
    report = await import_history(store, path)
    ref = ChannelRef("discord", "111", "222")
    assert report.per_channel[ref].imported == 2
    assert dict(report.skipped) == {"system message": 1, "bot author": 1}
    channel = await SqlChannelStore(db).get(ref)
    assert channel is not None and channel.name == "雑談"
    assert [m.external_id for m in await store.recent(ref, 10)] == ["1001", "1004"]


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "zip"])
async def test_slack_export_one_channel_per_slack_channel(
    db: Database, tmp_path: Path, packed: bool
) -> None:
    store = SqlMessageStore(db)
    folder = slack_folder(tmp_path / "export")
    path = zip_folder(folder, tmp_path / "export.zip") if packed else folder
    report = await import_history(store, path)
    general = ChannelRef("slack", "T123", "C01")
    assert report.per_channel[general].imported == 5
    assert report.per_channel[ChannelRef("slack", "T123", "C02")].imported == 1
    assert report.per_channel[ChannelRef("slack", "T123", "G01")].imported == 1
    assert report.skipped["subtype channel_join"] == 2
    # Slack's ts is the external id, as live events will carry it.
    assert (await store.recent(general, 10))[0].external_id == "1700000000.000100"
    assert (await import_history(store, path)).imported == 0


async def test_a_truncated_file_stores_nothing_and_says_where(db: Database, tmp_path: Path) -> None:
    store = SqlMessageStore(db)
    path = write_jsonl(tmp_path / "cut.jsonl", jsonl_records(50))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 25])  # the last line is cut off mid-object
    with pytest.raises(UserError) as excinfo:
        await import_history(store, path, channel=CONSOLE)
    assert "cut.jsonl" in excinfo.value.reason
    assert "line 50" in excinfo.value.reason
    assert await store.count(CONSOLE) == 0
    assert await SqlChannelStore(db).get(CONSOLE) is None


async def test_a_corrupt_zip_stores_nothing(db: Database, tmp_path: Path) -> None:
    store = SqlMessageStore(db)
    good = zip_folder(slack_folder(tmp_path / "export"), tmp_path / "export.zip")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(good.read_bytes()[:300])
    with pytest.raises(UserError, match=r"broken\.zip"):
        await import_history(store, broken)
    assert await store.count(ChannelRef("slack", "T123", "C01")) == 0


async def test_an_opted_out_member_is_never_stored_again_nor_quoted_in_a_reply(
    db: Database, tmp_path: Path
) -> None:
    """Opting out forgets a member's messages; re-importing the same file must not bring
    them back, and a mention reply's context must never show them."""
    from bot.training.lineage import plan_forget
    from storage.stores import SqlUserStore

    store = SqlMessageStore(db)
    path = write_jsonl(tmp_path / "h.jsonl", jsonl_records(30))
    await import_history(store, path, channel=CONSOLE)
    users = SqlUserStore(db, plan_forget)
    forgotten = await users.set_opted_out("console", "local", "user1", True, actor="t")
    assert forgotten == 10

    again = await import_history(store, path, channel=CONSOLE)
    assert again.imported == 0
    assert again.skipped["written by members who opted out"] == 10
    recent = await store.recent(CONSOLE, 100)
    assert len(recent) == 20
    assert {m.author.id for m in recent} == {"user0", "user2"}


async def test_a_zip_bomb_is_refused_before_it_is_unpacked(db: Database, tmp_path: Path) -> None:
    """A small zip that unpacks to far more than the cap is refused by its directory's
    sizes, before any member is read into memory; nothing is stored."""
    import zipfile

    store = SqlMessageStore(db)
    folder = slack_folder(tmp_path / "export")
    bomb = zip_folder(folder, tmp_path / "bomb.zip")
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("general/2023-11-30.json", b"[" + b" " * (64 * 2**20) + b"]")
    assert bomb.stat().st_size < 2**20
    with pytest.raises(UserError) as excinfo:
        await import_history(store, bomb, max_bytes=16 * 2**20)
    assert "bomb.zip" in excinfo.value.reason and "unpacked" in excinfo.value.reason
    assert "Nothing was imported" in excinfo.value.reason
    assert await store.count(ChannelRef("slack", "T123", "C01")) == 0
    # Under the cap, the same export imports.
    assert (await import_history(store, bomb, max_bytes=128 * 2**20)).imported > 0


async def test_a_file_larger_than_the_cap_is_refused(db: Database, tmp_path: Path) -> None:
    store = SqlMessageStore(db)
    path = write_jsonl(tmp_path / "big.jsonl", jsonl_records(2000))
    with pytest.raises(UserError, match=r"big\.jsonl is too large"):
        await import_history(store, path, channel=CONSOLE, max_bytes=10_000)
    assert await store.count(CONSOLE) == 0
