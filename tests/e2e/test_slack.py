"""The Slack adapter end to end: a real Bolt app (HTTP server on 127.0.0.1, or Socket
Mode) and the real slack_sdk client, against the fake Slack in tests/fakes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.app import App
from bot.config import Settings
from bot.core.jobs import JobResult
from bot.domain import ChannelRef, ModelVersionInfo
from bot.importing.importer import import_history
from bot.statuses import VersionStatus
from tests.e2e.serving import SLACK_SECRET, continue_answer, serving, until, with_slack
from tests.e2e.test_discord import ScriptedGenerator
from tests.exports import slack_notices_and_files
from tests.fakes.slack_server import (
    FakeSlack,
    event_body,
    signed_headers,
    slash_command_body,
)

# No test's time limits include the one-off import of the ML libraries.
pytestmark = pytest.mark.usefixtures("ml_libraries")

SECRET = SLACK_SECRET
TEAM, CHANNEL, ADMIN, MEMBER = "T0001", "C0001", "UADMIN", "UMEMBER"
REF = ChannelRef("slack", TEAM, CHANNEL)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class HttpSlack:
    """The bot in HTTP mode, and a way to send it signed requests as Slack does."""

    def __init__(self, app: App, fake: FakeSlack) -> None:
        self.app, self.fake = app, fake
        self.url = f"http://127.0.0.1:{app.settings.slack_http_port}/slack/events"

    async def post(self, body: bytes, *, secret: str = SECRET, **headers: Any) -> tuple[int, float]:
        started = time.monotonic()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.url, data=body, headers=signed_headers(secret, body, **headers)
            ) as response,
        ):
            await response.read()
            return response.status, time.monotonic() - started

    async def command(self, text: str, user: str = MEMBER, command: str = "/continue") -> str:
        name = f"r{time.monotonic_ns()}"
        body = slash_command_body(command, text, user, CHANNEL, self.fake.response_url(name), TEAM)
        status, seconds = await self.post(body)
        assert status == 200 and seconds < 1.0  # acknowledged at once
        return name

    async def event(self, event: dict[str, Any], event_id: str, **headers: Any) -> int:
        status, _ = await self.post(event_body(event, event_id), **headers)
        return status


@pytest.fixture
async def slack(local_settings: Settings, fake_slack: FakeSlack) -> AsyncIterator[HttpSlack]:
    async with serving(with_slack(local_settings, fake_slack)) as app:
        yield HttpSlack(app, fake_slack)


async def test_continue_is_acked_at_once_and_answered_with_the_prompt(slack: HttpSlack) -> None:
    name = await slack.command("織田信長は、")
    answer = await continue_answer(slack.fake, name, CHANNEL)  # for the channel to see
    assert answer.startswith("織田信長は、")


async def test_bad_signatures_and_stale_requests_are_refused(slack: HttpSlack) -> None:
    body = event_body(slack.fake.message_event("forged", ts="1700000000.000001"), "Ev1")
    assert (await slack.post(body, secret="wrong-secret"))[0] == 401
    stale = int(time.time()) - 6 * 60
    assert (await slack.post(body, timestamp=stale))[0] == 401
    await asyncio.sleep(0.2)
    assert await slack.app.messages.count(REF) == 0


async def test_a_mention_is_answered_once_even_when_slack_retries(slack: HttpSlack) -> None:
    event = slack.fake.app_mention_event("what next?", ts="1700000001.000100")
    assert await slack.event(event, "EvMention") == 200
    await slack.fake.wait_for_call("chat.postMessage", timeout=20)
    # Slack thought the delivery was missed and sends it again.
    assert await slack.event(event, "EvMention", retry_num=1, retry_reason="http_timeout") == 200
    await asyncio.sleep(0.5)
    assert len(slack.fake.calls_to("chat.postMessage")) == 1
    assert await slack.app.messages.count(REF) == 1


async def test_a_first_delivery_that_arrives_as_a_retry_is_handled(slack: HttpSlack) -> None:
    event = slack.fake.app_mention_event("hello?", ts="1700000002.000100")
    assert await slack.event(event, "EvRetried", retry_num=1, retry_reason="http_timeout") == 200
    await slack.fake.wait_for_call("chat.postMessage", timeout=20)


async def test_generated_channel_pings_arrive_escaped(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    generator = ScriptedGenerator(" <!channel> <@UADMIN> <https://x.example|click>")
    async with serving(with_slack(local_settings, fake_slack), generator=generator) as app:
        bot = HttpSlack(app, fake_slack)
        await bot.event(fake_slack.app_mention_event("say it"), "EvPing")
        call = await fake_slack.wait_for_call("chat.postMessage", timeout=20)
        name = await bot.command("hi")
        answer = await fake_slack.wait_for_response(name, timeout=20)
    for text in (call.params["text"], answer.json["text"]):
        assert "<" not in text and ">" not in text
        assert "&lt;!channel&gt;" in text


async def test_a_member_cannot_change_settings(slack: HttpSlack) -> None:
    name = await slack.command("settings set temperature 2", command="/tsuzuki")
    answer = await slack.fake.wait_for_response(name, timeout=20)
    assert "Only channel admins" in answer.json["text"]
    assert answer.json["response_type"] == "ephemeral"
    assert (await slack.app.commands.settings.effective(REF)).temperature == 0.9
    name = await slack.command("settings set temperature 2", user=ADMIN, command="/tsuzuki")
    await slack.fake.wait_for_response(name, timeout=20)
    assert (await slack.app.commands.settings.effective(REF)).temperature == 2.0


async def test_edits_and_deletes_reach_the_database(slack: HttpSlack) -> None:
    fake = slack.fake
    for i in range(2):
        await slack.event(fake.message_event(f"message {i}", ts=f"170000001{i}.000100"), f"EvM{i}")
    edited = {
        "type": "message",
        "subtype": "message_changed",
        "channel": CHANNEL,
        "ts": "1700000020.000100",
        "message": {
            "type": "message",
            "user": MEMBER,
            "text": "message 0, edited",
            "ts": "1700000010.000100",
            "edited": {"user": MEMBER, "ts": "1700000020.0"},
        },
    }
    deleted = {
        "type": "message",
        "subtype": "message_deleted",
        "channel": CHANNEL,
        "ts": "1700000021.000100",
        "deleted_ts": "1700000011.000100",
    }
    # Bolt runs listeners after answering Slack: let the two messages land first.
    for _ in range(100):
        if await slack.app.messages.count(REF) == 2:
            break
        await asyncio.sleep(0.05)
    await slack.event(edited, "EvEdit")
    await slack.event(deleted, "EvDelete")
    for _ in range(100):
        rows = await slack.app.messages.recent(REF, 10)
        if [m.text for m in rows] == ["message 0, edited"]:
            break
        await asyncio.sleep(0.05)
    assert [(m.external_id, m.text) for m in rows] == [("1700000010.000100", "message 0, edited")]


async def test_slacks_own_text_is_never_stored_but_members_comments_on_files_are(
    slack: HttpSlack,
) -> None:
    events = [
        {**record, "channel": CHANNEL, "team": TEAM}
        for record in slack_notices_and_files(ADMIN, MEMBER, start=1700000200)
    ]
    for i, event in enumerate(events):
        assert await slack.event(event, f"EvSlackText{i}") == 200
    wanted = [
        (MEMBER, "議事録です"),
        (ADMIN, "ありがとう"),
        (ADMIN, "ここです"),
        (MEMBER, "手を振る"),
    ]
    # Bolt runs listeners after answering Slack; Slack's notices were sent first.
    await _until_rows(slack, wanted)

    # The member edits their comment on an old-style upload: Slack's text around it again.
    upload = next(e for e in events if "initial_comment" in e.get("file", {}))
    edited = {
        "type": "message",
        "subtype": "message_changed",
        "channel": CHANNEL,
        "ts": "1700000300.000100",
        "message": {
            **upload,
            "text": upload["text"].replace("議事録です", "議事録です(修正)"),
            "file": {**upload["file"], "initial_comment": {"comment": "議事録です(修正)"}},
            "edited": {"user": MEMBER, "ts": "1700000300.000000"},
        },
    }
    assert await slack.event(edited, "EvSlackTextEdit") == 200
    await _until_rows(slack, [(MEMBER, "議事録です(修正)"), *wanted[1:]])


async def _until_rows(slack: HttpSlack, wanted: list[tuple[str, str]]) -> None:
    for _ in range(200):
        rows = [(m.author.id, m.text) for m in await slack.app.messages.recent(REF, 50)]
        if rows == wanted:
            return
        await asyncio.sleep(0.05)
    assert rows == wanted


async def test_a_429_is_waited_out(slack: HttpSlack) -> None:
    slack.fake.rate_limit_next("chat.postMessage", retry_after=1)
    await slack.event(slack.fake.app_mention_event("are you there?"), "EvLimited")
    await slack.fake.wait_for_call("chat.postMessage", lambda c: c.status == 200, timeout=20)
    posts = slack.fake.calls_to("chat.postMessage")
    assert [c.status for c in posts] == [429, 200]
    assert posts[1].time - posts[0].time >= 0.95


async def test_socket_mode(local_settings: Settings, fake_slack: FakeSlack) -> None:
    socket_mode = with_slack(
        local_settings,
        fake_slack,
        slack_app_token=SecretStr("xapp-test"),
        slack_signing_secret=None,
    )
    async with serving(socket_mode):
        await fake_slack.wait_for_socket_connection()
        envelope = await fake_slack.socket_send_slash_command(
            "/continue", "織田信長は、", user_id=MEMBER, channel_id=CHANNEL
        )
        await fake_slack.wait_for_ack(envelope)
        answer = await continue_answer(fake_slack, envelope, CHANNEL)
        assert answer.startswith("織田信長は、")
        start = len(fake_slack.calls)
        await fake_slack.socket_send_event(fake_slack.app_mention_event("and you?"))
        call = await fake_slack.wait_for_call("chat.postMessage", start=start, timeout=20)
        assert call.params["channel"] == CHANNEL
    record = fake_slack.ack_for(envelope)
    assert record is not None and record.latency is not None
    assert record.latency < 1.0  # acknowledged before the work


async def test_an_export_and_live_messages_are_the_same_rows(
    slack: HttpSlack, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    (export / "general").mkdir(parents=True)
    (export / "channels.json").write_text(json.dumps([{"id": CHANNEL, "name": "general"}]))
    (export / "users.json").write_text(
        json.dumps([{"id": MEMBER, "team_id": TEAM, "name": "bob", "profile": {}}])
    )
    (export / "general" / "2023-11-14.json").write_text(
        json.dumps(
            [
                {
                    "type": "message",
                    "user": MEMBER,
                    "text": "from the export",
                    "ts": "1700000000.000100",
                }
            ]
        )
    )
    report = await import_history(slack.app.messages, export)
    assert report.per_channel[REF].imported == 1
    live = slack.fake.message_event("from the export", ts="1700000000.000100")
    await slack.event(live, "EvLive")
    await slack.event(slack.fake.message_event("new", ts="1700000100.000100"), "EvNew")
    for _ in range(100):
        if await slack.app.messages.count(REF) == 2:
            break
        await asyncio.sleep(0.05)
    rows = await slack.app.messages.recent(REF, 10)
    assert [m.external_id for m in rows] == ["1700000000.000100", "1700000100.000100"]


async def test_turning_training_on_backfills_the_history(slack: HttpSlack) -> None:
    fake = slack.fake
    for i in range(150):
        fake.add_history(
            CHANNEL, MEMBER if i % 2 else ADMIN, f"old {i}", ts=f"{1600000000 + i}.000100"
        )
    fake.add_history(CHANNEL, MEMBER, "joined", ts="1600000500.000100", subtype="channel_join")
    fake.rate_limit_next("conversations.history", retry_after=1)
    finished: list[JobResult] = []
    slack.app.runner.listeners.append(finished.append)
    name = await slack.command("training on", user=ADMIN, command="/tsuzuki")
    assert "Training is now on" in (await fake.wait_for_response(name, timeout=20)).json["text"]
    # The serving job runner reads the history in the background.
    await until(lambda: bool(finished), within=30)
    assert [(r.job.kind, r.status) for r in finished] == [("backfill", "succeeded")]
    rows = await slack.app.messages.recent(REF, 500)
    assert len(rows) == 150 and rows[0].text == "old 0"  # the join is not chat history
    assert [c.status for c in fake.calls_to("conversations.history")][:2] == [429, 200]


async def test_models_reset_needs_an_admin_and_a_confirmation(slack: HttpSlack) -> None:
    app = slack.app
    info = ModelVersionInfo(
        REF, 1, "scratch:tiny", "full", "/nowhere/v1", VersionStatus.CANDIDATE, T0
    )
    await app.registry.add(info)
    await app.registry.activate(REF, 1, actor="test")

    async def answer(text: str, user: str) -> str:
        name = await slack.command(text, user=user, command="/tsuzuki")
        response = await slack.fake.wait_for_response(name, timeout=20)
        assert response.json["response_type"] == "ephemeral"
        return str(response.json["text"])

    assert "Only channel admins" in await answer("models reset confirm", MEMBER)
    assert "/models reset confirm" in await answer("models reset", ADMIN)
    assert (await app.registry.active(REF)) is not None
    assert "retired" in await answer("models reset confirm", ADMIN)
    assert await app.registry.active(REF) is None
