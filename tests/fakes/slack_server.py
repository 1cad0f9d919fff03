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
`event_body`, `slash_command_body` and `url_verification_body` are module functions.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import copy
import hashlib
import hmac
import itertools
import json
import mimetypes
import secrets
import socket
import string
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
from aiohttp import BodyPartReader, WSMsgType, web

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
    "new_event_id",
    "sign",
    "signed_headers",
    "slash_command_body",
    "slash_command_payload",
    "url_verification_body",
]

DEFAULT_TEAM_ID = "T0001"
DEFAULT_TEAM_NAME = "Tsuzuki Test"
DEFAULT_TEAM_DOMAIN = "tsuzuki-test"
DEFAULT_CHANNEL_ID = "C0001"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_ID = "A0001"
ADMIN_USER_ID = "UADMIN"
MEMBER_USER_ID = "UMEMBER"
VERIFICATION_TOKEN = "fake-verification-token"

ACK_TIMEOUT = 3.0
MAX_TEXT = 40_000
MAX_HISTORY_LIMIT = 999
DEFAULT_HISTORY_LIMIT = 100
MAX_EVENT_RETRIES = 3
BOT_SCOPES = "app_mentions:read,channels:history,channels:read,chat:write,commands,users:read"

Json = dict[str, Any]
T = TypeVar("T")

_ID_ALPHABET = string.ascii_uppercase + string.digits


# --- module-level builders (HTTP mode) ------------------------------------------------------


def new_event_id() -> str:
    """An Events API event id (`Ev` + 10 characters)."""
    return "Ev" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def _trigger_id() -> str:
    return f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def event_callback(
    event: Mapping[str, Any],
    event_id: str | None = None,
    *,
    team_id: str = DEFAULT_TEAM_ID,
    api_app_id: str = APP_ID,
    bot_user_id: str = BOT_USER_ID,
    event_time: int | None = None,
    token: str = VERIFICATION_TOKEN,
) -> Json:
    """The `event_callback` payload Slack posts (HTTP mode) or wraps in an `events_api`
    envelope (Socket Mode), with `authorizations` naming the bot."""
    return {
        "token": token,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + base64.urlsafe_b64encode(secrets.token_bytes(24)).decode(),
    }


def event_body(
    event: Mapping[str, Any],
    event_id: str | None = None,
    *,
    team_id: str = DEFAULT_TEAM_ID,
    api_app_id: str = APP_ID,
    bot_user_id: str = BOT_USER_ID,
    event_time: int | None = None,
    token: str = VERIFICATION_TOKEN,
) -> bytes:
    """The JSON body of an Events API request (HTTP mode)."""
    payload = event_callback(
        event,
        event_id,
        team_id=team_id,
        api_app_id=api_app_id,
        bot_user_id=bot_user_id,
        event_time=event_time,
        token=token,
    )
    return json.dumps(payload).encode()


def slash_command_payload(
    command: str,
    text: str = "",
    user_id: str = MEMBER_USER_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    response_url: str = "",
    team_id: str = DEFAULT_TEAM_ID,
    *,
    channel_name: str = "general",
    user_name: str | None = None,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = APP_ID,
    trigger_id: str | None = None,
    token: str = VERIFICATION_TOKEN,
) -> dict[str, str]:
    """The fields of a slash command, all strings, in the order Slack sends them (form
    fields over HTTP, the `payload` object of a `slash_commands` envelope)."""
    return {
        "token": token,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name if user_name is not None else user_id.lower(),
        "command": command if command.startswith("/") else "/" + command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(),
    }


def slash_command_body(
    command: str,
    text: str = "",
    user_id: str = MEMBER_USER_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    response_url: str = "",
    team_id: str = DEFAULT_TEAM_ID,
    *,
    channel_name: str = "general",
    user_name: str | None = None,
    api_app_id: str = APP_ID,
    trigger_id: str | None = None,
    token: str = VERIFICATION_TOKEN,
) -> bytes:
    """A slash command as Slack posts it: `application/x-www-form-urlencoded`."""
    fields = slash_command_payload(
        command,
        text,
        user_id,
        channel_id,
        response_url,
        team_id,
        channel_name=channel_name,
        user_name=user_name,
        api_app_id=api_app_id,
        trigger_id=trigger_id,
        token=token,
    )
    return urlencode(fields).encode()


def url_verification_body(
    challenge: str = "fake-challenge", token: str = VERIFICATION_TOKEN
) -> bytes:
    """The JSON body of the Events API `url_verification` handshake."""
    return json.dumps({"token": token, "challenge": challenge, "type": "url_verification"}).encode()


def sign(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """`X-Slack-Signature` (`v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`) and
    `X-Slack-Request-Timestamp`. The timestamp defaults to now; Slack's verifiers reject
    one more than five minutes away from their clock."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": str(ts)}


def signed_headers(
    signing_secret: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    content_type: str | None = None,
    retry_num: int | None = None,
    retry_reason: str | None = None,
) -> dict[str, str]:
    """`sign()` plus Content-Type (JSON when the body starts with `{`, else form) and, for a
    redelivery, `X-Slack-Retry-Num` / `X-Slack-Retry-Reason`."""
    headers = sign(signing_secret, body, timestamp)
    if content_type is None:
        is_json = body.lstrip().startswith(b"{")
        content_type = "application/json" if is_json else "application/x-www-form-urlencoded"
    headers["Content-Type"] = content_type
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    return headers


# --- records ---------------------------------------------------------------------------------


@dataclass
class RecordedCall:
    """One Web API call as the fake received it.

    `params` merges the query string and the form or JSON body (form values stay strings,
    JSON values keep their types; a body `token` is taken out into `token`). `headers` leave
    out Authorization (see `FakeSlack.tokens_seen`). `time` is `time.monotonic()` on
    arrival; `status` and `response` are what the fake answered.
    """

    method: str
    params: Json
    headers: dict[str, str]
    time: float
    http_verb: str
    token: str | None
    status: int = 0
    response: Json = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        error = self.response.get("error")
        return str(error) if error is not None else None


@dataclass
class PostedMessage:
    """What the bot sent through chat.postMessage, chat.postEphemeral or chat.update.

    Flags are None when the call did not send them; `blocks` is the decoded list.
    `ts` is the new message's ts (for chat.update, the updated message's).
    """

    method: str
    channel: str
    text: str
    ts: str
    time: float
    thread_ts: str | None = None
    user: str | None = None
    mrkdwn: bool | None = None
    unfurl_links: bool | None = None
    unfurl_media: bool | None = None
    reply_broadcast: bool | None = None
    blocks: list[Any] | None = None
    attachments: list[Any] | None = None
    truncated: bool = False
    params: Json = field(default_factory=dict)


@dataclass
class RecordedResponse:
    """One POST to a `response_url`: the decoded JSON body (None if it was not JSON)."""

    name: str
    json: Any
    body: bytes
    headers: dict[str, str]
    time: float


@dataclass
class RecordedUpload:
    """A file uploaded in Slack's three steps (files.getUploadURLExternal, a POST of the
    bytes to the upload URL, files.completeUploadExternal).

    `length` is what getUploadURLExternal was told, `content` what reached the upload URL
    (`uploaded` says whether anything did). After completion, `channels` are where it was
    shared (empty for a private file), `shares` maps each to the ts of the message that
    carries it, and `channel` / `ts` name the first. `token` is the one that asked for the
    upload URL; `user` the uploader (the bot). `time` is `time.monotonic()` at completion
    (at the URL request until then).
    """

    file_id: str
    filename: str
    length: int
    upload_url: str
    time: float
    token: str | None
    user: str
    alt_txt: str | None = None
    snippet_type: str | None = None
    content: bytes = b""
    content_type: str | None = None
    uploaded: bool = False
    mimetype: str = "application/octet-stream"
    title: str | None = None
    completed: bool = False
    channels: list[str] = field(default_factory=list)
    shares: dict[str, str] = field(default_factory=dict)
    initial_comment: str | None = None
    thread_ts: str | None = None
    created: int = 0

    @property
    def channel(self) -> str | None:
        return self.channels[0] if self.channels else None

    @property
    def ts(self) -> str | None:
        channel = self.channel
        return self.shares.get(channel) if channel is not None else None

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass
class SocketEnvelope:
    """An envelope the fake sent over Socket Mode. `sent_at` is `time.monotonic()`."""

    envelope_id: str
    type: str
    payload: Json
    sent_at: float
    accepts_response_payload: bool
    retry_attempt: int | None = None
    retry_reason: str | None = None

    def message(self) -> Json:
        """The websocket message, as Slack shapes it."""
        data: Json = {
            "envelope_id": self.envelope_id,
            "payload": self.payload,
            "type": self.type,
            "accepts_response_payload": self.accepts_response_payload,
        }
        if self.retry_attempt is not None:
            data["retry_attempt"] = self.retry_attempt
            data["retry_reason"] = self.retry_reason or ""
        return data


@dataclass
class SocketAck:
    """An acknowledgement (`{"envelope_id": ..., "payload"?: ...}`) from the client.
    `latency` is seconds since the envelope was sent (None for an unknown envelope);
    `late` is True past the fake's `ack_timeout`."""

    envelope_id: str
    time: float
    payload: Any
    latency: float | None
    late: bool


@dataclass
class _RateLimit:
    method: str
    retry_after: int
    remaining: int


@dataclass
class _Failure:
    method: str
    error: str
    status: int
    remaining: int
    headers: dict[str, str]


@dataclass
class _SocketConnection:
    ws: web.WebSocketResponse
    ticket: str
    opened_at: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: bool = False
    closed_at: float | None = None

    @property
    def open(self) -> bool:
        return self.ready and self.closed_at is None and not self.ws.closed

    async def send(self, payload: Json) -> bool:
        async with self.lock:
            if self.ws.closed:
                return False
            try:
                await self.ws.send_str(json.dumps(payload))
            except (ConnectionError, RuntimeError):
                return False
        return True


class SlackApiFailure(Exception):
    """Raised inside a method handler: the fake answers `{"ok": false, "error": ...}`."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


MethodHandler = Callable[[RecordedCall], Json]


# --- helpers ---------------------------------------------------------------------------------


def _ts_key(ts: str | float | int) -> int:
    """A Slack ts ("1700000000.000100") as integer microseconds (exact, unlike float)."""
    text = f"{ts:.6f}" if isinstance(ts, float) else str(ts)
    seconds, _, fraction = text.partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 6:
        raise ValueError(f"not a Slack ts: {ts!r}")
    return int(seconds) * 1_000_000 + int(fraction.ljust(6, "0") or "0")


def _format_ts(key: int) -> str:
    return f"{key // 1_000_000}.{key % 1_000_000:06d}"


def _encode_cursor(key: int) -> str:
    return base64.b64encode(f"next_ts:{key}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SlackApiFailure("invalid_cursor") from None
    prefix, _, digits = text.partition(":")
    if prefix != "next_ts" or not digits.isdigit():
        raise SlackApiFailure("invalid_cursor")
    return int(digits)


def _flag(value: Any) -> bool | None:
    """A boolean parameter as slack_sdk sends it: JSON bool, or "1"/"0"/"true"/"false"."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false", ""):
        return False
    return bool(value)


def _json_list(value: Any) -> list[Any] | None:
    """`blocks` / `attachments`: a list in JSON bodies, a JSON string in form bodies."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SlackApiFailure("invalid_blocks_format") from None
    if not isinstance(value, list):
        raise SlackApiFailure("invalid_blocks_format")
    return value


def _str_param(params: Json, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return str(value)


def _int_param(params: Json, name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SlackApiFailure("invalid_arguments") from None


def _sniff_mimetype(filename: str, content: bytes) -> str:
    """What Slack would call the file: by its magic bytes, else by its name."""
    for magic, mimetype in (
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"%PDF-", "application/pdf"),
    ):
        if content.startswith(magic):
            return mimetype
    guessed, _ = mimetypes.guess_type(filename)
    if guessed is not None:
        return guessed
    try:
        content.decode()
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


def _is_top_level(message: Json) -> bool:
    thread_ts = message.get("thread_ts")
    return (
        thread_ts is None
        or thread_ts == message["ts"]
        or message.get("subtype") == "thread_broadcast"
    )


def _paginate(
    messages: Sequence[Json], params: Json, *, newest_first: bool
) -> tuple[list[Json], bool, str]:
    """Slack's cursor pagination: a page of `limit`, `has_more`, the next cursor."""
    limit = _int_param(params, "limit", DEFAULT_HISTORY_LIMIT)
    limit = DEFAULT_HISTORY_LIMIT if limit <= 0 else min(limit, MAX_HISTORY_LIMIT)
    inclusive = bool(_flag(params.get("inclusive")))
    oldest = _ts_key(str(params["oldest"])) if _str_param(params, "oldest") else None
    latest = _ts_key(str(params["latest"])) if _str_param(params, "latest") else None
    cursor = _str_param(params, "cursor")
    start = _decode_cursor(cursor) if cursor else None

    def keep(message: Json) -> bool:
        key = _ts_key(message["ts"])
        if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
            return False
        if latest is not None and (key > latest or (key == latest and not inclusive)):
            return False
        if start is not None:
            return key <= start if newest_first else key >= start
        return True

    ordered = list(reversed(messages)) if newest_first else list(messages)
    selected = [m for m in ordered if keep(m)]
    page = selected[:limit]
    has_more = len(selected) > limit
    next_cursor = _encode_cursor(_ts_key(selected[limit]["ts"])) if has_more else ""
    return [copy.deepcopy(m) for m in page], has_more, next_cursor


class FakeSlack:
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
        self.team_id = team_id
        self.team_name = team_name
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.app_id = app_id
        self.bot_token = bot_token
        self.app_token = app_token
        self.ack_timeout = ack_timeout
        self.redeliver_unacked = redeliver_unacked

        self.auth_info: Json = {
            "url": f"https://{team_domain}.slack.com/",
            "team": team_name,
            "user": bot_name,
            "team_id": team_id,
            "user_id": bot_user_id,
            "bot_id": bot_id,
            "is_enterprise_install": False,
        }

        self.users: dict[str, Json] = {}
        if users is None:
            users = {
                ADMIN_USER_ID: {"name": "alice", "real_name": "Alice Admin", "is_admin": True},
                MEMBER_USER_ID: {"name": "bob", "real_name": "Bob Member"},
            }
        for user_id, spec in users.items():
            self.add_user(user_id, **dict(spec))
        if bot_user_id not in self.users:
            self.add_user(bot_user_id, name=bot_name, real_name=bot_name.title(), is_bot=True)

        self.channels: dict[str, Json] = {}
        self.history: dict[str, list[Json]] = {}
        for channel_id, name in (channels or {DEFAULT_CHANNEL_ID: "general"}).items():
            self.add_channel(channel_id, name)

        self.calls: list[RecordedCall] = []
        self.tokens_seen: list[str] = []
        self.unknown_methods: list[str] = []
        self.posted: list[PostedMessage] = []
        self.uploads: list[RecordedUpload] = []
        self.files: dict[str, RecordedUpload] = {}
        self.responses: dict[str, list[RecordedResponse]] = {}
        self.socket_envelopes: dict[str, SocketEnvelope] = {}
        self.socket_acks: list[SocketAck] = []
        self.socket_received: list[Json] = []
        self.socket_connections_total = 0
        self.socket_rejected = 0

        self._last_ts = 0
        self._req_ids = itertools.count(1)
        self._rate_limits: list[_RateLimit] = []
        self._failures: list[_Failure] = []
        self._stubs: dict[str, MethodHandler] = {}
        self._tickets: set[str] = set()
        self._upload_keys: dict[str, str] = {}
        self._connections: list[_SocketConnection] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._methods: dict[str, MethodHandler] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.join": self._conversations_join,
            "reactions.add": self._reactions,
            "reactions.remove": self._reactions,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.info": self._files_info,
        }

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What `AsyncWebClient(base_url=...)` takes (with the trailing slash)."""
        return f"{self.base_url}/api/"

    @property
    def socket_url(self) -> str:
        """The Socket Mode endpoint, without a ticket (connecting needs one from
        `apps.connections.open`)."""
        return f"ws://127.0.0.1:{self.port}/socket-mode"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response)
        app.router.add_post("/upload/v1/{key}", self._upload)
        app.router.add_get("/files-pri/{file_id}/{name}", self._download)
        app.router.add_get("/socket-mode", self._socket)
        app.router.add_get("/socket-mode/", self._socket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in self._connections:
            if not conn.ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(code=1001, message=b"fake closing"), 2)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._notify()

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- configuration ---------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str | None = None,
        *,
        real_name: str | None = None,
        display_name: str | None = None,
        is_admin: bool = False,
        is_owner: bool = False,
        is_bot: bool = False,
        **extra: Any,
    ) -> Json:
        """A workspace member, as users.info returns it (`extra` merges into the object)."""
        name = name or user_id.lower()
        real_name = real_name or name
        display_name = display_name if display_name is not None else name
        profile: Json = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": display_name,
            "display_name_normalized": display_name,
            "team": self.team_id,
            "image_72": f"https://avatars.example/{user_id}_72.png",
        }
        if is_bot:
            profile["bot_id"] = self.bot_id if user_id == self.bot_user_id else "B" + user_id[1:]
            profile["api_app_id"] = self.app_id
        user: Json = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real_name,
            "tz": "Asia/Tokyo",
            "tz_label": "Japan Standard Time",
            "tz_offset": 32400,
            "profile": profile,
            "is_admin": is_admin or is_owner,
            "is_owner": is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
        }
        user.update(extra)
        self.users[user_id] = user
        return user

    def add_channel(
        self, channel_id: str, name: str | None = None, *, is_private: bool = False, **extra: Any
    ) -> Json:
        """A channel the bot is a member of (ids starting with D are direct messages)."""
        is_im = channel_id.startswith("D")
        channel: Json = {
            "id": channel_id,
            "name": name or channel_id.lower(),
            "is_channel": not is_im and not is_private,
            "is_group": False,
            "is_im": is_im,
            "is_mpim": False,
            "is_private": is_private or is_im,
            "is_archived": False,
            "is_general": name == "general",
            "is_member": True,
            "created": int(time.time()),
            "creator": ADMIN_USER_ID,
            "name_normalized": name or channel_id.lower(),
            "context_team_id": self.team_id,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }
        if is_im:
            channel.pop("name")
            channel.pop("name_normalized")
        channel.update(extra)
        self.channels[channel_id] = channel
        self.history.setdefault(channel_id, [])
        return channel

    def new_ts(self) -> str:
        """A fresh message ts, later than every ts the fake has seen."""
        self._last_ts = max(int(time.time() * 1_000_000), self._last_ts + 1)
        return _format_ts(self._last_ts)

    def add_history(
        self,
        channel: str,
        user: str,
        text: str,
        ts: str | float | None = None,
        *,
        thread_ts: str | None = None,
        **extra: Any,
    ) -> Json:
        """Store a past message (no event is sent); the channel is created if unknown.
        Returns a copy of the stored message."""
        if channel not in self.channels:
            self.add_channel(channel)
        key = _ts_key(ts) if ts is not None else _ts_key(self.new_ts())
        self._last_ts = max(self._last_ts, key)
        message: Json = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": _format_ts(key),
            "team": self.team_id,
        }
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
        message.update(extra)
        if not self._store(channel, message):
            raise ValueError(f"{channel} already has a message with ts {message['ts']}")
        return copy.deepcopy(message)

    def messages(self, channel: str) -> list[Json]:
        """A channel's stored messages, oldest first (thread replies included)."""
        return self.history.setdefault(channel, [])

    def rate_limit_next(self, method: str, retry_after: int = 1, *, count: int = 1) -> None:
        """The next `count` calls of `method` answer HTTP 429, `Retry-After: <retry_after>`
        and `{"ok": false, "error": "ratelimited"}`."""
        self._rate_limits.append(_RateLimit(method, int(retry_after), count))

    def fail_next(
        self,
        method: str,
        error: str,
        *,
        status: int = 200,
        count: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next `count` calls of `method` answer `{"ok": false, "error": error}` with
        HTTP `status` (Slack answers most errors with 200)."""
        self._failures.append(_Failure(method, error, status, count, dict(headers or {})))

    def stub_method(self, method: str, response: Json | MethodHandler) -> None:
        """Answer `method` (known or not) with a fixed body (`ok: true` added when missing)
        or with a function of the RecordedCall. A handler may raise SlackApiFailure."""
        if callable(response):
            self._stubs[method] = response
        else:
            body = {"ok": True, **response}
            self._stubs[method] = lambda _call: copy.deepcopy(body)

    def response_url(self, name: str) -> str:
        """A response_url whose POSTs are recorded in `responses[name]`."""
        self.responses.setdefault(name, [])
        return f"{self.base_url}/response/{name}"

    # --- event payloads --------------------------------------------------------------------

    def app_mention_event(
        self,
        text: str,
        *,
        user: str = MEMBER_USER_ID,
        channel: str = DEFAULT_CHANNEL_ID,
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> Json:
        """An `app_mention` event; `<@BOT>` is put in front of the text when missing."""
        if f"<@{self.bot_user_id}>" not in text:
            text = f"<@{self.bot_user_id}> {text}"
        return self._message_like("app_mention", text, user, channel, ts, thread_ts)

    def message_event(
        self,
        text: str,
        *,
        user: str = MEMBER_USER_ID,
        channel: str = DEFAULT_CHANNEL_ID,
        ts: str | None = None,
        thread_ts: str | None = None,
        channel_type: str | None = None,
    ) -> Json:
        """A plain `message` event (message.channels / message.im)."""
        event = self._message_like("message", text, user, channel, ts, thread_ts)
        event["channel_type"] = channel_type or ("im" if channel.startswith("D") else "channel")
        return event

    def _message_like(
        self,
        type_: str,
        text: str,
        user: str,
        channel: str,
        ts: str | None,
        thread_ts: str | None,
    ) -> Json:
        ts = ts or self.new_ts()
        event: Json = {
            "type": type_,
            "user": user,
            "text": text,
            "ts": ts,
            "client_msg_id": str(uuid.uuid4()),
            "team": self.team_id,
            "channel": channel,
            "event_ts": ts,
        }
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
        return event

    # --- waiting ---------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(
        self,
        find: Callable[[], T | None],
        timeout: float,  # noqa: ASYNC109
        describe: Callable[[], str],
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = find()
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(describe())
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def versions_of(self, channel: str, ts: str) -> list[str]:
        """What a bot message showed, in order: its text when posted (chat.postMessage)
        and after each chat.update."""
        return [
            p.text
            for p in self.posted
            if p.channel == channel
            and p.ts == ts
            and p.method in ("chat.postMessage", "chat.update")
        ]

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == method]

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[RecordedCall], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 (the test-facing API reads better this way)
        start: int = 0,
    ) -> RecordedCall:
        """The first call of `method` (from index `start` of `calls`, including calls
        already recorded) satisfying `predicate`. Rate-limited and failed calls count;
        filter on `call.ok` or `call.status` to skip them."""

        def find() -> RecordedCall | None:
            for call in self.calls[start:]:
                if call.method == method and (predicate is None or predicate(call)):
                    return call
            return None

        def describe() -> str:
            seen = [f"{c.method} -> {c.status} {c.error or ''}".strip() for c in self.calls[start:]]
            return f"no matching {method} call within {timeout}s; saw {seen}"

        return await self._wait(find, timeout, describe)

    async def wait_for_upload(
        self,
        predicate: Callable[[RecordedUpload], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
        start: int = 0,
    ) -> RecordedUpload:
        """The first completed upload (from index `start` of `uploads`, including uploads
        already recorded) satisfying `predicate`."""

        def find() -> RecordedUpload | None:
            for upload in self.uploads[start:]:
                if predicate is None or predicate(upload):
                    return upload
            return None

        def describe() -> str:
            seen = [
                f"{u.file_id} {u.filename!r} -> {u.channels or 'private'}"
                for u in self.uploads[start:]
            ]
            pending = [u.file_id for u in self.files.values() if not u.completed]
            return (
                f"no matching upload within {timeout}s; completed {seen}, not completed {pending}"
            )

        return await self._wait(find, timeout, describe)

    async def wait_for_response(
        self,
        name: str,
        timeout: float = 10.0,  # noqa: ASYNC109
        start: int = 0,
    ) -> RecordedResponse:
        """The first POST to `response_url(name)` from index `start`."""

        def find() -> RecordedResponse | None:
            recorded = self.responses.get(name, [])
            return recorded[start] if len(recorded) > start else None

        def describe() -> str:
            seen = {key: len(value) for key, value in self.responses.items()}
            return f"no POST to response_url {name!r} within {timeout}s; saw {seen}"

        return await self._wait(find, timeout, describe)

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> float:  # noqa: ASYNC109
        """The `time.monotonic()` at which the envelope was acknowledged."""

        def find() -> float | None:
            ack = self.ack_for(envelope_id)
            return ack.time if ack is not None else None

        def describe() -> str:
            acked = [ack.envelope_id for ack in self.socket_acks]
            return f"envelope {envelope_id} not acknowledged within {timeout}s; acked {acked}"

        return await self._wait(find, timeout, describe)

    def ack_for(self, envelope_id: str) -> SocketAck | None:
        for ack in self.socket_acks:
            if ack.envelope_id == envelope_id:
                return ack
        return None

    @property
    def socket_connected(self) -> bool:
        return any(conn.open for conn in self._connections)

    async def wait_for_socket_connection(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109
        *,
        count: int = 1,
    ) -> None:
        """Until `count` Socket Mode connections have been made in all (hello sent) and one
        is open. `count=2` waits for a reconnection."""

        def find() -> bool | None:
            enough = self.socket_connections_total >= count
            return True if enough and self.socket_connected else None

        def describe() -> str:
            return (
                f"no Socket Mode connection within {timeout}s "
                f"({self.socket_connections_total} made, {self.socket_rejected} rejected)"
            )

        await self._wait(find, timeout, describe)

    # --- Socket Mode from the test side ----------------------------------------------------

    async def socket_send(
        self,
        type_: str,
        payload: Json,
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        envelope_id: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> str:
        """Send any envelope (`events_api`, `slash_commands`, `interactive`) to the newest
        open connection, waiting for one first. Returns the envelope id."""
        await self.wait_for_socket_connection(timeout)
        envelope = SocketEnvelope(
            envelope_id=envelope_id or str(uuid.uuid4()),
            type=type_,
            payload=payload,
            sent_at=time.monotonic(),
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )
        self.socket_envelopes[envelope.envelope_id] = envelope
        conn = next(c for c in reversed(self._connections) if c.open)
        if not await conn.send(envelope.message()):
            raise ConnectionError("the Socket Mode connection closed while sending")
        if self.redeliver_unacked and type_ == "events_api":
            self._spawn(self._redeliver_if_unacked(envelope))
        return envelope.envelope_id

    async def socket_send_event(
        self,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> str:
        """An `events_api` envelope around an `event_callback` payload. Message-like events
        (`message` without subtype, `app_mention`) are also stored in the channel history,
        as the message they report exists in Slack. `retry_num` marks a redelivery
        (`retry_attempt`, `retry_reason` defaulting to "timeout"); first deliveries carry
        `retry_attempt: 0, retry_reason: ""` like Slack's."""
        self._remember_event_message(event)
        payload = event_callback(
            event,
            event_id,
            team_id=self.team_id,
            api_app_id=self.app_id,
            bot_user_id=self.bot_user_id,
        )
        return await self.socket_send(
            "events_api",
            payload,
            retry_attempt=retry_num or 0,
            retry_reason=(retry_reason or "timeout") if retry_num else "",
            timeout=timeout,
        )

    async def socket_send_slash_command(
        self,
        command: str,
        text: str = "",
        *,
        user_id: str = MEMBER_USER_ID,
        channel_id: str = DEFAULT_CHANNEL_ID,
        response_url: str | None = None,
        trigger_id: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> str:
        """A `slash_commands` envelope. Without `response_url` the command gets
        `response_url(<envelope id>)`, so `wait_for_response(envelope_id)` finds what
        `respond()` posted. Returns the envelope id."""
        envelope_name = str(uuid.uuid4())
        user = self.users.get(user_id)
        channel = self.channels.get(channel_id, {})
        payload = slash_command_payload(
            command,
            text,
            user_id,
            channel_id,
            response_url if response_url is not None else self.response_url(envelope_name),
            self.team_id,
            channel_name=str(channel.get("name", "directmessage")),
            user_name=str(user["name"]) if user is not None else None,
            team_domain=self.team_domain,
            api_app_id=self.app_id,
            trigger_id=trigger_id,
        )
        return await self.socket_send(
            "slash_commands",
            dict(payload),
            accepts_response_payload=True,
            envelope_id=envelope_name,
            timeout=timeout,
        )

    async def socket_request_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the connected clients to reconnect (`{"type": "disconnect"}`), as Slack does
        before it refreshes a connection."""
        message: Json = {
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-fake"},
        }
        for conn in list(self._connections):
            if conn.open:
                await conn.send(message)

    async def _redeliver_if_unacked(self, envelope: SocketEnvelope) -> None:
        await asyncio.sleep(self.ack_timeout)
        attempt = envelope.retry_attempt or 0
        if self.ack_for(envelope.envelope_id) is None and attempt < MAX_EVENT_RETRIES:
            if self.socket_connected:
                await self.socket_send(
                    "events_api",
                    envelope.payload,
                    retry_attempt=attempt + 1,
                    retry_reason="timeout",
                )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remember_event_message(self, event: Mapping[str, Any]) -> None:
        if event.get("type") not in ("message", "app_mention") or event.get("subtype"):
            return
        channel, ts, user = event.get("channel"), event.get("ts"), event.get("user")
        if not (isinstance(channel, str) and isinstance(ts, str) and isinstance(user, str)):
            return
        if channel not in self.channels:
            self.add_channel(channel)
        self._last_ts = max(self._last_ts, _ts_key(ts))
        message: Json = {
            "type": "message",
            "user": user,
            "text": str(event.get("text", "")),
            "ts": ts,
            "team": self.team_id,
        }
        for key in ("client_msg_id", "thread_ts", "blocks"):
            if key in event:
                message[key] = copy.deepcopy(event[key])
        self._store(channel, message)  # already stored (same ts): keep the first

    # --- HTTP handlers ---------------------------------------------------------------------

    async def _read_params(self, request: web.Request) -> tuple[Json, bool]:
        """Query string plus body; the bool says whether the body was JSON."""
        params: Json = dict(request.query)
        if not request.can_read_body:
            return params, False
        ctype = request.content_type
        if ctype == "application/json":
            raw = await request.read()
            data = json.loads(raw) if raw.strip() else {}
            if not isinstance(data, dict):
                raise SlackApiFailure("invalid_json")
            params.update(data)
            return params, True
        if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = value
                elif isinstance(value, bytes | bytearray):
                    params[key] = bytes(value).decode(errors="replace")
                else:
                    params[key] = {"filename": value.filename, "content_type": value.content_type}
            return params, False
        raw = await request.read()
        if raw:
            params["_raw_body"] = raw.decode(errors="replace")
        return params, False

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        arrived = time.monotonic()
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            self.tokens_seen.append(authorization)
        token: str | None = None
        if authorization is not None and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        call = RecordedCall(
            method=method,
            params={},
            headers=headers,
            time=arrived,
            http_verb=request.method,
            token=token,
        )
        self.calls.append(call)
        status: int = 200
        body: Json = {"ok": False, "error": "internal_error"}
        extra_headers: dict[str, str] = {}
        try:
            params, from_json = await self._read_params(request)
            body_token = params.pop("token", None)
            # A token inside a JSON body is ignored by Slack; forms and query strings work.
            if call.token is None and body_token and not from_json:
                call.token = str(body_token)
            call.params = params
            status, body, extra_headers = self._answer(call)
        except SlackApiFailure as failure:
            body = {"ok": False, "error": failure.error, **failure.extra}
        except json.JSONDecodeError:
            body = {"ok": False, "error": "invalid_json"}
        call.status, call.response = status, body
        response_headers = {"X-Slack-Req-Id": f"fake-{next(self._req_ids)}", **extra_headers}
        if call.token is not None and call.token.startswith("xoxb-"):
            response_headers["X-OAuth-Scopes"] = BOT_SCOPES
        self._notify()
        return web.json_response(copy.deepcopy(body), status=status, headers=response_headers)

    def _answer(self, call: RecordedCall) -> tuple[int, Json, dict[str, str]]:
        method = call.method
        for limit in self._rate_limits:
            if limit.method == method and limit.remaining > 0:
                limit.remaining -= 1
                if limit.remaining == 0:
                    self._rate_limits.remove(limit)
                return (
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(limit.retry_after)},
                )
        for failure in self._failures:
            if failure.method == method and failure.remaining > 0:
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failures.remove(failure)
                return failure.status, {"ok": False, "error": failure.error}, failure.headers
        handler = self._stubs.get(method) or self._methods.get(method)
        if handler is None:
            self.unknown_methods.append(method)
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        self._check_token(call)
        body = handler(call)
        return 200, {"ok": True, **body} if "ok" not in body else body, {}

    def _check_token(self, call: RecordedCall) -> None:
        token = call.token
        if not token:
            raise SlackApiFailure("not_authed")
        if call.method == "apps.connections.open":
            if not token.startswith("xapp-"):
                raise SlackApiFailure("not_allowed_token_type")
            if self.app_token is not None and token != self.app_token:
                raise SlackApiFailure("invalid_auth")
            return
        if call.method == "api.test":
            return
        if token.startswith("xapp-"):
            raise SlackApiFailure("not_allowed_token_type")
        if not token.startswith(("xoxb-", "xoxp-")):
            raise SlackApiFailure("invalid_auth")
        if self.bot_token is not None and token.startswith("xoxb-") and token != self.bot_token:
            raise SlackApiFailure("invalid_auth")

    async def _response(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        raw = await request.read()
        decoded: Any
        try:
            decoded = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            decoded = None
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        record = RecordedResponse(name, decoded, raw, headers, time.monotonic())
        self.responses.setdefault(name, []).append(record)
        self._notify()
        if decoded is None:
            return web.Response(status=400, text="invalid_payload")
        return web.json_response({"ok": True})

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL: raw bytes or a multipart form (its first file part). No token;
        the URL itself is the credential. Not limited by aiohttp's client_max_size."""
        file_id = self._upload_keys.get(request.match_info["key"])
        upload = self.files.get(file_id) if file_id is not None else None
        if upload is None or upload.completed:
            return web.Response(status=404, text="file not found", content_type="text/plain")
        content_type: str | None = request.content_type if request.body_exists else None
        if content_type == "multipart/form-data":
            content = b""
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and (
                    part.filename is not None or part.name in ("file", "filename")
                ):
                    content = bytes(await part.read())
                    content_type = part.headers.get("Content-Type", content_type)
                    break
        else:
            content = await request.content.read()
        upload.content = content
        upload.content_type = content_type
        upload.uploaded = True
        upload.mimetype = _sniff_mimetype(upload.filename, content)
        self._notify()
        return web.Response(text=f"OK - {len(content)}", content_type="text/plain")

    async def _download(self, request: web.Request) -> web.Response:
        """`url_private`: the bytes of a completed upload, for a valid bot or user token."""
        authorization = request.headers.get("Authorization", "")
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        valid = token.startswith(("xoxb-", "xoxp-")) and (
            self.bot_token is None or not token.startswith("xoxb-") or token == self.bot_token
        )
        upload = self.files.get(request.match_info["file_id"])
        if not valid:
            return web.Response(status=403, text="forbidden", content_type="text/plain")
        if upload is None or not upload.completed:
            return web.Response(status=404, text="file not found", content_type="text/plain")
        return web.Response(body=upload.content, content_type=upload.mimetype)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            self.socket_rejected += 1
            self._notify()
            return web.Response(status=401, text="invalid or missing ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _SocketConnection(ws=ws, ticket=ticket, opened_at=time.monotonic())
        self._connections.append(conn)
        hello: Json = {
            "type": "hello",
            "num_connections": sum(1 for c in self._connections if not c.ws.closed),
            "debug_info": {
                "host": "applink-fake",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }
        if await conn.send(hello):
            conn.ready = True
            self.socket_connections_total += 1
            self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_socket_text(str(msg.data))
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            conn.closed_at = time.monotonic()
            self._notify()
        return ws

    def _on_socket_text(self, text: str) -> None:
        now = time.monotonic()
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            message = {"_raw": text}
        if not isinstance(message, dict):
            message = {"_raw": message}
        self.socket_received.append(message)
        envelope_id = message.get("envelope_id")
        if isinstance(envelope_id, str):
            envelope = self.socket_envelopes.get(envelope_id)
            latency = now - envelope.sent_at if envelope is not None else None
            late = latency is not None and latency > self.ack_timeout
            self.socket_acks.append(
                SocketAck(envelope_id, now, message.get("payload"), latency, late)
            )
        self._notify()

    # --- Web API methods -------------------------------------------------------------------

    def _api_test(self, call: RecordedCall) -> Json:
        error = call.params.get("error")
        if error:
            raise SlackApiFailure(str(error), args=call.params)
        return {"args": call.params}

    def _auth_test(self, call: RecordedCall) -> Json:
        return copy.deepcopy(self.auth_info)

    def _apps_connections_open(self, call: RecordedCall) -> Json:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        return {"url": f"{self.socket_url}?ticket={ticket}&app_id={self.app_id}"}

    def _require(self, call: RecordedCall, name: str) -> str:
        value = _str_param(call.params, name)
        if value is None:
            raise SlackApiFailure("invalid_arguments" if name != "channel" else "channel_not_found")
        return value

    def _channel(self, call: RecordedCall, *, posting: bool = False) -> str:
        """The channel id a call names: an id, `#name` or a name; when posting, a user id
        (or a D id) opens the direct message."""
        value = self._require(call, "channel")
        if value in self.channels:
            return value
        if posting and value[:1] in ("U", "W") and value in self.users:
            dm = "D" + value[1:]
            if dm not in self.channels:
                self.add_channel(dm, user=value)
            return dm
        if value.startswith("D"):
            self.add_channel(value)
            return value
        name = value.removeprefix("#")
        for channel_id, channel in self.channels.items():
            if channel.get("name") == name:
                return channel_id
        raise SlackApiFailure("channel_not_found")

    def _find(self, channel: str, ts: str) -> Json | None:
        for message in self.history.get(channel, []):
            if message["ts"] == ts:
                return message
        return None

    def _store(self, channel: str, message: Json) -> bool:
        """Insert in ts order; False (and nothing stored) if the ts is taken. A reply
        updates its parent's thread fields as Slack does."""
        messages = self.history.setdefault(channel, [])
        key = _ts_key(message["ts"])
        keys = [_ts_key(m["ts"]) for m in messages]
        index = bisect.bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            return False
        messages.insert(index, message)
        thread_ts = message.get("thread_ts")
        if thread_ts is not None and thread_ts != message["ts"]:
            parent = self._find(channel, thread_ts)
            if parent is not None:
                message.setdefault("parent_user_id", parent.get("user"))
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = int(parent.get("reply_count", 0)) + 1
                users: list[str] = parent.setdefault("reply_users", [])
                if message.get("user") and message["user"] not in users:
                    users.append(message["user"])
                parent["reply_users_count"] = len(users)
                parent["latest_reply"] = max(
                    parent.get("latest_reply", message["ts"]), message["ts"], key=_ts_key
                )
        return True

    def _bot_message(self, text: str, ts: str, blocks: list[Any] | None) -> Json:
        message: Json = {
            "user": self.bot_user_id,
            "type": "message",
            "ts": ts,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": text,
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "deleted": False,
                "team_id": self.team_id,
            },
        }
        if blocks is not None:
            message["blocks"] = blocks
        return message

    def _text_and_blocks(
        self, call: RecordedCall
    ) -> tuple[str, list[Any] | None, list[Any] | None]:
        text = str(call.params.get("text") or "")
        blocks = _json_list(call.params.get("blocks"))
        attachments = _json_list(call.params.get("attachments"))
        if not text and not blocks and not attachments:
            raise SlackApiFailure("no_text")
        return text, blocks, attachments

    def _posted(
        self, call: RecordedCall, channel: str, text: str, ts: str, **fields: Any
    ) -> PostedMessage:
        params = call.params
        record = PostedMessage(
            method=call.method,
            channel=channel,
            text=text,
            ts=ts,
            time=call.time,
            thread_ts=_str_param(params, "thread_ts"),
            mrkdwn=_flag(params.get("mrkdwn")),
            unfurl_links=_flag(params.get("unfurl_links")),
            unfurl_media=_flag(params.get("unfurl_media")),
            reply_broadcast=_flag(params.get("reply_broadcast")),
            params=copy.deepcopy(params),
            **fields,
        )
        self.posted.append(record)
        return record

    def _chat_post_message(self, call: RecordedCall) -> Json:
        channel = self._channel(call, posting=True)
        text, blocks, attachments = self._text_and_blocks(call)
        truncated = len(text) > MAX_TEXT
        text = text[:MAX_TEXT]
        ts = self.new_ts()
        message = self._bot_message(text, ts, blocks)
        if attachments is not None:
            message["attachments"] = attachments
        thread_ts = _str_param(call.params, "thread_ts")
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            if _flag(call.params.get("reply_broadcast")):
                message["subtype"] = "thread_broadcast"
        self._store(channel, message)
        self._posted(
            call,
            channel,
            text,
            ts,
            blocks=blocks,
            attachments=attachments,
            truncated=truncated,
        )
        return {"channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _chat_post_ephemeral(self, call: RecordedCall) -> Json:
        channel = self._channel(call, posting=True)
        user = self._require(call, "user")
        if user not in self.users:
            raise SlackApiFailure("user_not_in_channel")
        text, blocks, attachments = self._text_and_blocks(call)
        ts = self.new_ts()
        self._posted(
            call, channel, text[:MAX_TEXT], ts, user=user, blocks=blocks, attachments=attachments
        )
        return {"message_ts": ts}

    def _chat_update(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        ts = self._require(call, "ts")
        message = self._find(channel, ts)
        if message is None:
            raise SlackApiFailure("message_not_found")
        if message.get("user") != self.bot_user_id:
            raise SlackApiFailure("cant_update_message")
        text, blocks, attachments = self._text_and_blocks(call)
        message["text"] = text[:MAX_TEXT]
        if blocks is not None:
            message["blocks"] = blocks
        if attachments is not None:
            message["attachments"] = attachments
        message["edited"] = {"user": self.bot_user_id, "ts": self.new_ts()}
        self._posted(call, channel, message["text"], ts, blocks=blocks, attachments=attachments)
        return {
            "channel": channel,
            "ts": ts,
            "text": message["text"],
            "message": copy.deepcopy(message),
        }

    def _chat_delete(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        ts = self._require(call, "ts")
        message = self._find(channel, ts)
        if message is None:
            raise SlackApiFailure("message_not_found")
        if message.get("user") != self.bot_user_id:
            raise SlackApiFailure("cant_delete_message")
        self.history[channel].remove(message)
        return {"channel": channel, "ts": ts}

    def _users_info(self, call: RecordedCall) -> Json:
        user_id = _str_param(call.params, "user")
        if user_id is None or user_id not in self.users:
            raise SlackApiFailure("user_not_found")
        return {"user": copy.deepcopy(self.users[user_id])}

    def _conversations_info(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        return {"channel": copy.deepcopy(self.channels[channel])}

    def _conversations_join(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        self.channels[channel]["is_member"] = True
        return {"channel": copy.deepcopy(self.channels[channel])}

    def _conversations_history(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        top_level = [m for m in self.history.get(channel, []) if _is_top_level(m)]
        page, has_more, next_cursor = _paginate(top_level, call.params, newest_first=True)
        return {
            "messages": page,
            "has_more": has_more,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _conversations_replies(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        ts = self._require(call, "ts")
        parent = self._find(channel, ts)
        if parent is None:
            raise SlackApiFailure("thread_not_found")
        thread_ts = parent.get("thread_ts", parent["ts"])
        thread = [
            m
            for m in self.history.get(channel, [])
            if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
        ]
        page, has_more, next_cursor = _paginate(thread, call.params, newest_first=False)
        return {
            "messages": page,
            "has_more": has_more,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _reactions(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        timestamp = self._require(call, "timestamp")
        if self._find(channel, timestamp) is None:
            raise SlackApiFailure("message_not_found")
        self._require(call, "name")
        return {}

    # --- files -----------------------------------------------------------------------------

    def _file_object(self, upload: RecordedUpload) -> Json:
        """A file as files.info and files.completeUploadExternal describe it."""
        name = upload.filename
        _, dot, extension = name.rpartition(".")
        filetype = extension.lower() if dot and extension else "binary"
        if upload.mimetype == "text/plain" and filetype == "binary":
            filetype = "text"
        url = f"{self.base_url}/files-pri/{upload.file_id}/{name}"
        public = [c for c in upload.channels if self.channels.get(c, {}).get("is_channel")]
        private = [c for c in upload.channels if c not in public and not c.startswith("D")]
        shares: Json = {}
        for key, ids in (("public", public), ("private", private)):
            if ids:
                shares[key] = {
                    c: [
                        {
                            "ts": upload.shares[c],
                            "channel_name": self.channels.get(c, {}).get("name", ""),
                            "team_id": self.team_id,
                            "share_user_id": upload.user,
                            "reply_count": 0,
                            "reply_users": [],
                            "reply_users_count": 0,
                            **({"thread_ts": upload.thread_ts} if upload.thread_ts else {}),
                        }
                    ]
                    for c in ids
                }
        file: Json = {
            "id": upload.file_id,
            "created": upload.created,
            "timestamp": upload.created,
            "name": name,
            "title": upload.title if upload.title is not None else name,
            "mimetype": upload.mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": upload.user,
            "user_team": self.team_id,
            "editable": False,
            "size": upload.size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": bool(public),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": url,
            "url_private_download": url + "?download=1",
            "permalink": f"https://{self.team_domain}.slack.com/files/{upload.user}/"
            f"{upload.file_id}/{name}",
            "channels": public,
            "groups": private,
            "ims": [c for c in upload.channels if c.startswith("D")],
            "comments_count": 0,
            "has_rich_preview": False,
            "file_access": "visible",
        }
        if shares:
            file["shares"] = shares
        if upload.alt_txt is not None:
            file["alt_txt"] = upload.alt_txt
        return file

    def _share_target(self, value: str) -> str:
        """A channel files.completeUploadExternal may share into: a channel id the bot is
        in, a user id (their direct message) or a D id."""
        channel_id = value.strip()
        if channel_id[:1] in ("U", "W") and channel_id in self.users:
            channel_id = "D" + channel_id[1:]
            if channel_id not in self.channels:
                self.add_channel(channel_id, user=value)
        elif channel_id.startswith("D") and channel_id not in self.channels:
            self.add_channel(channel_id)
        channel = self.channels.get(channel_id)
        if channel is None:
            raise SlackApiFailure("channel_not_found")
        if channel.get("is_archived"):
            raise SlackApiFailure("is_archived")
        if channel.get("is_member") is False:
            raise SlackApiFailure("not_in_channel")
        return channel_id

    def _files_get_upload_url_external(self, call: RecordedCall) -> Json:
        filename = _str_param(call.params, "filename")
        if filename is None or _str_param(call.params, "length") is None:
            raise SlackApiFailure("invalid_arguments")
        length = _int_param(call.params, "length", 0)
        if length <= 0:
            raise SlackApiFailure("invalid_arguments")
        file_id = "F" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
        key = secrets.token_urlsafe(16)
        self._upload_keys[key] = file_id
        upload_url = f"{self.base_url}/upload/v1/{key}"
        self.files[file_id] = RecordedUpload(
            file_id=file_id,
            filename=filename,
            length=length,
            upload_url=upload_url,
            time=call.time,
            token=call.token,
            user=self.bot_user_id,
            alt_txt=_str_param(call.params, "alt_txt"),
            snippet_type=_str_param(call.params, "snippet_type"),
        )
        return {"upload_url": upload_url, "file_id": file_id}

    def _files_complete_upload_external(self, call: RecordedCall) -> Json:
        params = call.params
        raw_files = params.get("files")
        if isinstance(raw_files, str):
            try:
                raw_files = json.loads(raw_files)
            except json.JSONDecodeError:
                raise SlackApiFailure("invalid_arguments") from None
        if not isinstance(raw_files, list) or not raw_files:
            raise SlackApiFailure("invalid_arguments")
        entries: list[tuple[RecordedUpload, str | None]] = []
        for item in raw_files:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise SlackApiFailure("invalid_arguments")
            upload = self.files.get(item["id"])
            if upload is None or not upload.uploaded or upload.completed:
                raise SlackApiFailure("file_not_found")
            title = item.get("title")
            entries.append((upload, str(title) if title not in (None, "") else None))

        targets: list[str] = []
        channel_id = _str_param(params, "channel_id")
        if channel_id is not None:
            targets.append(channel_id)
        for value in str(params.get("channels") or "").split(","):
            if value.strip() and value.strip() not in targets:
                targets.append(value.strip())
        channels = [self._share_target(value) for value in targets]
        thread_ts = _str_param(params, "thread_ts")
        if thread_ts is not None and len(channels) != 1:
            raise SlackApiFailure("invalid_arguments")
        initial_comment = _str_param(params, "initial_comment")
        blocks = None if initial_comment is not None else _json_list(params.get("blocks"))

        now = int(time.time())
        for upload, title in entries:
            upload.title = title if title is not None else upload.filename
            upload.completed = True
            upload.created = now
            upload.time = call.time
            upload.initial_comment = initial_comment
            upload.thread_ts = thread_ts
            upload.channels = list(channels)
        for channel in channels:
            ts = self.new_ts()
            for upload, _ in entries:
                upload.shares[channel] = ts
        for channel in channels:
            ts = entries[0][0].shares[channel]
            message = self._bot_message(initial_comment or "", ts, blocks)
            message["files"] = [self._file_object(upload) for upload, _ in entries]
            message["upload"] = True
            message["display_as_bot"] = False
            if thread_ts is not None:
                message["thread_ts"] = thread_ts
            self._store(channel, message)
        for upload, _ in entries:
            self.uploads.append(upload)
        return {"files": [self._file_object(upload) for upload, _ in entries]}

    def _files_info(self, call: RecordedCall) -> Json:
        file_id = _str_param(call.params, "file")
        upload = self.files.get(file_id) if file_id is not None else None
        if upload is None or not upload.completed:
            raise SlackApiFailure("file_not_found")
        return {
            "file": self._file_object(upload),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A started FakeSlack (team T0001, bot UBOT/BBOT, channel C0001, app A0001)."""
    async with FakeSlack() as fake:
        yield fake
