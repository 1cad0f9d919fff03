"""Reply chains through the core and the real stores (SQLite, and PostgreSQL when
configured): a conversation is read back from the history as it is now, so a member
who opted out, or a message deleted, drops out of it; a post deleted on the platform
ends its chain; a channel keeps only its newest posts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import App, running_app
from bot.config import Settings
from bot.core.context import CommandContext
from bot.domain import Author, ChannelRef, ChatMessage, Reply
from storage.stores import bot_posts
from tests.integration.test_unprompted import CountingGenerator

REF = ChannelRef("slack", "T1", "C1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HANAKO, TARO = Author("UHANAKO", "hanako"), Author("UTARO", "taro")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[tuple[App, CountingGenerator]]:
    generator = CountingGenerator()
    async with running_app(settings, generator=generator) as application:
        yield application, generator


def said(external_id: str, author: Author, text: str, reply_to: str | None = None) -> ChatMessage:
    at = T0 + timedelta(seconds=int(external_id[1:]))
    return ChatMessage(REF, external_id, author, text, at, reply_to=reply_to)


async def answer(
    app: App, message: ChatMessage, post_id: str, *, mentions_bot: bool = False
) -> Reply | None:
    """The core's answer to `message`, posted by the platform as `post_id`."""
    reply = await app.core.on_message(message, mentions_bot=mentions_bot)
    if reply is not None:
        await app.core.on_posted(REF, reply, [(post_id, reply.texts[0])])
    return reply


async def test_a_chain_is_read_back_as_the_history_is_now(
    app: tuple[App, CountingGenerator],
) -> None:
    application, generator = app
    assert await answer(application, said("m1", HANAKO, "ramen?"), "b1", mentions_bot=True)
    assert await answer(application, said("m2", TARO, "miso", reply_to="b1"), "b2")
    assert generator.requests[-1].context[-3:] == ("ramen?", "next!", "miso")

    # Hanako opts out: her question leaves the conversation, as it left the history.
    hanako = CommandContext(REF, HANAKO)
    await application.core.on_command(hanako, "/optout")
    assert await answer(application, said("m3", TARO, "tonkotsu?", reply_to="b2"), "b3")
    assert generator.requests[-1].context == ("next!", "miso", "next!", "tonkotsu?")

    # The bot's answer deleted on the platform: a reply to it starts nothing.
    await application.core.on_delete(REF, ["b3"])
    before = len(generator.requests)
    assert await answer(application, said("m4", TARO, "hello?", reply_to="b3"), "b4") is None
    assert len(generator.requests) == before
    assert [m.text for m in await application.messages.recent(REF, 10)] == [
        "miso",
        "tonkotsu?",
        "hello?",
    ]


async def test_a_channel_keeps_its_newest_posts(
    app: tuple[App, CountingGenerator], monkeypatch: pytest.MonkeyPatch
) -> None:
    application = app[0]
    monkeypatch.setattr(bot_posts, "KEPT_PER_CHANNEL", 3)
    posts = application.core.ingest.replies.stores.posts
    for i in range(5):
        await posts.add(REF, [(f"b{i}", f"post {i}")], chain=[f"m{i}"])
    kept = [await posts.find(REF, f"b{i}") for i in range(5)]
    assert [p.text if p else None for p in kept] == [None, None, "post 2", "post 3", "post 4"]
    assert kept[4] is not None and kept[4].chain == ("m4",)
    await posts.add(REF, [("b4", "again")], chain=[])  # a post seen again keeps the first
    again = await posts.find(REF, "b4")
    assert again is not None and again.text == "post 4"
