"""`FakeSlack`, composed of the fake's parts (see tests/fakes/slack/__init__.py), with its
lifecycle and the `fake_slack` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.slack.files import Files
from tests.fakes.slack.home import Home
from tests.fakes.slack.interactions import Interactions
from tests.fakes.slack.messaging import Messaging
from tests.fakes.slack.protocol import (
    ACK_TIMEOUT,
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    DEFAULT_TEAM_DOMAIN,
    DEFAULT_TEAM_ID,
    DEFAULT_TEAM_NAME,
)


class FakeSlack(Interactions, Files, Home, Messaging):
    """A fake Slack: Web API under `api_url`, response URLs from `response_url(name)`, and
    Socket Mode at `/socket-mode` (the URL `apps.connections.open` hands out).

    Recorded: `calls` (every Web API call), `tokens_seen` (Authorization header values),
    `unknown_methods`, `posted` (chat.postMessage / postEphemeral / update, decoded),
    `uploads` (completed file uploads, in order; `files` holds every file id handed out),
    `responses` (response_url posts by name), `socket_envelopes` (sent, by envelope id),
    `socket_acks`, `socket_received` (every message from Socket Mode clients) and
    `socket_connections_total`. State: `users`, `channels`, `history` (per channel, oldest
    first, including thread replies) and `auth_info` (the auth.test answer, mutable).
    """

    def __init__(
        self,
        *,
        team_id: str = DEFAULT_TEAM_ID,
        team_name: str = DEFAULT_TEAM_NAME,
        team_domain: str = DEFAULT_TEAM_DOMAIN,
        bot_user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
        bot_name: str = "tsuzuki",
        app_id: str = APP_ID,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        channels: Mapping[str, str] | None = None,
        bot_token: str | None = None,
        app_token: str | None = None,
        ack_timeout: float = ACK_TIMEOUT,
        redeliver_unacked: bool = False,
    ) -> None:
        super().__init__(
            team_id=team_id,
            team_name=team_name,
            team_domain=team_domain,
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            bot_name=bot_name,
            app_id=app_id,
            users=users,
            channels=channels,
            bot_token=bot_token,
            app_token=app_token,
        )
        self._init_web_api(
            {
                **self._web_api_methods(),
                **self._socket_methods(),
                **self._messaging_methods(),
                **self._file_methods(),
                **self._home_methods(),
            }
        )
        self._init_messaging()
        self._init_files()
        self._init_interactions()
        self._init_home()
        self._init_socket_mode(ack_timeout=ack_timeout, redeliver_unacked=redeliver_unacked)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response)
        app.router.add_post("/upload/v1/{key}", self._upload)
        app.router.add_get("/files-pri/{file_id}/{name}", self._download)
        app.router.add_get("/socket-mode", self._socket)
        app.router.add_get("/socket-mode/", self._socket)
        await self._listen(app)

    async def close(self) -> None:
        await self._close_sockets()
        await self._stop_listening()
        self._notify()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A started FakeSlack (team T0001, bot UBOT/BBOT, channel C0001, app A0001)."""
    async with FakeSlack() as fake:
        yield fake
