"""Socket Mode on the Slack fake: apps.connections.open hands out a ticketed `ws://` URL,
the websocket says hello and takes acknowledgements (on time or late), and a test sends
envelopes through it (events, with Slack's redelivery of unacknowledged ones, and
disconnect requests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.slack.events import event_callback
from tests.fakes.slack.protocol import MAX_EVENT_RETRIES, Json
from tests.fakes.slack.records import RecordedCall, SocketAck, SocketEnvelope
from tests.fakes.slack.web_api import MethodHandler, WebApi
from tests.fakes.transport import OrderedSocket


class _SocketConnection(OrderedSocket):
    def __init__(self, ws: web.WebSocketResponse, ticket: str, opened_at: float) -> None:
        super().__init__(ws)
        self.ticket = ticket
        self.opened_at = opened_at
        self.ready = False
        self.closed_at: float | None = None

    @property
    def open(self) -> bool:
        return self.ready and self.closed_at is None and not self.ws.closed

    async def send(self, payload: Json) -> bool:
        return await self.send_text(json.dumps(payload))


class SocketMode(WebApi):
    """Recorded: `socket_envelopes` (sent, by envelope id), `socket_acks`,
    `socket_received` (every message from Socket Mode clients), and the connections made
    (`socket_connections_total`) and refused (`socket_rejected`)."""

    def _init_socket_mode(self, *, ack_timeout: float, redeliver_unacked: bool) -> None:
        self.ack_timeout = ack_timeout
        self.redeliver_unacked = redeliver_unacked
        self.socket_envelopes: dict[str, SocketEnvelope] = {}
        self.socket_acks: list[SocketAck] = []
        self.socket_received: list[Json] = []
        self.socket_connections_total = 0
        self.socket_rejected = 0
        self._tickets: set[str] = set()
        self._connections: list[_SocketConnection] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def _socket_methods(self) -> dict[str, MethodHandler]:
        return {"apps.connections.open": self._apps_connections_open}

    @property
    def socket_url(self) -> str:
        """The Socket Mode endpoint, without a ticket (connecting needs one from
        `apps.connections.open`)."""
        return f"ws://127.0.0.1:{self.port}/socket-mode"

    @property
    def socket_connected(self) -> bool:
        return any(conn.open for conn in self._connections)

    def ack_for(self, envelope_id: str) -> SocketAck | None:
        for ack in self.socket_acks:
            if ack.envelope_id == envelope_id:
                return ack
        return None

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> float:  # noqa: ASYNC109
        """The `time.monotonic()` at which the envelope was acknowledged."""

        def find() -> float | None:
            ack = self.ack_for(envelope_id)
            return ack.time if ack is not None else None

        def describe() -> str:
            acked = [ack.envelope_id for ack in self.socket_acks]
            return f"envelope {envelope_id} not acknowledged within {timeout}s; acked {acked}"

        return await self._wait(find, timeout, describe)

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

    # --- from the test side ----------------------------------------------------------------

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

    async def _close_sockets(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in self._connections:
            if not conn.ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(code=1001, message=b"fake closing"), 2)

    # --- the connection --------------------------------------------------------------------

    def _apps_connections_open(self, call: RecordedCall) -> Json:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        return {"url": f"{self.socket_url}?ticket={ticket}&app_id={self.app_id}"}

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            self.socket_rejected += 1
            self._notify()
            return web.Response(status=401, text="invalid or missing ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _SocketConnection(ws, ticket, time.monotonic())
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
