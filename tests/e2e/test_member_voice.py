"""A member's voice under their name: after their `/voice on`, `/continue … as:@member`
posts through the channel's webhook (Discord) as "name (Tsuzuki)" with their avatar, or
with Slack's username and icon_url (chat:write.customize), marked as generated and
pinging no one; never before `/voice on` nor after `/voice off`. Without Manage Webhooks
or the scope it is posted as the bot, and the admin who asked is told why, once."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from bot.config import Settings
from bot.domain import GenerationRequest, GenerationResult
from bot.ports import TextListener
from tests.e2e.serving import serving, until, with_discord, with_slack
from tests.e2e.test_notices import discord_command, slack_command
from tests.e2e.test_slack import HttpSlack
from tests.fakes.discord.webhooks import MANAGE_WEBHOOKS
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack.protocol import CUSTOMIZE
from tests.fakes.slack_server import FakeSlack
from tests.integration.test_unprompted import CountingGenerator

pytestmark = pytest.mark.usefixtures("ml_libraries")
log = logging.getLogger("payloads")

GUILD, CHANNEL, ADMIN, MEMBER = "111", "222", "1001", "1002"
PINGS = " @everyone <@1001>"


class PingingGenerator(CountingGenerator):
    """Continues a prompt with pings (which must never ping)."""

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        self.requests.append(request)
        return GenerationResult((request.prompt + PINGS,), "scripted", 0, 1, 0.0)


async def test_discord_posts_a_lent_voice_through_a_webhook(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    fake.grant_bot(GUILD, MANAGE_WEBHOOKS)
    async with serving(with_discord(local_settings, fake), generator=PingingGenerator()):

        async def continue_as() -> str:
            payload = await fake.slash_command(
                CHANNEL, ADMIN, "continue", {"prompt": "晩ごはんは", "as": MEMBER}
            )
            return str(payload["token"])

        token = await continue_as()
        refused = await fake.wait_for_request(
            method="POST", path=f"/webhooks/{fake.app_id}/{token}"
        )
        assert "has not lent this channel their voice" in refused.json["content"]
        assert not fake.webhook_messages

        await discord_command(fake, MEMBER, "voice on")
        token = await continue_as()
        await until(lambda: bool(fake.webhook_messages), 20)
        (execute,) = [
            r
            for r in fake.requests
            if r.path.startswith("/webhooks/")
            and not r.path.startswith(f"/webhooks/{fake.app_id}/")
        ]
        log.info("discord webhook post: %s", json.dumps(execute.json, ensure_ascii=False))
        body = execute.json
        assert body["username"] == "bob (Tsuzuki)"
        assert body["avatar_url"].startswith("https://cdn.discordapp.com/")
        assert body["allowed_mentions"] == {"parse": []}
        assert body["content"].startswith("晩ごはんは")
        assert "@everyone" not in body["content"].replace("@\u200beveryone", "")
        assert body["content"].endswith("not by them")  # marked as generated
        (posted,) = fake.webhook_messages
        assert posted["mentions"] == [] and posted["webhook_id"]
        # The "thinking…" answer went; nothing was posted as the bot.
        original = f"/webhooks/{fake.app_id}/{token}/messages/@original"
        await fake.wait_for_request(method="DELETE", path=original)
        assert fake.webhooks  # made once, found again next time
        await continue_as()
        await until(lambda: len(fake.webhook_messages) == 2, 20)
        assert len(fake.webhooks) == 1

        await discord_command(fake, MEMBER, "voice off")
        token = await continue_as()
        refused = await fake.wait_for_request(
            method="POST", path=f"/webhooks/{fake.app_id}/{token}"
        )
        assert "has not lent" in refused.json["content"]
        await asyncio.sleep(0.3)
        assert len(fake.webhook_messages) == 2


async def test_discord_without_manage_webhooks_posts_as_the_bot_and_says_why_once(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    async with serving(with_discord(local_settings, fake), generator=CountingGenerator()):
        await discord_command(fake, MEMBER, "voice on")
        for time in range(2):
            payload = await fake.slash_command(
                CHANNEL, ADMIN, "continue", {"prompt": "晩ごはんは", "as": MEMBER}
            )
            path = f"/webhooks/{fake.app_id}/{payload['token']}"
            answer = await fake.wait_for_request(method="POST", path=path, timeout=20)
            assert answer.json["content"] == "晩ごはんは …"  # as the bot, for the channel
            assert not answer.json.get("flags", 0) & 64
            await asyncio.sleep(0.5)
            told = [
                r
                for r in fake.requests
                if r.path.startswith(path)
                and "Manage Webhooks" in str((r.json or {}).get("content"))
            ]
            assert len(told) == (1 if time == 0 else 0)
            if told:
                assert told[0].json["flags"] & 64  # the admin alone
        assert not fake.webhook_messages


async def test_slack_posts_a_lent_voice_under_the_members_name(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    fake = fake_slack
    async with serving(with_slack(local_settings, fake), generator=PingingGenerator()) as app:
        slack = HttpSlack(app, fake)
        await slack_command(slack, "voice on", "UMEMBER")

        # Without chat:write.customize: as the bot, and the admin is told, once.
        name = await slack.command("晩ごはんは as:<@UMEMBER|member>", user="UADMIN")
        answer = await fake.wait_for_response(name, timeout=20)
        assert answer.json["response_type"] == "in_channel"
        told = await fake.wait_for_response(name, start=1)
        assert told.json["response_type"] == "ephemeral"
        assert CUSTOMIZE in told.json["text"]

        fake.scopes.add(CUSTOMIZE)
        start = len(fake.calls_to("chat.postMessage"))
        await slack.command("晩ごはんは as:<@UMEMBER|member>", user="UADMIN")
        await until(lambda: len(fake.calls_to("chat.postMessage")) > start, 20)
        post = fake.calls_to("chat.postMessage")[-1]
        log.info("slack post in a member's voice: %s", json.dumps(post.params, ensure_ascii=False))
        assert post.params["username"] == "bob (Tsuzuki)"  # the member's display name
        assert post.params["icon_url"] == "https://avatars.example/UMEMBER_72.png"
        assert post.params["text"].startswith("晩ごはんは")
        assert "<!everyone>" not in post.params["text"] and "<@UADMIN>" not in post.params["text"]
        assert post.params["text"].endswith("not by them_")

        await slack_command(slack, "voice off", "UMEMBER")
        name = await slack.command("晩ごはんは as:<@UMEMBER|member>", user="UADMIN")
        refused = await fake.wait_for_response(name, timeout=20)
        assert "has not lent" in refused.json["text"]
        assert len(fake.calls_to("chat.postMessage")) == start + 1


def _tells_why(body: object) -> bool:
    return isinstance(body, dict) and "Manage Webhooks" in str(body.get("content"))
