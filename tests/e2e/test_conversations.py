"""Reply chains on the Discord and Slack fakes, through the real clients: a reply to
one of the bot's messages (Discord: a message reference to it, pinging or not; Slack: a
message in a thread the bot started or answered in) is answered after the conversation,
which the engine sees last in the reply's context, behind the channel's history. A reply
to a member's message is stored and not answered; with `reply_to_replies off` neither is
a reply to the bot. The bot's posts are kept for this and never become history."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import App
from bot.config import Settings
from bot.domain import ChannelRef, GenerationRequest
from tests.e2e.serving import serving, until, with_discord, with_slack
from tests.e2e.test_notices import discord_command, slack_command
from tests.e2e.test_slack import HttpSlack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack
from tests.integration.test_unprompted import CountingGenerator

pytestmark = pytest.mark.usefixtures("ml_libraries")
# The payloads a platform got, for the record (pytest --log-cli-level=INFO shows them).
log = logging.getLogger("payloads")

GUILD, CHANNEL, ADMIN, MEMBER = "111", "222", "1001", "1002"
SLACK_TEAM, SLACK_CHANNEL, SLACK_ADMIN, SLACK_MEMBER = "T0001", "C0001", "UADMIN", "UMEMBER"
# How long a message that would be answered takes at most here: a scripted generation
# and a few database reads.
SETTLE_S = 1.0


async def _kept(app: App, ref: ChannelRef, external_id: str) -> None:
    """Waits until the bot's post is kept for reply chains (just after it is posted)."""
    posts = app.core.ingest.replies.stores.posts
    deadline = asyncio.get_running_loop().time() + 10
    while await posts.find(ref, external_id) is None:
        assert asyncio.get_running_loop().time() < deadline, f"post {external_id} not kept"
        await asyncio.sleep(0.05)


async def _stored(app: App, ref: ChannelRef, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while await app.messages.count(ref) < count:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)


def _replies(generator: CountingGenerator) -> list[GenerationRequest]:
    return [r for r in generator.requests if r.mode == "reply"]


async def test_discord_a_reply_to_the_bot_continues_the_conversation(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    ref = ChannelRef("discord", GUILD, CHANNEL)
    generator = CountingGenerator()
    async with serving(with_discord(local_settings, fake), generator=generator) as app:
        now = datetime.now(UTC)
        history = await fake.send_message(
            CHANNEL, ADMIN, "今日はラーメンの日", timestamp=now - timedelta(seconds=3)
        )
        await _stored(app, ref, 1)
        mention = await fake.send_message(CHANNEL, MEMBER, "what next?", mentions_bot=True)
        first = await fake.wait_for_request(method="POST", path=f"/channels/{CHANNEL}/messages")
        bot_message = fake.messages(CHANNEL)[-1]
        assert bot_message["message_reference"]["message_id"] == mention["id"]
        assert first.json["content"] == "next!"
        await _kept(app, ref, bot_message["id"])

        # A reply to the bot's message, not pinging it: answered, after the chain.
        start = len(fake.requests)
        reply = await fake.send_message(
            CHANNEL, MEMBER, "味噌がいいな", reply_to=bot_message["id"], reply_ping=False
        )
        answer = await fake.wait_for_request(
            method="POST", path=f"/channels/{CHANNEL}/messages", start=start, timeout=20
        )
        log.info("discord reply-chain answer: %s", json.dumps(answer.json, ensure_ascii=False))
        assert str(answer.json["message_reference"]["message_id"]) == reply["id"]
        assert answer.json["allowed_mentions"] == {"parse": [], "replied_user": False}
        seen = _replies(generator)[-1]
        assert seen.context[-3:] == ("what next?", "next!", "味噌がいいな")
        assert seen.context[:-3] == ("今日はラーメンの日",)  # the history, ahead of it
        second = fake.messages(CHANNEL)[-1]
        await _kept(app, ref, second["id"])

        # A reply that pings the bot is a mention, and continues the chain as well.
        start = len(fake.requests)
        await fake.send_message(CHANNEL, MEMBER, "で、どうする?", reply_to=second["id"])
        await fake.wait_for_request(
            method="POST", path=f"/channels/{CHANNEL}/messages", start=start, timeout=20
        )
        seen = _replies(generator)[-1]
        chain = ("what next?", "next!", "味噌がいいな", "next!", "で、どうする?")
        assert seen.context[-5:] == chain

        # A reply to a member's message: stored, not answered.
        answered = len(_replies(generator))
        await fake.send_message(
            CHANNEL, ADMIN, "豚骨だろ", reply_to=history["id"], reply_ping=False
        )
        await _stored(app, ref, 5)
        await asyncio.sleep(SETTLE_S)
        assert len(_replies(generator)) == answered

        # reply_to_replies off: a reply to the bot is stored, not answered.
        said = await discord_command(
            fake, ADMIN, "settings set", key="reply_to_replies", value="off"
        )
        assert "reply_to_replies" in said
        await fake.send_message(CHANNEL, MEMBER, "おーい", reply_to=second["id"], reply_ping=False)
        await _stored(app, ref, 6)
        await asyncio.sleep(SETTLE_S)
        assert len(_replies(generator)) == answered

        # The bot's posts were never history: nothing learns from them.
        texts = [m.text for m in await app.messages.recent(ref, 20)]
        assert "next!" not in texts and len(texts) == 6


async def test_slack_a_message_in_the_bots_thread_continues_the_conversation(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    ref = ChannelRef("slack", SLACK_TEAM, SLACK_CHANNEL)
    generator = CountingGenerator()
    async with serving(with_slack(local_settings, fake_slack), generator=generator) as app:
        slack = HttpSlack(app, fake_slack)
        fake = fake_slack
        await slack.event(fake.message_event("今日はラーメンの日", ts="1700000000.000100"), "Ev0")
        await _stored(app, ref, 1)
        await slack.event(fake.app_mention_event("what next?", ts="1700000001.000100"), "Ev1")
        first = await fake.wait_for_call("chat.postMessage", timeout=20)
        assert first.params.get("thread_ts") is None  # answered where it was asked
        bot_ts = fake.messages(SLACK_CHANNEL)[-1]["ts"]
        await _kept(app, ref, bot_ts)

        # A member answers in a thread on the bot's message: answered in the thread.
        posts = len(fake.calls_to("chat.postMessage"))
        await slack.event(
            fake.message_event("味噌がいいな", ts="1700000003.000100", thread_ts=bot_ts), "Ev2"
        )
        await until(lambda: len(fake.calls_to("chat.postMessage")) > posts, 20)
        answer = fake.calls_to("chat.postMessage")[-1]
        log.info("slack reply-chain answer: %s", json.dumps(answer.params, ensure_ascii=False))
        assert answer.params["thread_ts"] == bot_ts
        seen = _replies(generator)[-1]
        assert seen.context[-3:] == ("what next?", "next!", "味噌がいいな")
        assert seen.context[:-3] == ("今日はラーメンの日",)

        # A mention in that thread comes twice (message and app_mention): one answer.
        posts = len(fake.calls_to("chat.postMessage"))
        mention = fake.app_mention_event("どう?", ts="1700000005.000100", thread_ts=bot_ts)
        await slack.event({**mention, "type": "message"}, "Ev3")
        await slack.event(mention, "Ev4")
        await until(lambda: len(fake.calls_to("chat.postMessage")) > posts, 20)
        await asyncio.sleep(SETTLE_S)
        assert len(fake.calls_to("chat.postMessage")) == posts + 1
        assert _replies(generator)[-1].context[-1] == "どう?"

        # A thread on a member's message: stored, not answered.
        answered = len(_replies(generator))
        await slack.event(
            fake.message_event("豚骨だろ", ts="1700000007.000100", thread_ts="1700000000.000100"),
            "Ev5",
        )
        await _stored(app, ref, 5)
        await asyncio.sleep(SETTLE_S)
        assert len(_replies(generator)) == answered

        # reply_to_replies off: the bot's thread is stored, not answered.
        said = await slack_command(slack, "settings set reply_to_replies off", SLACK_ADMIN)
        assert "reply_to_replies" in str(said["text"])
        await slack.event(
            fake.message_event("おーい", ts="1700000009.000100", thread_ts=bot_ts), "Ev6"
        )
        await _stored(app, ref, 6)
        await asyncio.sleep(SETTLE_S)
        assert len(_replies(generator)) == answered
        assert "next!" not in [m.text for m in await app.messages.recent(ref, 20)]
