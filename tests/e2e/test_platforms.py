"""`tsuzuki run` with two platforms, built by the production bootstrap (build_app +
App.serve) from settings that point at the fakes: one platform that cannot be reached
neither stops the other nor the job runner, is retried, and is reported."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from pydantic import SecretStr

from bot.app import App, running_app
from bot.config import Settings
from bot.engine.metrics import summarise
from tests.e2e.serving import (
    DISCORD_GUILD,
    DISCORD_TOKEN,
    SLACK_SECRET,
    continue_answer,
    free_port,
    until,
    with_slack,
)
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import (
    DEFAULT_CHANNEL_ID,
    FakeSlack,
    signed_headers,
    slash_command_body,
)


def two_platforms(settings: Settings, discord_port: int, slack: FakeSlack) -> Settings:
    """Slack at its fake; Discord at a port where nothing may be listening yet."""
    return with_slack(settings, slack).model_copy(
        update={
            "discord_token": SecretStr(DISCORD_TOKEN),
            "discord_api_url": f"http://127.0.0.1:{discord_port}/api/v10",
            "discord_gateway_url": f"ws://127.0.0.1:{discord_port}/gateway",
            "discord_sync_guild": DISCORD_GUILD,
        }
    )


async def slack_continue(app: App, fake: FakeSlack, prompt: str) -> str:
    name, start = f"r{time.monotonic_ns()}", len(fake.posted)
    body = slash_command_body("/continue", prompt, response_url=fake.response_url(name))
    url = f"http://127.0.0.1:{app.settings.slack_http_port}/slack/events"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=signed_headers(SLACK_SECRET, body)) as response,
    ):
        assert response.status == 200
    return await continue_answer(fake, name, DEFAULT_CHANNEL_ID, start=start, within=30)


async def test_discord_down_at_start_leaves_slack_answering_and_comes_back(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    port = free_port()  # nothing listens here yet: Discord is unreachable
    settings = two_platforms(local_settings, port, fake_slack)
    async with running_app(settings) as app:
        discord, slack = app.platforms
        assert (discord.name, slack.name) == ("discord", "slack")
        serving = asyncio.create_task(app.serve())
        try:
            await until(lambda: slack.state == "up" and discord.failures >= 2)
            assert discord.state in ("down", "starting")
            assert not serving.done()  # the bot did not exit
            assert (await slack_continue(app, fake_slack, "織田信長は、")).startswith(
                "織田信長は、"
            )

            # What `tsuzuki status` prints from the metrics endpoint.
            from prometheus_client import generate_latest

            status = summarise(generate_latest(app.worker.metrics.registry).decode())
            assert any("discord down" in line and "slack up" in line for line in status), status

            # Discord comes back on the same address: the bot reconnects on its own.
            fake = FakeDiscord()
            await fake.start(port)
            try:
                await until(lambda: discord.state == "up", within=30)
                payload = await fake.slash_command("222", "1002", "continue", {"prompt": "hi"})
                fake.interaction(payload["token"])
                answer = await fake.wait_for_request(  # streamed or posted
                    path=f"/webhooks/{fake.app_id}/", timeout=30
                )
                assert answer.json["content"].startswith("hi")
                assert slack.state == "up"
            finally:
                await fake.close()
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        assert discord.state == slack.state == "stopped"
