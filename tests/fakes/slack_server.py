"""A fake Slack (Web API, response_url endpoints and Socket Mode) on 127.0.0.1, for driving
the real slack_sdk / slack_bolt clients.

    async with FakeSlack() as fake:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.api_url)
        app = AsyncApp(client=client)
        handler = AsyncSocketModeHandler(app, "xapp-test")  # web client: app.client
        await handler.connect_async()
        await fake.wait_for_socket_connection()
        envelope_id = await fake.socket_send_event(fake.app_mention_event("hi", user="UMEMBER"))
        await fake.wait_for_ack(envelope_id)
        call = await fake.wait_for_call("chat.postMessage")
        await handler.close_async()

slack_sdk is pointed at the fake with `base_url=fake.api_url` (a trailing slash matters to
`urljoin`; the client adds one when it is missing). Socket Mode needs nothing more: the
Socket Mode client calls `apps.connections.open` on its web client (by default the Bolt
app's client) and connects to the `ws://` URL the fake hands out.

The fake keeps the server-side rules a bot can trip over: tokens by kind (`xoxb-`/`xoxp-`
for methods, `xapp-` only for `apps.connections.open`), `channel_not_found`, `no_text`,
40,000-character truncation, newest-first cursor pagination of history (cursors look like
Slack's: base64 of `next_ts:<ts without the dot>`), thread replies kept out of
`conversations.history`, the 3-second window to acknowledge an envelope (acks record
whether they were late; `redeliver_unacked=True` makes the fake resend unacknowledged
events with `retry_attempt`/`retry_reason: "timeout"` as Slack does), 429 with
`Retry-After` on request, and the bot's own posts stored in the channel history.

File uploads follow Slack's three steps, as `AsyncWebClient.files_upload_v2` makes them:
`files.getUploadURLExternal` (filename and length required) hands out a file id and an
upload URL on the fake, the bytes are POSTed there (raw or multipart, no token, answered
`text/plain` "OK - <size>"), and `files.completeUploadExternal` shares the uploaded files:
one message from the bot per channel (text = `initial_comment`, a `files` list) that shows in
`messages(channel)`. Completed uploads are recorded in `uploads` (`wait_for_upload`);
`files.info` answers for them and `url_private` serves their bytes to a valid token.

For Bolt in HTTP mode the fake only builds requests: `sign`, `signed_headers`,
`event_body`, `slash_command_body`, `message_action_body` and `url_verification_body`
are module functions.

The fake's parts are in tests/fakes/slack/ (its __init__ lists them); this module is the
import path the tests use.
"""

from __future__ import annotations

from tests.fakes.slack.events import (
    event_body,
    event_callback,
    message_action_body,
    message_action_payload,
    new_event_id,
    sign,
    signed_headers,
    slash_command_body,
    slash_command_payload,
    url_verification_body,
)
from tests.fakes.slack.protocol import (
    ACK_TIMEOUT,
    ADMIN_USER_ID,
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_TEAM_ID,
    MEMBER_USER_ID,
    VERIFICATION_TOKEN,
    SlackApiFailure,
)
from tests.fakes.slack.records import (
    PostedMessage,
    RecordedCall,
    RecordedResponse,
    RecordedUpload,
    SocketAck,
    SocketEnvelope,
)
from tests.fakes.slack.server import FakeSlack, fake_slack

__all__ = [
    "ACK_TIMEOUT",
    "ADMIN_USER_ID",
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "DEFAULT_CHANNEL_ID",
    "DEFAULT_TEAM_ID",
    "MEMBER_USER_ID",
    "VERIFICATION_TOKEN",
    "FakeSlack",
    "PostedMessage",
    "RecordedCall",
    "RecordedResponse",
    "RecordedUpload",
    "SlackApiFailure",
    "SocketAck",
    "SocketEnvelope",
    "event_body",
    "event_callback",
    "fake_slack",
    "message_action_body",
    "message_action_payload",
    "new_event_id",
    "sign",
    "signed_headers",
    "slash_command_body",
    "slash_command_payload",
    "url_verification_body",
]
