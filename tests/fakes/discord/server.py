"""`FakeDiscord`, composed of the fake's parts (see tests/fakes/discord/__init__.py), with
its lifecycle, the patching of discord.py, and the `fake_discord` fixture."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import discord.gateway
import discord.http
import pytest
import yarl
from aiohttp import web

from tests.fakes.discord.commands import Commands
from tests.fakes.discord.protocol import APP_ID, BOT_ID
from tests.fakes.discord.resources import Resources
from tests.fakes.discord.slash_commands import SlashCommands
from tests.fakes.discord.webhooks import Webhooks


class FakeDiscord(SlashCommands, Webhooks, Commands, Resources):
    """A fake Discord: REST under `api_url`, the gateway at `gateway_url`.

    IDs are snowflake strings throughout (methods accept ints too). Everything the bot did
    is recorded: `requests` (every REST request), `tokens_seen` (Authorization headers),
    `unknown_routes`, `gateway_received` (every gateway payload from the client),
    `dispatched` (every event sent), `interactions` (by token), `commands` (synced app
    commands; key None for global, else the guild id), `channel_messages` (each
    channel's stored messages, oldest first, as REST returns them) and `versions` (each
    message's content as created and after each edit, in order: what a user saw of it).
    """

    def __init__(
        self,
        *,
        guilds: Mapping[int | str, Mapping[str, Any]] | None = None,
        users: Mapping[int | str, Mapping[str, Any]] | None = None,
        bot_id: int | str = BOT_ID,
        app_id: int | str = APP_ID,
        bot_name: str = "Tsuzuki",
        token: str | None = None,
        heartbeat_interval_ms: int = 41_250,
        compress_gateway: bool = True,
        interaction_ack_timeout: float = 3.0,
        echo_own_messages: bool = True,
    ) -> None:
        super().__init__(
            guilds=guilds,
            users=users,
            bot_id=bot_id,
            app_id=app_id,
            bot_name=bot_name,
            token=token,
        )
        self._init_gateway(
            heartbeat_interval_ms=heartbeat_interval_ms,
            compress_gateway=compress_gateway,
            echo_own_messages=echo_own_messages,
        )
        self._init_interactions(ack_timeout=interaction_ack_timeout)
        self._init_webhooks()
        self._init_rest(
            [
                *self._resource_routes(),
                *self._command_routes(),
                *self._message_routes(),
                *self._webhook_routes(),  # before the interaction webhook's
                *self._interaction_routes(),
            ]
        )
        self._saved_patch: tuple[str, yarl.URL] | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        """Listens on `port` (0: any free one): a test can bring Discord up on the port
        a bot has been failing to reach."""
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_route("*", "/api/v{version:\\d+}/{tail:.*}", self._rest)
        await self._listen(app, port)

    async def close(self) -> None:
        await self._close_connections()
        self._cancel_waiters()
        await self._stop_listening()
        self.unpatch_discord_py()

    # --- pointing discord.py at the fake ---------------------------------------------------

    def patch_discord_py(self) -> None:
        """Set Route.BASE and DiscordWebSocket.DEFAULT_GATEWAY to the fake (process-wide)."""
        if self._saved_patch is None:
            self._saved_patch = (
                discord.http.Route.BASE,
                discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
            )
        discord.http.Route.BASE = self.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    def unpatch_discord_py(self) -> None:
        """Put back what `patch_discord_py` replaced (no-op if it was not called)."""
        if self._saved_patch is not None:
            base, gateway = self._saved_patch
            discord.http.Route.BASE = base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
            self._saved_patch = None

    @contextlib.contextmanager
    def patched_discord_py(self) -> Iterator[FakeDiscord]:
        self.patch_discord_py()
        try:
            yield self
        finally:
            self.unpatch_discord_py()


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord with discord.py pointed at it (restored afterwards)."""
    async with FakeDiscord() as fake:
        with fake.patched_discord_py():
            yield fake
