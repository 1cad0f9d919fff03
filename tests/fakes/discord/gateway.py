"""The Discord fake's gateway: the websocket (HELLO, IDENTIFY, RESUME, heartbeats, member
requests), sessions and their shards, what each session's intents let it see, and the
events a test sends through it (a user posts, edits or deletes a message)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord.payloads import ready_payload
from tests.fakes.discord.protocol import (
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    OP_DISPATCH,
    OP_HEARTBEAT,
    OP_HEARTBEAT_ACK,
    OP_HELLO,
    OP_IDENTIFY,
    OP_INVALID_SESSION,
    OP_RECONNECT,
    OP_REQUEST_GUILD_MEMBERS,
    OP_RESUME,
    Json,
    iso,
)
from tests.fakes.discord.state import DiscordState
from tests.fakes.transport import OrderedSocket


class _Connection(OrderedSocket):
    """One gateway websocket, zlib-compressed when the client asked for it."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        super().__init__(ws)
        self._zlib = zlib.compressobj() if compress else None
        self.session: _Session | None = None

    @property
    def open(self) -> bool:
        return not self.ws.closed

    def encode(self, text: str) -> str | bytes:
        if self._zlib is None:
            return text
        return self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    async def send(self, payload: Json) -> bool:
        return await self.send_text(json.dumps(payload, separators=(",", ":")))

    async def send_op(self, op: int, data: Any = None) -> bool:
        """A payload that is not a dispatch (no sequence number, no event name)."""
        return await self.send({"op": op, "d": data, "s": None, "t": None})


@dataclass
class _Session:
    id: str
    intents: int
    shard: list[int]
    seq: int = 0
    log: list[Json] = field(default_factory=list)
    conn: _Connection | None = None


class Gateway(DiscordState):
    """The gateway half of the fake. Recorded: `gateway_received` (every payload from a
    client), `gateway_queries` (each connection's query string), `dispatched` (every
    event sent) and the identify, resume and heartbeat counts."""

    def _init_gateway(
        self, *, heartbeat_interval_ms: int, compress_gateway: bool, echo_own_messages: bool
    ) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.compress_gateway = compress_gateway
        self.echo_own_messages = echo_own_messages
        self.gateway_received: list[Json] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.dispatched: list[Json] = []
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeat_count = 0
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self.shards = 1  # what GET /gateway/bot recommends
        self._connected = asyncio.Event()

    # --- from the test side ----------------------------------------------------------------

    async def wait_for_connection(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until some client has identified (or resumed) and is connected."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def dispatch(
        self,
        event: str,
        data: Json,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> Json:
        """Send a raw dispatch event to every session; waits for a live connection first."""
        await self.wait_for_connection(timeout)
        await self._dispatch(event, data)
        return data

    async def send_message(
        self,
        channel_id: int | str,
        author_id: int | str,
        content: str,
        *,
        mentions_bot: bool = False,
        message_id: int | str | None = None,
        reply_to: int | str | None = None,
        reply_ping: bool = True,
        timestamp: datetime | None = None,
    ) -> Json:
        """A user posts a message: stored, then MESSAGE_CREATE. Returns the gateway payload.
        A reply (`reply_to`) pings the replied-to author unless `reply_ping` is off, as
        the client's "@ on" toggle does."""
        cid = str(channel_id)
        if mentions_bot and not re.search(rf"<@!?{self.bot_id}>", content):
            content = f"<@{self.bot_id}> {content}"
        mid = str(message_id) if message_id is not None else self._new_id(timestamp)
        author = self._user(author_id)
        reference = None
        if reply_to is not None:
            reference = self._with_guild(cid, {"message_id": str(reply_to), "channel_id": cid})
        allowed = None if reply_ping else {"parse": ["users", "roles"], "replied_user": False}
        message = self._message(
            cid, author, content, message_id=mid, reference=reference, allowed_mentions=allowed
        )
        self._store(cid, message)
        return await self.dispatch("MESSAGE_CREATE", self._gateway_message(message))

    async def edit_message(
        self, channel_id: int | str, message_id: int | str, content: str
    ) -> Json:
        """A stored message's text changes: MESSAGE_UPDATE with the full message."""
        message = self._find_message(str(channel_id), str(message_id))
        if message is None:
            raise KeyError(f"no message {message_id} in channel {channel_id}")
        message["content"] = content
        message["edited_timestamp"] = iso(datetime.now(UTC))
        message["mentions"] = self._mentions_in(content, None)
        return await self.dispatch("MESSAGE_UPDATE", self._gateway_message(message))

    async def delete_message(self, channel_id: int | str, message_id: int | str) -> Json:
        cid, mid = str(channel_id), str(message_id)
        self._unstore(cid, [mid])
        return await self.dispatch(
            "MESSAGE_DELETE", self._with_guild(cid, {"id": mid, "channel_id": cid})
        )

    async def bulk_delete(self, channel_id: int | str, message_ids: Sequence[int | str]) -> Json:
        cid = str(channel_id)
        ids = [str(i) for i in message_ids]
        self._unstore(cid, ids)
        return await self.dispatch(
            "MESSAGE_DELETE_BULK", self._with_guild(cid, {"ids": ids, "channel_id": cid})
        )

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client drops the socket and RESUMEs."""
        for conn in list(self._connections):
            if conn.session is not None:
                await conn.send_op(OP_RECONNECT)

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway socket from the server side (4000: client may resume)."""
        for conn in list(self._connections):
            await conn.ws.close(code=code)

    async def _close_connections(self) -> None:
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001, message=b"fake shutting down"), 2)

    # --- the websocket ---------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        self.gateway_queries.append(dict(request.query))
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = self.compress_gateway and request.query.get("compress") == "zlib-stream"
        conn = _Connection(ws, compress)
        self._connections.add(conn)
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake-gateway"]}
            await conn.send_op(OP_HELLO, hello)
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    payload = json.loads(msg.data)
                    self.gateway_received.append(payload)
                    await self._on_gateway_payload(conn, payload)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._connections.discard(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            self._update_connected()
        return ws

    def _update_connected(self) -> None:
        if any(s.conn is not None and s.conn.open for s in self._sessions.values()):
            self._connected.set()
        else:
            self._connected.clear()

    def _token_ok(self, token: Any) -> bool:
        return isinstance(token, str) and bool(token) and (self.token in (None, token))

    async def _on_gateway_payload(self, conn: _Connection, payload: Json) -> None:
        op = payload.get("op")
        raw = payload.get("d")
        data: Json = raw if isinstance(raw, dict) else {}
        if op == OP_HEARTBEAT:
            self.heartbeat_count += 1
            await conn.send_op(OP_HEARTBEAT_ACK)
        elif op == OP_IDENTIFY:
            await self._identify(conn, data)
        elif op == OP_RESUME:
            await self._resume(conn, data)
        elif op == OP_REQUEST_GUILD_MEMBERS:
            await self._request_members(conn, data)

    async def _identify(self, conn: _Connection, data: Json) -> None:
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        if not self._token_ok(data.get("token")):
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        self.identify_count += 1
        session = _Session(
            id=secrets.token_hex(16),
            intents=int(data.get("intents", 0)),
            shard=list(data.get("shard", [0, 1])),
        )
        self._sessions[session.id] = session
        session.conn = conn
        conn.session = session
        held = [gid for gid in self.guilds if self._holds(session, gid)]
        ready = ready_payload(
            self.bot_user, held, session.id, session.shard, self.gateway_url, self.app_id
        )
        await self._send_to(session, "READY", ready)
        if session.intents & INTENT_GUILDS:
            for gid in self.guilds:
                if self._holds(session, gid):
                    await self._send_to(session, "GUILD_CREATE", self._guild_create(gid))
        self._update_connected()

    async def _resume(self, conn: _Connection, data: Json) -> None:
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or not self._token_ok(data.get("token")):
            await conn.send_op(OP_INVALID_SESSION, False)
            return
        self.resume_count += 1
        if session.conn is not None and session.conn is not conn:
            await session.conn.ws.close(code=4000)
        session.conn = conn
        conn.session = session
        seq = int(data.get("seq") or 0)
        for payload in session.log:
            if int(payload["s"]) > seq:
                await conn.send(payload)
        await self._send_to(session, "RESUMED", {"_trace": ["fake-gateway"]})
        self._update_connected()

    async def _request_members(self, conn: _Connection, data: Json) -> None:
        if conn.session is None:
            return
        gid = str(data.get("guild_id"))
        if gid not in self.guilds:
            return
        user_ids = {str(u) for u in (data.get("user_ids") or [])}
        query = str(data.get("query") or "").lower()
        limit = int(data.get("limit") or 0)
        members = []
        for uid in [self.bot_id, *self.users]:
            user = self._user(uid)
            if user_ids and uid not in user_ids:
                continue
            if not user_ids and query and not str(user["username"]).lower().startswith(query):
                continue
            members.append(self._member_payload(gid, uid))
        if limit:
            members = members[:limit]
        chunk: Json = {
            "guild_id": gid,
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._send_to(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    # --- dispatching -----------------------------------------------------------------------

    def _visible(self, session: _Session, event: str, data: Json) -> Json | None:
        """What `session` would receive of this event, given its intents."""
        if not event.startswith("MESSAGE_"):
            return data
        in_guild = "guild_id" in data
        needed = INTENT_GUILD_MESSAGES if in_guild else INTENT_DIRECT_MESSAGES
        if not session.intents & needed:
            return None
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and "content" in data:
            author = data.get("author", {}).get("id")
            mentioned = any(m.get("id") == self.bot_id for m in data.get("mentions", []))
            privileged = session.intents & INTENT_MESSAGE_CONTENT
            if in_guild and not privileged and author != self.bot_id and not mentioned:
                data = copy.deepcopy(data)
                data.update(content="", embeds=[], attachments=[], components=[])
                data.pop("poll", None)
        return data

    async def _send_to(self, session: _Session, event: str, data: Json) -> None:
        visible = self._visible(session, event, data)
        if visible is None:
            return
        session.seq += 1
        payload: Json = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": visible}
        session.log.append(payload)
        self.dispatched.append(payload)
        if session.conn is not None:
            await session.conn.send(payload)

    async def _dispatch(self, event: str, data: Json) -> None:
        # As on Discord: a guild's events go to the one shard that holds the guild,
        # anything else (DMs) to shard 0.
        guild_id = data.get("guild_id")
        for session in list(self._sessions.values()):
            if self._holds(session, None if guild_id is None else str(guild_id)):
                await self._send_to(session, event, data)

    @staticmethod
    def _holds(session: _Session, guild_id: str | None) -> bool:
        shard, count = session.shard
        if guild_id is None:
            return shard == 0
        return (int(guild_id) >> 22) % count == shard

    async def _echo(self, event: str, data: Json) -> None:
        """The bot's own actions come back over the gateway, as on Discord."""
        if self.echo_own_messages:
            await self._dispatch(event, data)

    async def _echo_message(self, event: str, message: Json) -> None:
        """MESSAGE_CREATE or MESSAGE_UPDATE for a stored message the bot sent or edited."""
        await self._echo(event, self._gateway_message(message))
