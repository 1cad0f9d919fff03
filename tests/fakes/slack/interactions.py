"""Slash commands on the Slack fake: a test sends one over Socket Mode, and the bot answers
it on its `response_url` (the fake's `/response/<name>` endpoints, recorded by name)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aiohttp import web

from tests.fakes.slack.events import slash_command_payload
from tests.fakes.slack.protocol import DEFAULT_CHANNEL_ID, MEMBER_USER_ID
from tests.fakes.slack.records import RecordedResponse
from tests.fakes.slack.socket_mode import SocketMode
from tests.fakes.transport import recorded_headers


class Interactions(SocketMode):
    """Recorded: `responses` (response_url POSTs, by name)."""

    def _init_interactions(self) -> None:
        self.responses: dict[str, list[RecordedResponse]] = {}

    def response_url(self, name: str) -> str:
        """A response_url whose POSTs are recorded in `responses[name]`."""
        self.responses.setdefault(name, [])
        return f"{self.base_url}/response/{name}"

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

    async def _response(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        raw = await request.read()
        decoded: Any
        try:
            decoded = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            decoded = None
        record = RecordedResponse(name, decoded, raw, recorded_headers(request), time.monotonic())
        self.responses.setdefault(name, []).append(record)
        self._notify()
        if decoded is None:
            return web.Response(status=400, text="invalid_payload")
        return web.json_response({"ok": True})
