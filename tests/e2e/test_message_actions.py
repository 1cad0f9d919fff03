"""Message actions through the real clients: Discord's message context menu and Slack's
message shortcuts. "Continue this message" posts only the new text, in reply to the
message; "Don't learn from this" takes a message out of the history (its author's
wish, or an admin's; audited), and it stays on the platform."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from bot.app import App
from bot.config import Settings
from bot.domain import ChannelRef
from tests.e2e.serving import serving, until, with_discord, with_slack
from tests.e2e.test_slack import HttpSlack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack, message_action_body
from tests.integration.test_unprompted import CountingGenerator

pytestmark = pytest.mark.usefixtures("ml_libraries")
log = logging.getLogger("payloads")

GUILD, CHANNEL, ADMIN, MEMBER, OTHER = "111", "222", "1001", "1002", "1003"
DISCORD = ChannelRef("discord", GUILD, CHANNEL)


async def _count(app: App, ref: ChannelRef, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while await app.messages.count(ref) != count:
        assert asyncio.get_running_loop().time() < deadline, "not stored in time"
        await asyncio.sleep(0.05)


async def test_discord_message_actions(local_settings: Settings, fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    fake.add_user(OTHER, "other")
    generator = CountingGenerator()  # continues a prompt with " …"
    async with serving(with_discord(local_settings, fake), generator=generator) as app:
        menus = {c["name"]: c for c in fake.commands[GUILD] if c.get("type") == 3}
        assert set(menus) == {"Continue this message", "Don't learn from this"}
        first = await fake.send_message(CHANNEL, MEMBER, "織田信長は、")
        second = await fake.send_message(CHANNEL, OTHER, "今日はラーメン")
        await _count(app, DISCORD, 2)

        start = len(fake.requests)
        asked = await fake.message_command(CHANNEL, ADMIN, "Continue this message", first["id"])
        posted = await fake.wait_for_request(
            method="POST", path=f"/channels/{CHANNEL}/messages", start=start, timeout=20
        )
        log.info("discord continue-this-message post: %s", json.dumps(posted.json))
        assert generator.requests[-1].prompt == "織田信長は、"
        assert posted.json["content"] == "…"  # the new text alone: no message handed back
        assert str(posted.json["message_reference"]["message_id"]) == first["id"]
        assert posted.json["allowed_mentions"] == {"parse": [], "replied_user": False}
        original = f"/webhooks/{fake.app_id}/{asked['token']}/messages/@original"
        await fake.wait_for_request(method="DELETE", path=original, start=start)
        assert fake.interaction(asked["token"]).callback_type == 5  # deferred at once

        # Someone else's message: refused, to the asker alone.
        refused = await fake.message_command(CHANNEL, OTHER, "Don't learn from this", first["id"])
        said = await fake.wait_for_request(path=f"/webhooks/{fake.app_id}/{refused['token']}")
        assert "Only its author" in said.json["content"]
        await asyncio.sleep(0.2)
        assert await app.messages.count(DISCORD) == 2

        # Its author: out of the history; the message stays on Discord.
        mine = await fake.message_command(CHANNEL, MEMBER, "Don't learn from this", first["id"])
        said = await fake.wait_for_request(path=f"/webhooks/{fake.app_id}/{mine['token']}")
        assert said.json["content"].startswith("Done") and said.json.get("flags", 0) & 64
        await _count(app, DISCORD, 1)
        assert any(m["id"] == first["id"] for m in fake.messages(CHANNEL))

        # An admin, on anyone's message.
        await fake.message_command(CHANNEL, ADMIN, "Don't learn from this", second["id"])
        await _count(app, DISCORD, 0)
        audit = [(e.actor, e.action) for e in await app.channels.audit(DISCORD)]
        assert ("discord:1002", "messages.unlearn") in audit
        assert ("discord:1001", "messages.unlearn") in audit


SLACK = ChannelRef("slack", "T0001", "C0001")


async def test_slack_message_shortcuts(local_settings: Settings, fake_slack: FakeSlack) -> None:
    fake = fake_slack
    fake.add_user("UOTHER", "other")
    generator = CountingGenerator()
    async with serving(with_slack(local_settings, fake), generator=generator) as app:
        slack = HttpSlack(app, fake)
        event = fake.message_event("織田信長は、", user="UMEMBER", ts="1700000000.000100")
        await slack.event(event, "Ev1")
        await _count(app, SLACK, 1)
        message = {k: event[k] for k in ("type", "user", "ts", "text")}

        async def shortcut(callback_id: str, user: str) -> str:
            name = f"{callback_id}-{user}"
            body = message_action_body(
                callback_id, message, user, "C0001", fake.response_url(name), "T0001"
            )
            status, seconds = await slack.post(body)
            assert status == 200 and seconds < 1.0  # acknowledged at once
            return name

        await shortcut("continue_message", "UADMIN")
        await until(lambda: bool(fake.calls_to("chat.postMessage")), 20)
        posted = fake.calls_to("chat.postMessage")[-1]
        log.info("slack continue-this-message post: %s", json.dumps(posted.params))
        assert generator.requests[-1].prompt == "織田信長は、"
        assert posted.params["text"] == "…"  # the new text alone
        assert posted.params["thread_ts"] == event["ts"]  # in reply: in its thread

        said = await fake.wait_for_response(await shortcut("dont_learn", "UOTHER"), timeout=20)
        assert "Only its author" in said.json["text"]
        assert said.json["response_type"] == "ephemeral"
        assert await app.messages.count(SLACK) == 1
        said = await fake.wait_for_response(await shortcut("dont_learn", "UMEMBER"), timeout=20)
        assert said.json["text"].startswith("Done")
        await _count(app, SLACK, 0)
        audit = [(e.actor, e.action) for e in await app.channels.audit(SLACK)]
        assert ("slack:UMEMBER", "messages.unlearn") in audit
