"""The fake Slack driven by the real slack_sdk and slack_bolt clients."""

# The fixture is imported by name; pytest injects it into the test parameters of that name.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.context.say.async_say import AsyncSay
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_server import (
    ADMIN_USER_ID,
    BOT_USER_ID,
    DEFAULT_CHANNEL_ID,
    MEMBER_USER_ID,
    FakeSlack,
    RecordedUpload,
    event_body,
    fake_slack,  # noqa: F401
    sign,
    signed_headers,
    slash_command_body,
    url_verification_body,
)

SIGNING_SECRET = "fake-signing-secret"


def web_client(fake: FakeSlack, token: str = "xoxb-test") -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=fake.api_url)


@contextlib.asynccontextmanager
async def socket_mode(app: AsyncApp, fake: FakeSlack) -> AsyncIterator[AsyncSocketModeHandler]:
    """A connected Socket Mode handler (its web client is the app's, pointed at the fake)."""
    handler = AsyncSocketModeHandler(app, "xapp-test")
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        await fake.wait_for_socket_connection(timeout=5)
        yield handler
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
        await asyncio.sleep(0)  # let the cancelled receive / monitor tasks finish


async def test_web_api_methods(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)

    auth = await client.auth_test()
    assert auth["user_id"] == BOT_USER_ID
    assert auth["bot_id"] == "BBOT"
    assert auth["team_id"] == "T0001"
    assert "chat:write" in auth.headers["X-OAuth-Scopes"]

    posted = await client.chat_postMessage(
        channel=DEFAULT_CHANNEL_ID,
        text="続きです",
        thread_ts="1700000000.000100",
        mrkdwn=False,
        unfurl_links=False,
        unfurl_media=False,
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "続きです"}}],
    )
    assert posted["ok"] is True
    assert posted["channel"] == DEFAULT_CHANNEL_ID
    assert posted["message"]["bot_id"] == "BBOT"
    second = await client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="again")
    assert float(second["ts"]) > float(posted["ts"])

    record = fake_slack.posted[0]
    assert record.channel == DEFAULT_CHANNEL_ID
    assert record.text == "続きです"
    assert record.thread_ts == "1700000000.000100"
    assert (record.mrkdwn, record.unfurl_links, record.unfurl_media) == (False, False, False)
    assert record.blocks is not None and record.blocks[0]["type"] == "section"
    assert fake_slack.posted[1].mrkdwn is None  # not sent

    call = await fake_slack.wait_for_call("chat.postMessage")
    assert call.params["channel"] == DEFAULT_CHANNEL_ID
    assert call.token == "xoxb-test"
    assert "Authorization" not in call.headers
    assert "Bearer xoxb-test" in fake_slack.tokens_seen

    admin = await client.users_info(user=ADMIN_USER_ID)
    member = await client.users_info(user=MEMBER_USER_ID)
    assert admin["user"]["is_admin"] is True
    assert member["user"]["is_admin"] is False
    assert member["user"]["profile"]["display_name"] == "bob"

    updated = await client.chat_update(channel=DEFAULT_CHANNEL_ID, ts=second["ts"], text="edited")
    assert updated["text"] == "edited"
    await client.chat_postEphemeral(channel=DEFAULT_CHANNEL_ID, user=MEMBER_USER_ID, text="psst")
    assert [p.method for p in fake_slack.posted][-2:] == ["chat.update", "chat.postEphemeral"]
    assert fake_slack.posted[-1].user == MEMBER_USER_ID

    info = await client.conversations_info(channel=DEFAULT_CHANNEL_ID)
    assert info["channel"]["name"] == "general"

    with pytest.raises(SlackApiError) as missing:
        await client.chat_postMessage(channel="C9999", text="nowhere")
    assert missing.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as empty, pytest.warns(UserWarning, match="`text`"):
        await client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="")
    assert empty.value.response["error"] == "no_text"
    with pytest.raises(SlackApiError) as unknown:
        await client.api_call("bogus.method", params={"x": "1"})
    assert unknown.value.response["error"] == "unknown_method"
    assert fake_slack.unknown_methods == ["bogus.method"]


async def test_tokens_are_checked_by_kind(fake_slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as app_token:
        await web_client(fake_slack, "xapp-test").chat_postMessage(channel="C0001", text="x")
    assert app_token.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as bot_token:
        await web_client(fake_slack).apps_connections_open(app_token="xoxb-test")
    assert bot_token.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as no_token:
        await AsyncWebClient(base_url=fake_slack.api_url).auth_test()
    assert no_token.value.response["error"] == "not_authed"

    opened = await web_client(fake_slack).apps_connections_open(app_token="xapp-test")
    assert str(opened["url"]).startswith(f"ws://127.0.0.1:{fake_slack.port}/socket-mode?ticket=")


async def test_history_pages_newest_first_with_cursor(fake_slack: FakeSlack) -> None:
    for i in range(5):
        fake_slack.add_history("C0002", MEMBER_USER_ID, f"m{i}", ts=f"1700000000.00000{i}")
    fake_slack.add_history("C0002", ADMIN_USER_ID, "reply", thread_ts="1700000000.000001")
    client = web_client(fake_slack)

    first = await client.conversations_history(channel="C0002", limit=2)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"]
    assert first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    second = await client.conversations_history(channel="C0002", limit=2, cursor=cursor)
    assert [m["text"] for m in second["messages"]] == ["m2", "m1"]
    last = await client.conversations_history(
        channel="C0002", limit=2, cursor=second["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in last["messages"]] == ["m0"]
    assert last["has_more"] is False
    assert last["response_metadata"]["next_cursor"] == ""
    calls = fake_slack.calls_to("conversations.history")
    assert calls[1].params["cursor"] == cursor

    # slack_sdk's own paginator follows next_cursor; the thread reply stays out of history
    # but shows on its parent and in conversations.replies.
    texts: list[str] = []
    async for page in await client.conversations_history(channel="C0002", limit=2):
        texts += [m["text"] for m in page["messages"]]
    assert texts == ["m4", "m3", "m2", "m1", "m0"]
    parent = next(m for m in last["messages"] + second["messages"] if m["text"] == "m1")
    assert parent["reply_count"] == 1
    replies = await client.conversations_replies(channel="C0002", ts="1700000000.000001")
    assert [m["text"] for m in replies["messages"]] == ["m1", "reply"]

    window = await client.conversations_history(
        channel="C0002", oldest="1700000000.000001", latest="1700000000.000003"
    )
    assert [m["text"] for m in window["messages"]] == ["m2"]
    with pytest.raises(SlackApiError) as bad:
        await client.conversations_history(channel="C0002", cursor="not-a-cursor")
    assert bad.value.response["error"] == "invalid_cursor"


async def test_rate_limit_is_retried_after_retry_after(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    fake_slack.rate_limit_next("chat.postMessage", retry_after=1)
    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="no handler")
    assert limited.value.response.status_code == 429
    assert limited.value.response["error"] == "ratelimited"
    assert limited.value.response.headers["Retry-After"] == "1"

    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    fake_slack.rate_limit_next("chat.postMessage", retry_after=1)
    start = len(fake_slack.calls)
    result = await client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="with handler")
    assert result["ok"] is True
    first, retry = fake_slack.calls[start:]
    assert (first.status, retry.status) == (429, 200)
    assert retry.time - first.time >= 0.95


async def test_socket_mode_bolt_app(fake_slack: FakeSlack) -> None:
    app = AsyncApp(client=web_client(fake_slack))
    mentions: list[dict[str, Any]] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: AsyncSay) -> None:
        mentions.append(event)
        await say(text="はい、続きです", thread_ts=event["ts"])

    @app.command("/continue")
    async def on_continue(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        await ack(text="考えています…")
        await respond(text=f"続き: {command['text']}", response_type="in_channel")

    async with socket_mode(app, fake_slack):
        opened = await fake_slack.wait_for_call("apps.connections.open")
        assert opened.token == "xapp-test"

        event = fake_slack.app_mention_event("続けて", user=MEMBER_USER_ID)
        sent_at = time.monotonic()
        envelope_id = await fake_slack.socket_send_event(event)
        acked_at = await fake_slack.wait_for_ack(envelope_id)
        assert acked_at - sent_at < 3
        post = await fake_slack.wait_for_call("chat.postMessage")
        assert post.params["text"] == "はい、続きです"
        assert post.params["thread_ts"] == event["ts"]
        assert post.token == "xoxb-test"
        assert mentions[0]["text"] == f"<@{BOT_USER_ID}> 続けて"
        assert fake_slack.calls_to("auth.test")  # Bolt's single-team authorization
        # the mention is in the history, as the message exists in Slack
        assert any(m["ts"] == event["ts"] for m in fake_slack.messages(DEFAULT_CHANNEL_ID))

        command_envelope = await fake_slack.socket_send_slash_command(
            "/continue", "please", user_id=ADMIN_USER_ID, channel_id=DEFAULT_CHANNEL_ID
        )
        await fake_slack.wait_for_ack(command_envelope)
        ack = fake_slack.ack_for(command_envelope)
        assert ack is not None and not ack.late
        assert ack.payload == {"text": "考えています…"}
        response = await fake_slack.wait_for_response(command_envelope)
        assert response.json == {"text": "続き: please", "response_type": "in_channel"}


async def test_socket_mode_reconnects_on_disconnect(fake_slack: FakeSlack) -> None:
    app = AsyncApp(client=web_client(fake_slack))
    seen: list[str] = []

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        seen.append(event["text"])

    async with socket_mode(app, fake_slack):
        await fake_slack.socket_request_disconnect()
        await fake_slack.wait_for_socket_connection(timeout=5, count=2)
        assert len(fake_slack.calls_to("apps.connections.open")) == 2
        envelope_id = await fake_slack.socket_send_event(fake_slack.message_event("after"))
        await fake_slack.wait_for_ack(envelope_id)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == ["after"]


async def test_unacknowledged_events_are_redelivered() -> None:
    async with FakeSlack(ack_timeout=0.2, redeliver_unacked=True) as fake:
        opened = await web_client(fake).apps_connections_open(app_token="xapp-test")
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(str(opened["url"])) as ws,
        ):
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello"
            assert hello["connection_info"]["app_id"] == "A0001"

            first_id = await fake.socket_send_event(fake.message_event("hi"), event_id="Ev01")
            first = await ws.receive_json(timeout=5)
            assert (first["envelope_id"], first["type"]) == (first_id, "events_api")
            assert (first["retry_attempt"], first["retry_reason"]) == (0, "")
            assert first["payload"]["event_id"] == "Ev01"

            retry = await ws.receive_json(timeout=5)  # not acknowledged within 0.2 s
            assert retry["envelope_id"] != first_id
            assert (retry["retry_attempt"], retry["retry_reason"]) == (1, "timeout")
            assert retry["payload"]["event_id"] == "Ev01"
            await ws.send_str(json.dumps({"envelope_id": retry["envelope_id"]}))
            await fake.wait_for_ack(retry["envelope_id"])
            await ws.send_str(json.dumps({"envelope_id": first_id}))
            await fake.wait_for_ack(first_id)
            late = fake.ack_for(first_id)
            assert late is not None and late.late

        rejected = fake.socket_rejected
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(fake.socket_url + "?ticket=forged")
        assert fake.socket_rejected == rejected + 1


async def test_response_url_records_posts(fake_slack: FakeSlack) -> None:
    url = fake_slack.response_url("cmd")
    async with aiohttp.ClientSession() as session, session.post(url, json={"text": "x"}) as res:
        assert res.status == 200
    recorded = await fake_slack.wait_for_response("cmd")
    assert recorded.json == {"text": "x"}


async def test_sign_is_accepted_by_signature_verifier() -> None:
    verifier = SignatureVerifier(SIGNING_SECRET)
    verdicts: list[bool] = []

    async def verify(request: web.Request) -> web.Response:
        ok = verifier.is_valid_request(await request.read(), dict(request.headers))
        verdicts.append(ok)
        return web.Response(status=200 if ok else 401)

    server = web.Application()
    server.router.add_post("/slack/events", verify)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/slack/events"
    bodies = [
        event_body({"type": "app_mention", "text": "hi", "user": MEMBER_USER_ID}, "Ev1"),
        slash_command_body("/continue", "a b&c", MEMBER_USER_ID, "C0001", "http://x/", "T0001"),
        url_verification_body("abc"),
    ]
    try:
        async with aiohttp.ClientSession() as session:
            for body in bodies:
                headers = sign(SIGNING_SECRET, body, int(time.time()))
                async with session.post(url, data=body, headers=headers) as res:
                    assert res.status == 200
            stale = sign(SIGNING_SECRET, bodies[0], int(time.time()) - 600)
            wrong = sign("another-secret", bodies[0], int(time.time()))
            for headers in (stale, wrong):
                async with session.post(url, data=bodies[0], headers=headers) as res:
                    assert res.status == 401
    finally:
        await runner.cleanup()
    assert verdicts == [True, True, True, False, False]
    assert sign("s", b"body", 1)["X-Slack-Request-Timestamp"] == "1"


async def test_bolt_http_mode_accepts_the_builders(fake_slack: FakeSlack) -> None:
    app = AsyncApp(signing_secret=SIGNING_SECRET, client=web_client(fake_slack))

    @app.event("app_mention")
    async def on_mention(say: AsyncSay) -> None:
        await say(text="http mode")

    @app.command("/continue")
    async def on_continue(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack(text=f"got {command['text']}")

    runner = web.AppRunner(app.web_app(path="/slack/events"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    try:
        async with aiohttp.ClientSession() as session:
            body = url_verification_body("challenge-1")
            async with session.post(
                url, data=body, headers=signed_headers(SIGNING_SECRET, body)
            ) as res:
                assert res.status == 200
                assert json.loads(await res.text())["challenge"] == "challenge-1"

            body = slash_command_body(
                "/continue",
                "x y",
                MEMBER_USER_ID,
                DEFAULT_CHANNEL_ID,
                fake_slack.response_url("http"),
                "T0001",
            )
            async with session.post(
                url, data=body, headers=signed_headers(SIGNING_SECRET, body)
            ) as res:
                assert res.status == 200
                assert await res.text() == "got x y"  # ack(text=...) over HTTP is plain text

            event = fake_slack.app_mention_event("hello")
            body = event_body(event)
            async with session.post(
                url, data=body, headers=signed_headers(SIGNING_SECRET, body)
            ) as res:
                assert res.status == 200
            post = await fake_slack.wait_for_call("chat.postMessage")
            # Bolt's per-request client adds the team_id of the request to every call.
            assert post.params == {
                "channel": DEFAULT_CHANNEL_ID,
                "text": "http mode",
                "team_id": "T0001",
            }

            forged = signed_headers("wrong-secret", body)
            async with session.post(url, data=body, headers=forged) as res:
                assert res.status == 401
    finally:
        await runner.cleanup()


async def test_injected_failures_and_stubs(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    fake_slack.fail_next("chat.postMessage", "not_in_channel")
    with pytest.raises(SlackApiError) as failed:
        await client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x")
    assert failed.value.response["error"] == "not_in_channel"
    assert (await client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="x"))["ok"] is True

    fake_slack.stub_method("team.info", {"team": {"id": "T0001", "name": "Stubbed"}})
    team = await client.team_info()
    assert team["team"]["name"] == "Stubbed"
    assert fake_slack.unknown_methods == []

    # A DM by user id: chat.postMessage answers with the D channel.
    dm = await client.chat_postMessage(channel=MEMBER_USER_ID, text="hello")
    assert dm["channel"] == "DMEMBER"
    history = await client.conversations_history(channel="DMEMBER")
    assert [m["text"] for m in history["messages"]] == ["hello"]


async def test_updates_are_recorded_in_order(fake_slack: FakeSlack) -> None:
    """What a user saw of a message, update by update."""
    client = web_client(fake_slack)
    first = await client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="one")
    other = await client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="other")
    for text in ("one two", "one two three"):
        await client.chat_update(channel=DEFAULT_CHANNEL_ID, ts=first["ts"], text=text)
    assert fake_slack.versions_of(DEFAULT_CHANNEL_ID, first["ts"]) == [
        "one",
        "one two",
        "one two three",
    ]
    assert fake_slack.versions_of(DEFAULT_CHANNEL_ID, other["ts"]) == ["other"]
    assert fake_slack.messages(DEFAULT_CHANNEL_ID)[-2]["text"] == "one two three"


def tiny_png() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def test_files_upload_v2_shares_into_the_channel(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    png = tiny_png()
    parent = await client.chat_postMessage(channel=DEFAULT_CHANNEL_ID, text="chart please")

    result = await client.files_upload_v2(
        channel=DEFAULT_CHANNEL_ID,
        file=png,
        filename="chart.png",
        title="Activity",
        initial_comment="こちらです",
        thread_ts=parent["ts"],
    )
    assert result["ok"] is True
    assert result["file"]["id"] == result["files"][0]["id"]
    assert result["file"]["title"] == "Activity"
    assert result["file"]["mimetype"] == "image/png"

    upload: RecordedUpload = await fake_slack.wait_for_upload(lambda u: u.filename == "chart.png")
    assert upload.file_id == result["file"]["id"] and upload.file_id.startswith("F")
    assert upload.content == png and upload.content.startswith(b"\x89PNG")
    assert (upload.length, upload.size) == (len(png), len(png))
    assert upload.title == "Activity"
    assert upload.channel == DEFAULT_CHANNEL_ID
    assert upload.initial_comment == "こちらです"
    assert upload.thread_ts == parent["ts"]
    assert upload.token == "xoxb-test"

    get_url = fake_slack.calls_to("files.getUploadURLExternal")[0]
    assert get_url.params["filename"] == "chart.png"
    assert get_url.params["length"] == str(len(png))
    assert get_url.response["upload_url"].startswith(fake_slack.base_url + "/")
    complete = fake_slack.calls_to("files.completeUploadExternal")[0]
    assert json.loads(complete.params["files"]) == [{"id": upload.file_id, "title": "Activity"}]

    # The share is a bot message in the thread, with the file attached.
    shared = fake_slack.messages(DEFAULT_CHANNEL_ID)[-1]
    assert shared["ts"] == upload.ts
    assert shared["text"] == "こちらです"
    assert shared["user"] == BOT_USER_ID and "subtype" not in shared
    assert shared["thread_ts"] == parent["ts"]
    [file] = shared["files"]
    assert (file["id"], file["name"], file["title"]) == (upload.file_id, "chart.png", "Activity")
    assert (file["mimetype"], file["size"]) == ("image/png", len(png))
    replies = await client.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts=parent["ts"])
    assert [m.get("files", [{}])[0].get("id") for m in replies["messages"]][1:] == [upload.file_id]

    info = await client.files_info(file=upload.file_id)
    assert info["file"]["name"] == "chart.png"
    assert info["file"]["channels"] == [DEFAULT_CHANNEL_ID]
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            info["file"]["url_private"], headers={"Authorization": "Bearer xoxb-test"}
        ) as res,
    ):
        assert res.status == 200
        assert await res.read() == png

    # Without a channel the file stays private; no message is posted.
    before = len(fake_slack.messages(DEFAULT_CHANNEL_ID))
    private = await client.files_upload_v2(content="plain text", filename="notes.txt")
    assert private["file"]["channels"] == []
    assert fake_slack.uploads[-1].channels == []
    assert fake_slack.uploads[-1].mimetype == "text/plain"
    assert len(fake_slack.messages(DEFAULT_CHANNEL_ID)) == before


async def test_files_upload_v2_errors(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    with pytest.raises(SlackApiError) as unknown:
        await client.files_upload_v2(channel="C9999", file=tiny_png(), filename="x.png")
    assert unknown.value.response["error"] == "channel_not_found"

    fake_slack.add_channel("C0002", "elsewhere", is_member=False)
    with pytest.raises(SlackApiError) as outside:
        await client.files_upload_v2(channel="C0002", file=tiny_png(), filename="x.png")
    assert outside.value.response["error"] == "not_in_channel"
    assert fake_slack.uploads == []
    assert fake_slack.messages("C0002") == []

    with pytest.raises(SlackApiError) as no_name:
        await client.api_call("files.getUploadURLExternal", params={"length": 10})
    assert no_name.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as no_length:
        await client.api_call("files.getUploadURLExternal", params={"filename": "a.png"})
    assert no_length.value.response["error"] == "invalid_arguments"

    # Completing a file whose bytes never reached the upload URL.
    issued = await client.files_getUploadURLExternal(filename="a.png", length=10)
    with pytest.raises(SlackApiError) as not_uploaded:
        await client.files_completeUploadExternal(
            files=[{"id": issued["file_id"], "title": "a"}], channel_id=DEFAULT_CHANNEL_ID
        )
    assert not_uploaded.value.response["error"] == "file_not_found"
    with pytest.raises(SlackApiError) as bogus:
        await client.files_completeUploadExternal(files=[{"id": "FNOPE", "title": "a"}])
    assert bogus.value.response["error"] == "file_not_found"
    with pytest.raises(SlackApiError) as missing_info:
        await client.files_info(file=issued["file_id"])
    assert missing_info.value.response["error"] == "file_not_found"

    with pytest.raises(TimeoutError):
        await fake_slack.wait_for_upload(timeout=0.05)


async def test_upload_url_takes_a_multipart_form(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    png = tiny_png()
    issued = await client.files_getUploadURLExternal(filename="a.png", length=len(png))
    form = aiohttp.FormData()
    form.add_field("filename", png, filename="a.png", content_type="image/png")
    async with aiohttp.ClientSession() as session:
        async with session.post(issued["upload_url"], data=form) as res:
            assert res.status == 200
            assert await res.text() == f"OK - {len(png)}"
        async with session.post(fake_slack.base_url + "/upload/v1/forged", data=b"x") as res:
            assert res.status == 404
    done = await client.files_completeUploadExternal(
        files=[{"id": issued["file_id"]}], channels=[DEFAULT_CHANNEL_ID]
    )
    assert done["files"][0]["title"] == "a.png"
    upload = await fake_slack.wait_for_upload()
    assert upload.content == png and upload.channel == DEFAULT_CHANNEL_ID
