"""What the Slack fake records of the bot: Web API calls, the messages it posted, POSTs to
response URLs, file uploads, and Socket Mode envelopes and their acknowledgements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fakes.slack.protocol import Json


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
