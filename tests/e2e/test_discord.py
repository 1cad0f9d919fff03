"""The Discord adapter end to end: the real discord.py client over real sockets to the
fake Discord in tests/fakes, the real core, storage and scratch model behind it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config import Settings
from bot.core.jobs import JobResult
from bot.domain import ChannelRef, GenerationRequest, GenerationResult, ModelVersionInfo
from bot.logs import configure_logging
from bot.ports import TextListener
from bot.statuses import VersionStatus
from tests.e2e.serving import DISCORD_TOKEN, serving, with_discord
from tests.e2e.serving import until as until_true
from tests.fakes.discord_server import FakeDiscord

# No test's time limits include the one-off import of the ML libraries.
pytestmark = pytest.mark.usefixtures("ml_libraries")

GUILD, CHANNEL, ADMIN, MEMBER = "111", "222", "1001", "1002"
REF = ChannelRef("discord", GUILD, CHANNEL)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOKEN = DISCORD_TOKEN


class ScriptedGenerator:
    """Generation the tests control: a fixed text (to prove pings never get through,
    which no real model can be made to say on cue) after an optional delay."""

    def __init__(self, text: str, delay: float = 0.0) -> None:
        self.text, self.delay = text, delay

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        # No partial texts: the reply is posted whole, as when a text comes too fast to
        # stream (tests/e2e/test_streaming.py streams).
        await asyncio.sleep(self.delay)
        text = request.prompt + self.text if request.mode == "continue" else self.text
        return GenerationResult((text,), "scripted", 0, 1, self.delay)


@pytest.fixture
async def bot(
    local_settings: Settings, fake_discord: FakeDiscord
) -> AsyncIterator[tuple[App, FakeDiscord]]:
    async with serving(with_discord(local_settings, fake_discord)) as app:
        yield app, fake_discord


async def test_continue_is_deferred_at_once_and_answered_with_the_prompt(
    bot: tuple[App, FakeDiscord],
) -> None:
    fake = bot[1]
    assert fake.commands[GUILD]  # slash commands were synced to the guild
    payload = await fake.slash_command(CHANNEL, MEMBER, "continue", {"prompt": "織田信長は、"})
    record = fake.interaction(payload["token"])
    # The answer: the deferred message edited as the text grows (or a followup filling
    # it in, when the text came too fast to stream).
    request = await fake.wait_for_request(path=f"/webhooks/{fake.app_id}/{payload['token']}")
    assert record.callback_type == 5  # deferred
    assert record.callback_at is not None and record.callback_at - record.dispatched_at < 1.0
    assert request.json["content"].startswith("織田信長は、")
    assert request.json["allowed_mentions"] == {"parse": []}
    assert TOKEN in fake.tokens_seen[0]


async def test_a_slow_generation_still_gets_its_defer_in_time(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    settings = with_discord(local_settings, fake_discord)
    async with serving(settings, generator=ScriptedGenerator(" …", delay=3.0)):
        payload = await fake_discord.slash_command(CHANNEL, MEMBER, "continue", {"prompt": "x"})
        record = fake_discord.interaction(payload["token"])
        followup = await fake_discord.wait_for_request(
            method="POST", path=f"/webhooks/{fake_discord.app_id}/", timeout=20
        )
        assert record.callback_at is not None
        assert record.callback_at - record.dispatched_at < 1.0
        assert followup.time - record.dispatched_at >= 3.0
        assert followup.json["content"] == "x …"


async def test_generated_pings_never_ping(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    pings = " @everyone <@1> <@&2> @here"
    async with serving(
        with_discord(local_settings, fake_discord), generator=ScriptedGenerator(pings)
    ):
        await fake_discord.slash_command(CHANNEL, MEMBER, "continue", {"prompt": "hi"})
        sent = await fake_discord.wait_for_request(method="POST", path="/webhooks/")
        await fake_discord.send_message(CHANNEL, MEMBER, "say something", mentions_bot=True)
        reply = await fake_discord.wait_for_request(
            method="POST", path=f"/channels/{CHANNEL}/messages"
        )
    for body in (sent.json, reply.json):
        assert body["allowed_mentions"]["parse"] == []
        for ping in ("@everyone", "<@1>", "<@&2>", "@here"):
            assert ping not in body["content"]
    assert reply.json["allowed_mentions"].get("replied_user") is False


async def test_a_mention_gets_a_reply_and_messages_are_history(
    bot: tuple[App, FakeDiscord],
) -> None:
    app, fake = bot
    # discord.py handles each event in a task of its own, so the two messages may be
    # stored in either order: their snowflakes' times (a second apart) order them.
    now = datetime.now(UTC)
    await fake.send_message(
        CHANNEL, ADMIN, "今日はラーメンの日", timestamp=now - timedelta(seconds=2)
    )
    mention = await fake.send_message(
        CHANNEL, MEMBER, "what next?", mentions_bot=True, timestamp=now - timedelta(seconds=1)
    )
    reply = await fake.wait_for_request(method="POST", path=f"/channels/{CHANNEL}/messages")
    assert str(reply.json["message_reference"]["message_id"]) == mention["id"]
    assert reply.json["content"]
    # The bot's own reply is not stored.
    await until(lambda: _texts(app), ["今日はラーメンの日", "what next?"])


async def test_edits_and_deletes_reach_the_database(bot: tuple[App, FakeDiscord]) -> None:
    app, fake = bot
    for i in range(4):
        await fake.send_message(CHANNEL, ADMIN, f"message {i}", message_id=str(6000 + i))
    await until(lambda: app.messages.count(REF), 4)
    await fake.edit_message(CHANNEL, "6000", "message 0, edited")
    await fake.delete_message(CHANNEL, "6001")
    await fake.bulk_delete(CHANNEL, ["6002", "6003"])
    await until(lambda: app.messages.count(REF), 1)
    (left,) = await app.messages.recent(REF, 10)
    await until(lambda: _text(app), "message 0, edited")
    assert left.external_id == "6000"


async def test_a_member_cannot_change_settings(bot: tuple[App, FakeDiscord]) -> None:
    app, fake = bot
    payload = await fake.slash_command(
        CHANNEL, MEMBER, "settings set", {"key": "temperature", "value": "2"}
    )
    answer = await fake.wait_for_request(method="POST", path="/webhooks/")
    assert "Only channel admins" in answer.json["content"]
    assert answer.json.get("flags", 0) & 64  # ephemeral: only the asker sees it
    assert fake.interaction(payload["token"]).callback_type == 5
    assert (await app.commands.settings.effective(REF)).temperature == 0.9
    await fake.slash_command(CHANNEL, ADMIN, "settings set", {"key": "temperature", "value": "2"})
    await until(lambda: _temperature(app), 2.0)


async def test_help_is_a_slash_command_and_answers_only_the_asker(
    bot: tuple[App, FakeDiscord],
) -> None:
    """Errors end "Try /help": on Discord that has to be a command the client offers."""
    _, fake = bot
    assert "help" in {c["name"] for c in fake.commands[GUILD]}
    payload = await fake.slash_command(CHANNEL, MEMBER, "help")
    answer = await fake.wait_for_request(method="POST", path="/webhooks/")
    assert "/continue" in answer.json["content"] and "/voice" in answer.json["content"]
    assert answer.json.get("flags", 0) & 64  # ephemeral
    assert fake.interaction(payload["token"]).callback_type == 5


async def test_no_rights_in_the_channel_is_not_admin_whatever_the_guild_grants(
    bot: tuple[App, FakeDiscord],
) -> None:
    """The interaction's permissions are the user's in this channel. None at all (an
    overwrite took everything) is still the answer, not a reason to look at the guild's
    (a falsy empty Permissions once let the admin role through)."""
    app, fake = bot
    await fake.slash_command(
        CHANNEL, ADMIN, "settings set", {"key": "temperature", "value": "2"}, permissions=0
    )
    answer = await fake.wait_for_request(method="POST", path="/webhooks/")
    assert "Only channel admins" in answer.json["content"]
    assert (await app.commands.settings.effective(REF)).temperature == 0.9


async def test_a_429_is_honoured(bot: tuple[App, FakeDiscord]) -> None:
    fake = bot[1]
    fake.rate_limit_next(f"POST /channels/{CHANNEL}/messages", retry_after=0.5)
    start = len(fake.requests)
    await fake.send_message(CHANNEL, MEMBER, "hello?", mentions_bot=True)
    await fake.wait_for_request(
        lambda r: r.matches("POST", f"/channels/{CHANNEL}/messages") and r.status == 200,
        start=start,
        timeout=20,
    )
    posts = [r for r in fake.requests[start:] if r.matches("POST", f"/channels/{CHANNEL}/messages")]
    assert [r.status for r in posts] == [429, 200]
    assert posts[1].time - posts[0].time >= 0.45


async def test_tokens_never_reach_the_logs(
    local_settings: Settings, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    log_file = tmp_path / "bot.log"
    configure_logging("DEBUG", log_file, [TOKEN])
    try:
        async with serving(with_discord(local_settings, fake_discord)):
            payload = await fake_discord.slash_command(
                CHANNEL, MEMBER, "continue", {"prompt": "hi"}
            )
            await fake_discord.wait_for_request(path="/webhooks/")  # streamed or posted
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
        logging.getLogger().handlers.clear()
    text = log_file.read_text(encoding="utf-8")
    assert "discord.http" in text  # discord.py's debug logging was captured
    assert TOKEN not in text
    assert payload["token"] not in text


async def _texts(app: App) -> list[str]:
    return [m.text for m in await app.messages.recent(REF, 10)]


async def _text(app: App) -> str:
    return (await app.messages.recent(REF, 1))[0].text


async def _temperature(app: App) -> float:
    return (await app.commands.settings.effective(REF)).temperature


async def until(probe: Any, expected: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while (value := await probe()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, wanted {expected!r}"
        await asyncio.sleep(0.05)


async def test_turning_training_on_backfills_the_history(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(230):
        fake_discord.add_history(
            CHANNEL,
            ADMIN if i % 2 else MEMBER,
            f"old message {i}",
            timestamp=start + timedelta(minutes=i),
        )
    fake_discord.add_history(CHANNEL, fake_discord.bot_id, "the bot's own old line")
    fake_discord.rate_limit_next(f"GET /channels/{CHANNEL}/messages", retry_after=0.3)
    async with serving(with_discord(local_settings, fake_discord)) as app:
        finished: list[JobResult] = []
        app.runner.listeners.append(finished.append)
        await fake_discord.slash_command(CHANNEL, ADMIN, "training on")
        answer = await fake_discord.wait_for_request(method="POST", path="/webhooks/")
        assert "Training is now on" in answer.json["content"]
        # The serving job runner reads the history in the background.
        await until_true(lambda: bool(finished), within=30)
        assert [(r.job.kind, r.status) for r in finished] == [("backfill", "succeeded")]
        assert await app.messages.count(REF) == 230  # people's messages, not the bot's
        (job,) = await app.jobs.recent()
        assert job.payload["fetched"] == 231 and job.progress == 1.0
        oldest = (await app.messages.recent(REF, 300))[0]
        assert oldest.text == "old message 0"
    pages = [r for r in fake_discord.requests if r.matches("GET", f"/channels/{CHANNEL}/messages")]
    assert pages[0].status == 429 and pages[1].time - pages[0].time >= 0.25


async def test_an_edited_mention_is_stored_without_the_bots_mention(
    bot: tuple[App, FakeDiscord],
) -> None:
    app, fake = bot
    sent = await fake.send_message(CHANNEL, MEMBER, "what next?", mentions_bot=True)
    await fake.wait_for_request(method="POST", path=f"/channels/{CHANNEL}/messages")
    await until(lambda: _text(app), "what next?")
    await fake.edit_message(CHANNEL, sent["id"], f"<@{fake.bot_id}> what next, edited?")
    await until(lambda: _text(app), "what next, edited?")


async def _active_version(app: App) -> int | None:
    active = await app.registry.active(REF)
    return None if active is None else active.version


async def with_a_version(app: App) -> None:
    """An active v1 (its files do not matter: a reset only retires it)."""
    info = ModelVersionInfo(
        REF, 1, "scratch:tiny", "full", "/nowhere/v1", VersionStatus.CANDIDATE, T0
    )
    await app.registry.add(info)
    await app.registry.activate(REF, 1, actor="test")


async def test_models_reset_needs_an_admin_and_a_confirmation(
    bot: tuple[App, FakeDiscord],
) -> None:
    app, fake = bot
    await with_a_version(app)

    async def answer(user: str, **options: object) -> str:
        payload = await fake.slash_command(CHANNEL, user, "models reset", options)
        path = f"/webhooks/{fake.app_id}/{payload['token']}"
        request = await fake.wait_for_request(path=path, timeout=20)
        assert request.json.get("flags", 0) & 64  # ephemeral: only the asker sees it
        return str(request.json["content"])

    assert "Only channel admins" in await answer(MEMBER, confirm=True)
    assert "confirm" in await answer(ADMIN)  # asks first
    assert await _active_version(app) == 1
    assert "retired" in await answer(ADMIN, confirm=True)
    assert await _active_version(app) is None
