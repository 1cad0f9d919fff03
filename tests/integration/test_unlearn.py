""" "Don't learn from this" through the core and the real stores (SQLite, and PostgreSQL
when configured): its author's or an admin's word, audited; the message is never
stored again, by a platform's re-delivery (live ingest) or by an import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import App, running_app
from bot.config import Settings
from bot.core import command_values as cmd
from bot.core.context import CommandContext
from bot.domain import Author, ChannelRef, ChatMessage
from bot.records import ImportBatch

REF = ChannelRef("slack", "T1", "C1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARO, HANAKO = Author("UTARO", "taro"), Author("UHANAKO", "hanako")
ADMIN = Author("UADMIN", "admin", is_admin=True)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[App]:
    async with running_app(settings) as application:
        yield application


def said(external_id: str, author: Author, text: str) -> ChatMessage:
    return ChatMessage(REF, external_id, author, text, T0 + timedelta(seconds=len(external_id)))


async def unlearn(app: App, who: Author, external_id: str) -> str:
    reply = await app.core.on_command(CommandContext(REF, who), cmd.Unlearn(external_id))
    return reply.texts[0]


async def test_an_unlearned_message_is_never_stored_again(app: App) -> None:
    secret, other = said("m1", TARO, "秘密の話"), said("m22", HANAKO, "おはよう")
    await app.core.on_message(secret)
    await app.core.on_message(other)
    assert "Only its author" in await unlearn(app, HANAKO, "m1")
    assert await app.messages.count(REF) == 2
    assert (await unlearn(app, TARO, "m1")).startswith("Done")
    assert await app.messages.count(REF) == 1

    await app.core.on_message(secret)  # the platform delivers it again
    assert [m.text for m in await app.messages.recent(REF, 10)] == ["おはよう"]
    counts = await app.messages.add_batch(ImportBatch(messages=[secret, said("m333", TARO, "x")]))
    assert (counts[REF].imported, counts[REF].unlearned) == (1, 1)
    assert "秘密の話" not in [m.text for m in await app.messages.recent(REF, 10)]

    # An admin, on anyone's message; one that is not stored is said to be so.
    assert (await unlearn(app, ADMIN, "m22")).startswith("Done")
    assert "not in this channel's history" in await unlearn(app, ADMIN, "m22")
    actions = [(e.actor, e.action) for e in await app.channels.audit(REF)]
    assert ("slack:UTARO", "messages.unlearn") in actions
    assert ("slack:UADMIN", "messages.unlearn") in actions
