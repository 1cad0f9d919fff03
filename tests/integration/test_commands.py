"""Channel settings through the core, on both databases: who may change what, and
that refused changes leave no trace."""

from __future__ import annotations

import pytest

from bot.app import App, running_app
from bot.config import Settings
from bot.core.context import CommandContext
from bot.domain import Author, ChannelRef

REF = ChannelRef.parse("discord:10/20")
ADMIN = CommandContext(REF, Author("1", "Admin", is_admin=True))
MEMBER = CommandContext(REF, Author("2", "Member"))


async def test_a_non_admin_cannot_change_settings(app: App) -> None:
    reply = await app.core.on_command(MEMBER, "/settings set temperature 2")
    assert reply.is_error and reply.ephemeral
    assert "Only channel admins" in reply.texts[0]
    reply = await app.core.on_command(MEMBER, "/settings reset temperature")
    assert reply.is_error
    assert (await app.commands.settings.effective(REF)).temperature == 0.9
    assert await app.channels.audit(REF) == []


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "hot", "5.5"])
async def test_invalid_values_are_refused_and_nothing_is_saved(app: App, value: str) -> None:
    reply = await app.core.on_command(ADMIN, f"/settings set temperature {value}")
    assert reply.is_error
    assert "temperature" in reply.texts[0] and "0–5" in reply.texts[0]
    channel = await app.channels.get(REF)
    assert channel is None or channel.sampling == {}
    assert await app.channels.audit(REF) == []


async def test_admin_changes_are_applied_and_audited(app: App) -> None:
    reply = await app.core.on_command(ADMIN, "/settings set top_k 5")
    assert not reply.is_error and "top_k is now 5" in reply.texts[0]
    assert (await app.commands.settings.effective(REF)).top_k == 5
    shown = (await app.core.on_command(MEMBER, "/settings show")).texts[0]
    assert "top_k = 5 (set for this channel" in shown  # anyone may look
    await app.core.on_command(ADMIN, "/settings reset top_k")
    assert (await app.commands.settings.effective(REF)).top_k == 50
    entries = await app.channels.audit(REF)
    assert [(e.actor, e.action, e.key) for e in entries] == [
        ("discord:1", "settings.set", "top_k"),
        ("discord:1", "settings.reset", "top_k"),
    ]


async def test_request_overrides_beat_channel_settings(app: App) -> None:
    await app.commands.settings.set(ADMIN, "temperature", "0.3")
    assert (await app.commands.settings.effective(REF)).temperature == 0.3
    assert (await app.commands.settings.effective(REF, {"temperature": "1.5"})).temperature == 1.5


async def test_unknown_commands_and_settings_get_help(app: App) -> None:
    assert "/help" in (await app.core.on_command(MEMBER, "/dance")).texts[0]
    reply = await app.core.on_command(ADMIN, "/settings set colour red")
    assert reply.is_error and "temperature" in reply.texts[0]
    assert "Usage" in (await app.core.on_command(ADMIN, "/settings frobnicate")).texts[0]


async def test_unexpected_errors_get_a_generic_reply_and_a_log_entry(
    app: App, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals: /home/x token=abc")

    monkeypatch.setattr(app.registry, "versions", explode)
    reply = await app.core.on_command(ADMIN, "/models")
    assert reply.is_error
    assert "secret internals" not in reply.texts[0]
    assert "went wrong" in reply.texts[0]
    assert any("secret internals" in (r.exc_text or str(r.exc_info)) for r in caplog.records)


async def test_one_user_cannot_flood_the_queue(local_settings: Settings) -> None:
    limited = local_settings.model_copy(update={"rate_per_user_per_minute": 2})
    async with running_app(limited) as app:
        for _ in range(2):
            assert not (await app.core.on_command(MEMBER, "/continue hi seed=1")).is_error
        refused = await app.core.on_command(MEMBER, "/continue hi seed=1")
        assert refused.is_error and "Slow down" in refused.texts[0]
        other = CommandContext(REF, Author("3", "Other"))
        assert not (await app.core.on_command(other, "/continue hi seed=1")).is_error


async def test_opting_out_forgets_and_stops_storing_a_users_messages(app: App) -> None:
    from datetime import UTC, datetime

    from bot.domain import ChatMessage

    hana = Author("5", "Hana")
    for i in range(3):
        await app.core.on_message(ChatMessage(REF, f"h{i}", hana, f"hana {i}", datetime.now(UTC)))
    await app.core.on_message(
        ChatMessage(REF, "m1", Author("2", "Member"), "hi", datetime.now(UTC))
    )
    reply = await app.core.on_command(CommandContext(REF, hana), "/optout")
    assert "3 deleted" in reply.texts[0]
    await app.core.on_message(ChatMessage(REF, "h9", hana, "after", datetime.now(UTC)))
    assert [m.text for m in await app.messages.recent(REF, 10)] == ["hi"]
    await app.core.on_command(CommandContext(REF, hana), "/optin")
    await app.core.on_message(ChatMessage(REF, "h10", hana, "back", datetime.now(UTC)))
    assert [m.text for m in await app.messages.recent(REF, 10)] == ["hi", "back"]


async def test_queue_training_needs_admin_and_consent(app: App) -> None:
    assert (await app.core.on_command(MEMBER, "/train")).is_error
    refused = await app.core.on_command(ADMIN, "/train")
    assert refused.is_error and "Training is off" in refused.texts[0]
    await app.core.on_command(ADMIN, "/training on")
    queued = await app.core.on_command(ADMIN, "/train")
    assert "queued" in queued.texts[0]
    jobs = {j.kind: j for j in await app.jobs.recent()}
    # Turning training on for a Discord channel also queued reading its history.
    assert set(jobs) == {"train", "backfill"}
    assert (jobs["train"].channel, jobs["train"].status) == (REF, "queued")
