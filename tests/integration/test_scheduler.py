"""The nightly re-finetune: persistent schedule, missed nights run once, due channels."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from bot.app import App
from bot.core.scheduler import NIGHTLY_JOB_ID, build_scheduler, start_scheduler
from bot.domain import Author, ChannelRef, ChatMessage, ModelVersionInfo
from bot.records import ImportBatch
from bot.statuses import VersionStatus
from storage.db import sync_url

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def until(condition, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


def nightly_runs(app: App, monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """When the nightly job ran (it queues nothing here)."""
    calls: list[datetime] = []

    async def queue_due_training() -> list[object]:
        calls.append(datetime.now(UTC))
        return []

    monkeypatch.setattr(app.runner, "queue_due_training", queue_due_training)
    return calls


async def test_a_missed_night_runs_once_and_the_store_holds_one_row(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = nightly_runs(app, monkeypatch)
    first = build_scheduler(app.settings, app.runner)
    start_scheduler(first, app.settings)
    # The bot goes down before 03:00 and misses it: the stored next run is now past.
    first.pause()
    first.modify_job(NIGHTLY_JOB_ID, next_run_time=datetime.now(UTC) - timedelta(hours=2))
    first.shutdown(wait=False)
    assert calls == []

    second = build_scheduler(app.settings, app.runner)
    start_scheduler(second, app.settings)  # back up: the missed night runs, once
    await until(lambda: len(calls) == 1)
    next_run = second.get_job(NIGHTLY_JOB_ID).next_run_time
    assert next_run > datetime.now(UTC)
    second.shutdown(wait=False)

    third = build_scheduler(app.settings, app.runner)
    start_scheduler(third, app.settings)
    await asyncio.sleep(0.5)
    third.shutdown(wait=False)
    assert len(calls) == 1

    engine = create_engine(sync_url(app.settings.resolved_database_url))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM apscheduler_jobs")).scalar() == 1
    engine.dispose()


async def test_a_schedule_stored_before_the_core_moved_still_runs_its_missed_night(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = nightly_runs(app, monkeypatch)
    old = build_scheduler(app.settings, app.runner)
    start_scheduler(old, app.settings)
    old.pause()
    # As an earlier version stored it: the function named by its old module, and the
    # night missed while the bot was down.
    old.modify_job(
        NIGHTLY_JOB_ID,
        func="bot.scheduler:nightly_retrain",
        next_run_time=datetime.now(UTC) - timedelta(hours=2),
    )
    old.shutdown(wait=False)

    new = build_scheduler(app.settings, app.runner)
    start_scheduler(new, app.settings)
    await until(lambda: len(calls) == 1)
    assert new.get_job(NIGHTLY_JOB_ID).func_ref == "bot.core.scheduler:nightly_retrain"
    new.shutdown(wait=False)


async def add_messages(app: App, ref: ChannelRef, n: int, start: int = 0) -> None:
    messages = [
        ChatMessage(
            ref,
            f"m{start + i}",
            Author("u", "U"),
            f"message {start + i}",
            T0 + timedelta(minutes=start + i),
        )
        for i in range(n)
    ]
    await app.messages.add_batch(ImportBatch(messages=messages))


async def test_only_consenting_channels_with_enough_new_messages_are_due(app: App) -> None:
    busy = ChannelRef.parse("console:busy")
    quiet = ChannelRef.parse("console:quiet")
    private = ChannelRef.parse("console:private")
    await add_messages(app, busy, 60)
    await add_messages(app, quiet, 10)
    await add_messages(app, private, 500)  # lots of history, but no consent
    for ref in (busy, quiet):
        await app.channels.set_training(ref, True, actor="test")
    assert app.settings.nightly_min_new_messages == 50
    assert await app.runner.due_channels() == [busy]

    queued = await app.runner.queue_due_training()
    assert [(j.kind, j.channel, j.status) for j in queued] == [("train", busy, "queued")]
    again = await app.runner.queue_due_training()
    assert [j.id for j in again] == [j.id for j in queued]  # not queued twice
    assert len(await app.jobs.recent()) == 1


async def test_a_delete_or_an_edit_since_the_last_version_makes_the_channel_due(
    app: App,
) -> None:
    ref = ChannelRef.parse("console:edited")
    await add_messages(app, ref, 60)
    await app.channels.set_training(ref, True, actor="test")
    _, newest = await app.messages.training_snapshot(ref)

    async def version(n: int) -> None:
        info = ModelVersionInfo(
            ref, n, "scratch:tiny", "full", f"/v{n}", VersionStatus.CANDIDATE,
            datetime.now(UTC), last_message_id=newest,
        )  # fmt: skip
        await app.registry.add(info)

    await version(1)
    assert await app.runner.due_channels() == []  # nothing new since v1
    # A member deletes one message on the platform: v1 still holds it.
    await app.core.on_delete(ref, ["m3"])
    assert await app.runner.due_channels() == [ref]
    await version(2)
    assert await app.runner.due_channels() == []
    await app.core.on_edit(ref, "m4", "changed my mind", datetime.now(UTC))
    assert await app.runner.due_channels() == [ref]
