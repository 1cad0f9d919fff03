"""The bot as `tsuzuki run` runs it, for end-to-end tests: the production bootstrap
(`running_app` + `App.serve`) with settings that point the platforms at the fakes, so a
test exercises the same wiring a user's bot has (supervisors, history sources, the job
runner serving in the background)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from pydantic import SecretStr

from bot.app import App, running_app
from bot.config import Settings
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack

DISCORD_TOKEN = "test-token-abcdefghijklmnop"
DISCORD_GUILD = 111
SLACK_SECRET = "signing-secret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def continue_answer(
    fake: FakeSlack, name: str, channel: str, *, start: int = 0, within: float = 20.0
) -> str:
    """The first text a Slack /continue showed the channel: in the message it streams
    into (the bot's first chat.postMessage there from `start` on in `fake.posted`), or,
    when nothing streamed, its answer to `response_url(name)`, which must then be for
    the channel rather than the asker alone."""

    def found() -> str | None:
        for p in fake.posted[start:]:
            if p.method == "chat.postMessage" and p.channel == channel:
                return p.text
        for r in fake.responses.get(name, []):
            assert r.json["response_type"] == "in_channel", r.json
            return str(r.json["text"])
        return None

    await until(lambda: found() is not None, within)
    answer = found()
    assert answer is not None
    return answer


def with_discord(settings: Settings, fake: FakeDiscord) -> Settings:
    return settings.model_copy(
        update={
            "discord_token": SecretStr(DISCORD_TOKEN),
            "discord_api_url": fake.api_url,
            "discord_gateway_url": fake.gateway_url,
            "discord_sync_guild": DISCORD_GUILD,
            "platform_retry_first_s": 0.2,
            "platform_retry_max_s": 0.5,
        }
    )


def with_slack(settings: Settings, fake: FakeSlack, **more: Any) -> Settings:
    """Slack in HTTP mode on a free port (Socket Mode: pass slack_app_token)."""
    return settings.model_copy(
        update={
            "slack_bot_token": SecretStr("xoxb-test"),
            "slack_signing_secret": SecretStr(SLACK_SECRET),
            "slack_http_port": free_port(),
            "slack_api_url": fake.api_url,
            "platform_retry_first_s": 0.2,
            "platform_retry_max_s": 0.5,
            **more,
        }
    )


@asynccontextmanager
async def serving(settings: Settings, **overrides: Any) -> AsyncIterator[App]:
    """The app, serving, once every platform is up; stopped again on the way out."""
    async with running_app(settings, **overrides) as app:
        task = asyncio.create_task(app.serve())
        try:
            await until(lambda: all(p.state == "up" for p in app.platforms) or task.done(), 30)
            if task.done():
                task.result()  # serve() ended early: show why
            yield app
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
