"""What the Discord fake records of the bot: REST requests (with their file parts) and
interactions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fakes.discord.protocol import Json


@dataclass
class RecordedFile:
    """A file part of a multipart request."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    """One REST request as the fake received it.

    `path` is relative to the API base (`/channels/222/messages`), `json` is the decoded
    body (for multipart requests, the `payload_json` part), `headers` leave out
    Authorization (see `FakeDiscord.tokens_seen`), `time` is `time.monotonic()` on arrival,
    and `status` and `response` are what the fake answered.
    """

    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    time: float
    status: int = 0
    response: Any = None
    files: list[RecordedFile] = field(default_factory=list)

    def matches(self, method: str | None = None, path: str | None = None) -> bool:
        """Same method (if given) and `path` is a substring of this request's path."""
        if method is not None and self.method != method.upper():
            return False
        return path is None or path in self.path


@dataclass
class InteractionRecord:
    """An interaction the fake dispatched, and what the bot did with it."""

    id: str
    token: str
    channel_id: str
    guild_id: str | None
    user_id: str
    name: str
    dispatched_at: float
    payload: Json
    callback_type: int | None = None
    callback_at: float | None = None
    ephemeral: bool = False
    original: Json | None = None
    followups: list[Json] = field(default_factory=list)
