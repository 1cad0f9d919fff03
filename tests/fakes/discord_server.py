"""A fake Discord (REST API and gateway) on 127.0.0.1, for driving a real discord.py client.

    async with FakeDiscord() as fake:
        with fake.patched_discord_py():
            client = discord.Client(intents=..., guild_ready_timeout=0.1)
            task = asyncio.create_task(client.start("test-token"))
            await client.wait_until_ready()
            await fake.send_message(fake.default_channel_id, "1001", "hello")
            request = await fake.wait_for_request(method="POST", path="/messages")
            await client.close()

discord.py is pointed at the fake through two class attributes: `discord.http.Route.BASE`
(REST, webhooks and interaction callbacks all build their URLs from it) and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` (a plain `Client` never asks REST for
the gateway URL; only `AutoShardedClient` calls `GET /gateway/bot`).

Payloads follow the Discord API v10 shapes closely enough for discord.py's parsers, and
the fake keeps the server-side rules a bot can trip over: the 3-second window to answer an
interaction, one answer per interaction, no followup before the answer, 2000 characters
per message, no empty message, the MESSAGE_CONTENT intent blanking other people's
messages, rate limits (429 with `Via`, `Retry-After` and `X-RateLimit-*`) on request, and
the bot's own messages echoed back over the gateway.

The fake's parts are in tests/fakes/discord/ (its __init__ lists them); this module is
the import path the tests use.
"""

from __future__ import annotations

from tests.fakes.discord.protocol import (
    ADMIN_USER_ID,
    APP_ID,
    BOT_ID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_GUILD_ID,
    MEMBER_USER_ID,
)
from tests.fakes.discord.records import InteractionRecord, RecordedFile, RecordedRequest
from tests.fakes.discord.server import FakeDiscord, fake_discord

__all__ = [
    "ADMIN_USER_ID",
    "APP_ID",
    "BOT_ID",
    "DEFAULT_CHANNEL_ID",
    "DEFAULT_GUILD_ID",
    "MEMBER_USER_ID",
    "FakeDiscord",
    "InteractionRecord",
    "RecordedFile",
    "RecordedRequest",
    "fake_discord",
]
