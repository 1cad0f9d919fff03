"""Unprompted replies in the console channel: after a member's message the bot sometimes
writes the channel's next message, by the channel's `reply_chance` and `reply_cooldown`.
The console awaits each line's handling, so what was not said is certain here; the
Discord and Slack tests (tests/e2e) check the same through the platforms."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from adapters.console_adapter import ConsoleAdapter
from bot.app import App, running_app
from bot.config import Settings
from bot.core.context import CommandContext
from bot.domain import Author, ChannelRef, ChatMessage, GenerationRequest, GenerationResult
from bot.ports import TextListener

REF = ChannelRef.parse("console:general")
ADMIN = CommandContext(REF, Author("admin", "Admin", is_admin=True))
MEMBER = CommandContext(REF, Author("member", "Member"))


class CountingGenerator:
    """Says "next!" for a reply and continues a prompt with " …"; a /continue whose
    prompt is "hold" waits until `release` is set (a request people are waiting on)."""

    def __init__(self) -> None:
        self.requests: list[GenerationRequest] = []
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        self.requests.append(request)
        if request.prompt == "hold":
            self.holding.set()
            await self.release.wait()
        text = "next!" if request.mode == "reply" else request.prompt + " …"
        return GenerationResult((text,), "scripted", 0, 1, 0.0)

    @property
    def replies(self) -> int:
        return sum(r.mode == "reply" for r in self.requests)


@pytest.fixture
async def app(local_settings: Settings) -> AsyncIterator[tuple[App, CountingGenerator]]:
    generator = CountingGenerator()
    async with running_app(local_settings, generator=generator) as application:
        yield application, generator


async def say(app: App, *lines: str) -> str:
    out = io.StringIO()
    adapter = ConsoleAdapter(app.core, REF, stdin=io.StringIO(""), stdout=out, stderr=io.StringIO())
    for line in lines:
        await adapter.handle_line(line)
    return out.getvalue()


async def setting(app: App, key: str, value: str, ctx: CommandContext = ADMIN) -> str:
    reply = await app.core.on_command(ctx, f"/settings set {key} {value}")
    return reply.texts[0]


async def test_chance_zero_by_default_never_replies(app: tuple[App, CountingGenerator]) -> None:
    application, generator = app
    out = await say(application, *(f"message {i}" for i in range(20)))
    assert out == "" and generator.replies == 0


async def test_chance_one_replies_after_every_message_the_cooldown_allows(
    app: tuple[App, CountingGenerator],
) -> None:
    application, generator = app
    await setting(application, "reply_chance", "1")
    await setting(application, "reply_cooldown", "0")
    out = await say(application, "おはよう", "lunch?")
    assert out.splitlines() == ["next!", "next!"] and generator.replies == 2
    # The bot's own words are not history: only the members' two messages are stored.
    assert [m.text for m in await application.messages.recent(REF, 10)] == ["おはよう", "lunch?"]


async def test_the_cooldown_holds_between_unprompted_replies(
    app: tuple[App, CountingGenerator],
) -> None:
    application, generator = app
    await setting(application, "reply_chance", "1")
    await setting(application, "reply_cooldown", "3600")
    out = await say(application, "one", "two", "three")
    assert out.splitlines() == ["next!"]
    # A mention is always answered, cooldown or not.
    out = await say(application, "@tsuzuki what now?")
    assert out.splitlines() == ["next!"] and generator.replies == 2


async def test_never_after_a_bot_and_never_while_someone_waits(
    app: tuple[App, CountingGenerator],
) -> None:
    application, generator = app
    await setting(application, "reply_chance", "1")
    await setting(application, "reply_cooldown", "0")
    bot_message = ChatMessage(
        REF, "b1", Author("other-bot", "Other", is_bot=True), "beep", datetime.now(UTC)
    )
    assert await application.core.on_message(bot_message) is None
    # A member's /continue is being generated: the queue is busy.
    waiting = asyncio.create_task(application.core.on_command(MEMBER, "/continue hold"))
    await asyncio.wait_for(generator.holding.wait(), 10)
    assert await say(application, "meanwhile") == ""
    generator.release.set()
    assert (await waiting).texts == ("hold …",)
    assert generator.replies == 0
    # Quiet again: the next message gets its reply.
    assert await say(application, "and now?") == "next!\n"


async def test_only_admins_change_it_and_bad_values_are_refused(
    app: tuple[App, CountingGenerator],
) -> None:
    application, _ = app
    assert "Only channel admins" in await setting(application, "reply_chance", "1", MEMBER)
    assert "reply_chance must be a number in the range 0–1" in await setting(
        application, "reply_chance", "1.5"
    )
    assert "reply_cooldown must be an integer" in await setting(
        application, "reply_cooldown", "soon"
    )
    # Not a per-request setting: /continue refuses it and names the command to use.
    reply = await application.core.on_command(MEMBER, "/continue hello reply_chance=1")
    assert reply.is_error and "/settings set reply_chance" in reply.texts[0]
    assert (await application.commands.settings.options(REF)).reply_chance == 0.0
    # Changes are shown with the other settings and audited like them.
    await setting(application, "reply_chance", "0.25")
    shown = (await application.core.on_command(MEMBER, "/settings show")).texts[0]
    assert "reply_chance = 0.25 (set for this channel; 0–1)" in shown
    assert "notices = off (default; on|off)" in shown
    audit = await application.channels.audit(REF)
    assert [(a.actor, a.key, a.new_value) for a in audit] == [
        ("console:admin", "reply_chance", "0.25")
    ]
