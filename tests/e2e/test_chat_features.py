"""Unprompted replies and members' voices on the Discord and Slack fakes, through the
real clients. With `reply_chance` 1 a member's message is followed by the channel's next
message, posted as a message of its own; never after a bot, and not again within the
cooldown (every case, with what was *not* said made certain, runs in
tests/integration/test_unprompted.py). `/continue … as:@member` works after that
member's `/voice on`, and is refused before and after `/voice off`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.app import App
from bot.config import Settings
from bot.domain import ChannelRef
from tests.e2e.serving import serving, with_discord, with_slack
from tests.e2e.test_notices import discord_command, slack_command
from tests.e2e.test_slack import HttpSlack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack
from tests.integration.test_unprompted import CountingGenerator

pytestmark = pytest.mark.usefixtures("ml_libraries")

GUILD, CHANNEL, ADMIN, MEMBER, OTHER_BOT = "111", "222", "1001", "1002", "1009"
# How long a message that would be answered takes at most here: a scripted generation
# and a few database reads.
SETTLE_S = 1.0


async def test_discord_writes_the_next_message_unprompted(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    fake.add_user(OTHER_BOT, "otherbot", bot=True)
    generator = CountingGenerator()
    async with serving(with_discord(local_settings, fake), generator=generator) as app:
        await discord_command(fake, ADMIN, "settings set", key="reply_chance", value="1")
        await discord_command(fake, ADMIN, "settings set", key="reply_cooldown", value="3600")

        await fake.send_message(CHANNEL, OTHER_BOT, "beep boop")  # a bot: never answered
        first = await fake.send_message(CHANNEL, MEMBER, "誰か晩ごはん行く？")
        posted = await fake.wait_for_request(
            method="POST", path=f"/channels/{CHANNEL}/messages", timeout=20
        )
        assert posted.json["content"] == "next!"
        assert "message_reference" not in posted.json  # its own message, not a reply
        assert posted.json["allowed_mentions"] == {"parse": []}
        assert generator.replies == 1

        # Within the cooldown: stored, not answered.
        await fake.send_message(CHANNEL, MEMBER, "おーい")
        ref = ChannelRef("discord", GUILD, CHANNEL)
        await _stored(app, ref, 2)
        await asyncio.sleep(SETTLE_S)
        assert generator.replies == 1
        texts = [m.text for m in await app.messages.recent(ref, 10)]
        assert texts[0] == first["content"] and "beep boop" not in texts


async def test_slack_writes_the_next_message_unprompted(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    generator = CountingGenerator()
    async with serving(with_slack(local_settings, fake_slack), generator=generator) as app:
        slack = HttpSlack(app, fake_slack)
        await slack_command(slack, "settings set reply_chance 1", "UADMIN")
        await slack_command(slack, "settings set reply_cooldown 3600", "UADMIN")
        bot_event = fake_slack.message_event("beep", ts="1700000100.000100")
        bot_event["bot_id"] = "BOTHER"
        await slack.event(bot_event, "EvBot")
        await slack.event(fake_slack.message_event("lunch?", ts="1700000101.000100"), "EvM1")
        call = await fake_slack.wait_for_call("chat.postMessage", timeout=20)
        assert call.params["text"] == "next!" and call.params["channel"] == "C0001"
        # Slack delivers the same message again (a retry): stored once, answered once.
        await slack.event(fake_slack.message_event("lunch?", ts="1700000101.000100"), "EvM1b")
        await slack.event(fake_slack.message_event("anyone?", ts="1700000102.000100"), "EvM2")
        await _stored(app, ChannelRef("slack", "T0001", "C0001"), 2)
        await asyncio.sleep(SETTLE_S)
        assert generator.replies == 1
        assert len(fake_slack.calls_to("chat.postMessage")) == 1


async def _stored(app: App, ref: ChannelRef, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while await app.messages.count(ref) < count:
        assert asyncio.get_running_loop().time() < deadline, "not stored in time"
        await asyncio.sleep(0.05)


# --- one member's voice -------------------------------------------------------------------


async def test_discord_continue_as_a_member_after_their_voice_on(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    generator = CountingGenerator()
    async with serving(with_discord(local_settings, fake), generator=generator):

        async def continue_as(user: str) -> dict[str, Any]:
            payload = await fake.slash_command(
                CHANNEL, ADMIN, "continue", {"prompt": "晩ごはんは", "as": user}
            )
            path = f"/webhooks/{fake.app_id}/{payload['token']}"
            request = await fake.wait_for_request(method="POST", path=path, timeout=30)
            return dict(request.json)

        refused = await continue_as(MEMBER)
        assert refused["flags"] & 64  # for the asker alone
        assert "has not lent this channel their voice" in str(refused["content"])

        said = await discord_command(fake, MEMBER, "voice on")
        assert "your voice" in said
        answer = await continue_as(MEMBER)
        assert answer["content"] == "晩ごはんは …" and not answer.get("flags", 0) & 64
        assert generator.requests[-1].voice.startswith("«")

        await discord_command(fake, MEMBER, "voice off")
        assert "has not lent" in str((await continue_as(MEMBER))["content"])


async def test_slack_continue_as_a_member_after_their_voice_on(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    generator = CountingGenerator()
    async with serving(with_slack(local_settings, fake_slack), generator=generator) as app:
        slack = HttpSlack(app, fake_slack)

        async def continue_as(text: str) -> dict[str, Any]:
            name = await slack.command(text, user="UADMIN")
            return dict((await fake_slack.wait_for_response(name, timeout=30)).json)

        # Slack writes a mention in a command's text as <@U…|name> (escaped users).
        refused = await continue_as("晩ごはんは as:<@UMEMBER|member>")
        assert refused["response_type"] == "ephemeral"
        assert "has not lent this channel their voice" in str(refused["text"])
        said = await slack_command(slack, "voice on", "UMEMBER")
        assert "your voice" in str(said["text"])
        answer = await continue_as("晩ごはんは as:<@UMEMBER|member>")
        assert answer["text"] == "晩ごはんは …" and answer["response_type"] == "in_channel"
        assert generator.requests[-1].voice.startswith("«")
