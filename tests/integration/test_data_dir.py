"""The data directory: one folder per channel whatever its ids, folders of the older
layout moved on start without losing a version, a folder two channels shared split
between them, and what failed runs left behind cleared away."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.app import App, running_app
from bot.config import Settings
from bot.core.command_values import Continue
from bot.core.context import CommandContext
from bot.domain import Author, ChannelRef, ChatMessage, Reply
from bot.engine.data_dir import legacy_slug
from bot.records import ImportBatch
from bot.statuses import VersionStatus
from tests.integration.test_canary import train

# The pair: the older layout gave both `models/discord-a-b-c`.
A = ChannelRef.parse("discord:a-b/c")
B = ChannelRef.parse("discord:a/b-c")
QUICK = {"max_steps": 3, "batch_size": 4, "block_size": 32}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def history(ref: ChannelRef, word: str, n: int = 80) -> ImportBatch:
    return ImportBatch(
        messages=[
            ChatMessage(
                ref, f"{i}", Author(f"u{i % 3}", ""), f"{word} {i % 9} です", T0 + timedelta(i)
            )
            for i in range(n)
        ]
    )


async def trained(app: App, *refs: ChannelRef) -> None:
    for ref in refs:
        await app.messages.add_batch(history(ref, ref.workspace + ref.channel))
        await app.channels.set_training(ref, True, actor="test")
        await train(app, ref, payload=QUICK)


async def ask(app: App, ref: ChannelRef, prompt: str, seed: int) -> Reply:
    """/continue in the channel, as a member asks."""
    return await app.core.on_command(
        CommandContext(ref, Author("asker", "")), Continue(prompt, {"seed": seed})
    )


def metadata_channel(version_dir: str) -> str:
    return str(json.loads((Path(version_dir) / "metadata.json").read_text("utf-8"))["channel"])


def legacy_paths(db_file: Path, old: str, new: str) -> None:
    """The database as the older release left it: version paths in the old folders."""
    with sqlite3.connect(db_file) as conn:
        conn.execute("UPDATE model_versions SET path = replace(path, ?, ?)", (old, new))


def db_file(settings: Settings) -> Path:
    return Path(settings.resolved_database_url.split("///", 1)[1])


async def test_ids_that_join_alike_get_two_folders_and_a_shared_legacy_one_is_split(
    local_settings: Settings,
) -> None:
    models = local_settings.models_dir
    async with running_app(local_settings) as app:
        await trained(app, A, B)
        a1, b1 = await app.registry.active(A), await app.registry.active(B)
        assert a1 is not None and b1 is not None
        assert Path(a1.path).parent != Path(b1.path).parent
        assert metadata_channel(a1.path) == str(A) and metadata_channel(b1.path) == str(B)
        # Every folder stays inside the models directory.
        assert {p.parent for p in (Path(a1.path), Path(b1.path))} <= set(models.iterdir())

    # What the older release made of the same commands: one folder, B's v1 written over
    # A's, both rows pointing at it, a scratch base and a run of either channel's.
    shared = models / legacy_slug(A)
    assert legacy_slug(A) == legacy_slug(B) == "discord-a-b-c"
    shared.mkdir()
    shutil.move(b1.path, shared / "v1")
    shutil.move(str(Path(a1.path).parent / "scratch-tiny"), shared / "scratch-tiny")
    shutil.rmtree(Path(a1.path).parent)
    shutil.rmtree(Path(b1.path).parent)
    for ref in (A, B):
        legacy_paths(db_file(local_settings), str(models / ref.slug), str(shared))

    async with running_app(local_settings) as app:
        assert not shared.exists()
        b = await app.registry.active(B)
        assert b is not None and b.path == str(models / B.slug / "v1")
        assert metadata_channel(b.path) == str(B)
        # A's row pointed at B's files: it never answers again, and says why.
        assert await app.registry.active(A) is None
        [lost] = await app.registry.versions(A)
        assert lost.status == VersionStatus.RESET and "another channel" in (lost.note or "")
        reply = await ask(app, A, "a-bc", 1)
        assert not reply.is_error  # from the base, until A trains again


async def test_a_data_dir_of_the_older_layout_moves_on_start_with_every_version(
    local_settings: Settings,
) -> None:
    ref = ChannelRef.parse("console:old-club")
    models = local_settings.models_dir
    async with running_app(local_settings) as app:
        await trained(app, ref)
        await train(app, ref, payload=QUICK)
        versions = [v.version for v in await app.registry.versions(ref)]
        assert versions == [1, 2]
        before = await ask(app, ref, "old", 3)
    old = models / legacy_slug(ref)
    (models / ref.slug).rename(old)
    legacy_paths(db_file(local_settings), str(models / ref.slug), str(old))

    async with running_app(local_settings) as app:
        assert not old.exists()
        moved = await app.registry.versions(ref)
        assert [v.version for v in moved] == versions
        assert all(Path(v.path).parent == models / ref.slug for v in moved)
        assert all((Path(v.path) / "metadata.json").is_file() for v in moved)
        after = await ask(app, ref, "old", 3)
        assert after.texts == before.texts  # the same version answers, from its new place


async def test_what_failed_runs_left_is_cleared_on_start(local_settings: Settings) -> None:
    ref = ChannelRef.parse("console:leftovers")
    folder = local_settings.models_dir / ref.slug
    stale, fresh = folder / "v3.tmp", folder / "v4.tmp"
    for path in (stale, fresh):
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(b"half")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    async with running_app(local_settings):
        # An hour old: a run that died. Seconds old: maybe another process writing now.
        assert not stale.exists() and fresh.is_dir()


async def test_no_tokenizer_learns_from_a_channel_before_its_admin_turns_training_on(
    local_settings: Settings,
) -> None:
    ref = ChannelRef.parse("console:private")
    models = local_settings.models_dir
    async with running_app(local_settings) as app:
        await app.messages.add_batch(history(ref, "秘密の合言葉"))
        reply = await ask(app, ref, "秘密", 1)
        assert not reply.is_error
        # Answered from a base fitted to nobody's messages: its vocabulary is bytes.
        assert not (models / ref.slug).exists()
        shared = json.loads(
            (models / "_no-history" / "scratch-tiny" / "tokenizer.json").read_text()
        )
        assert len(shared["model"]["vocab"]) <= 260
        # With consent, the channel's own base learns its history.
        await app.channels.set_training(ref, True, actor="test")
        await train(app, ref, payload=QUICK)
        own = json.loads((models / ref.slug / "scratch-tiny" / "tokenizer.json").read_text())
        assert len(own["model"]["vocab"]) > len(shared["model"]["vocab"]) + 10  # merges


async def test_a_version_folder_the_database_does_not_know_is_never_written_over(
    local_settings: Settings,
) -> None:
    ref = ChannelRef.parse("console:restored")
    folder = local_settings.models_dir / ref.slug
    # v1 on disk with no row (the database restored from an older backup).
    orphan = folder / "v1"
    orphan.mkdir(parents=True)
    (orphan / "metadata.json").write_text('{"channel": "console:restored", "version": 1}')
    async with running_app(local_settings) as app:
        await trained(app, ref)
        [version] = await app.registry.versions(ref)
        assert version.version == 2 and version.path == str(folder / "v2")
    assert json.loads((orphan / "metadata.json").read_text()) == {
        "channel": "console:restored",
        "version": 1,
    }
