"""A fake Discord (REST API and gateway) on 127.0.0.1, for driving a real discord.py client.

    async with FakeDiscord() as fake:
        with fake.patched_discord_py():
            client = discord.Client(intents=..., guild_ready_timeout=0.1)
            task = asyncio.create_task(client.start("test-token"))
            await client.wait_until_ready()
            await fake.send_message(fake.default_channel_id, "1001", "hello")
            request = await fake.wait_for_request(method="POST", path="/messages")
            await client.close()

discord.py is pointed at the fake through two class attributes: `discord.http.Route.BASE`
(REST, webhooks and interaction callbacks all build their URLs from it) and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` (a plain `Client` never asks REST for
the gateway URL; only `AutoShardedClient` calls `GET /gateway/bot`).

Payloads follow the Discord API v10 shapes closely enough for discord.py's parsers, and
the fake keeps the server-side rules a bot can trip over: the 3-second window to answer an
interaction, one answer per interaction, no followup before the answer, 2000 characters
per message, no empty message, the MESSAGE_CONTENT intent blanking other people's
messages, rate limits (429 with `Via`, `Retry-After` and `X-RateLimit-*`) on request, and
the bot's own messages echoed back over the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import math
import re
import secrets
import socket
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord.gateway
import discord.http
import pytest
import yarl
from aiohttp import BodyPartReader, WSMsgType, web

__all__ = [
    "ADMIN_USER_ID",
    "APP_ID",
    "BOT_ID",
    "DEFAULT_CHANNEL_ID",
    "DEFAULT_GUILD_ID",
    "MEMBER_USER_ID",
    "FakeDiscord",
    "RecordedFile",
    "RecordedRequest",
    "fake_discord",
]

DEFAULT_GUILD_ID = "111"
DEFAULT_CHANNEL_ID = "222"
ADMIN_USER_ID = "1001"
MEMBER_USER_ID = "1002"
BOT_ID = "999"
APP_ID = "888"

DISCORD_EPOCH_MS = 1_420_070_400_000
API_PREFIX = "/api/v10"
MAX_CONTENT = 2000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1
DEFAULT_MEMBER_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)
ADMIN_ROLE_PERMISSIONS = ADMINISTRATOR | MANAGE_CHANNELS | MANAGE_GUILD | MANAGE_MESSAGES

# Gateway intents.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

# Gateway opcodes.
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

# Interaction callback types.
CALLBACK_PONG = 1
CALLBACK_MESSAGE = 4
CALLBACK_DEFERRED_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE = 6
CALLBACK_UPDATE_MESSAGE = 7

FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

# Application command option types.
OPT_SUB_COMMAND = 1
OPT_SUB_COMMAND_GROUP = 2
OPT_STRING = 3
OPT_INTEGER = 4
OPT_BOOLEAN = 5
OPT_USER = 6
OPT_CHANNEL = 7
OPT_ROLE = 8
OPT_MENTIONABLE = 9
OPT_NUMBER = 10

_MENTION_RE = re.compile(r"<@!?(\d+)>")
_COMMAND_NAME_RE = re.compile(r"^[-_\w]{1,32}$")

Json = dict[str, Any]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _snowflake_time(snowflake: str) -> datetime:
    ms = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, UTC)


def _json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """JSON with Content-Type exactly `application/json`: discord.py compares the header
    verbatim and treats anything else (aiohttp adds "; charset=utf-8") as text."""
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _json_error(status: int, message: str, code: int, errors: Json | None = None) -> web.Response:
    body: Json = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return _json_response(body, status=status)


def _form_error(path: str, code: str, message: str) -> web.Response:
    """400 Invalid Form Body, as Discord nests it: {"errors": {"content": {"_errors": [...]}}}."""
    errors: Json = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path.split(".")):
        errors = {key: errors}
    return _json_error(400, "Invalid Form Body", 50035, errors)


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


@dataclass
class _RateLimit:
    route: str
    method: str | None
    retry_after: float
    is_global: bool
    remaining: int


@dataclass
class _Waiter:
    predicate: Callable[[RecordedRequest], bool]
    future: asyncio.Future[RecordedRequest]


class _Connection:
    """One gateway websocket. Sends are serialised: a zlib stream must stay in order."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        self.ws = ws
        self._zlib = zlib.compressobj() if compress else None
        self._lock = asyncio.Lock()
        self.session: _Session | None = None

    @property
    def open(self) -> bool:
        return not self.ws.closed

    async def send(self, payload: Json) -> bool:
        text = json.dumps(payload, separators=(",", ":"))
        async with self._lock:
            if self.ws.closed:
                return False
            try:
                if self._zlib is not None:
                    data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return False
        return True


@dataclass
class _Session:
    id: str
    intents: int
    shard: list[int]
    seq: int = 0
    log: list[Json] = field(default_factory=list)
    conn: _Connection | None = None


Handler = Callable[[web.Request, RecordedRequest, dict[str, str]], Awaitable[web.StreamResponse]]


class FakeDiscord:
    """A fake Discord: REST under `api_url`, the gateway at `gateway_url`.

    IDs are snowflake strings throughout (methods accept ints too). Everything the bot did
    is recorded: `requests` (every REST request), `tokens_seen` (Authorization headers),
    `unknown_routes`, `gateway_received` (every gateway payload from the client),
    `dispatched` (every event sent), `interactions` (by token), `commands` (synced app
    commands; key None for global, else the guild id), `channel_messages` (each
    channel's stored messages, oldest first, as REST returns them) and `versions` (each
    message's content as created and after each edit, in order: what a user saw of it).
    """

    def __init__(
        self,
        *,
        guilds: Mapping[int | str, Mapping[str, Any]] | None = None,
        users: Mapping[int | str, Mapping[str, Any]] | None = None,
        bot_id: int | str = BOT_ID,
        app_id: int | str = APP_ID,
        bot_name: str = "Tsuzuki",
        token: str | None = None,
        heartbeat_interval_ms: int = 41_250,
        compress_gateway: bool = True,
        interaction_ack_timeout: float = 3.0,
        echo_own_messages: bool = True,
    ) -> None:
        self.bot_id = str(bot_id)
        self.app_id = str(app_id)
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.compress_gateway = compress_gateway
        self.interaction_ack_timeout = interaction_ack_timeout
        self.echo_own_messages = echo_own_messages

        self._ids = itertools.count()
        self._last_id = 0

        self.bot_user: Json = self._user_payload(self.bot_id, bot_name, bot=True)
        self.users: dict[str, Json] = {}
        self._admins: set[str] = set()
        self._user_permissions: dict[str, int] = {}
        if users is None:
            users = {
                ADMIN_USER_ID: {"name": "alice", "admin": True},
                MEMBER_USER_ID: {"name": "bob", "admin": False},
            }
        for user_id, spec in users.items():
            self.add_user(
                user_id,
                spec.get("name", f"user{user_id}"),
                admin=bool(spec.get("admin", False)),
                bot=bool(spec.get("bot", False)),
                global_name=spec.get("global_name"),
                permissions=spec.get("permissions"),
            )

        self.guilds: dict[str, Json] = {}
        self.channels: dict[str, Json] = {}
        self._admin_role: dict[str, str] = {}
        self._bot_role: dict[str, str] = {}
        self.channel_messages: dict[str, list[Json]] = {}
        self.versions: dict[str, list[str]] = {}
        if guilds is None:
            guilds = {
                DEFAULT_GUILD_ID: {
                    "name": "Test Guild",
                    "channels": {DEFAULT_CHANNEL_ID: "general"},
                }
            }
        for guild_id, spec in guilds.items():
            self._add_guild(str(guild_id), spec)
        self._dm_channels: dict[str, str] = {}  # channel id -> user id

        self.commands: dict[str | None, list[Json]] = {}
        self.interactions: dict[str, InteractionRecord] = {}

        self.requests: list[RecordedRequest] = []
        self.tokens_seen: list[str] = []
        self.unknown_routes: list[str] = []
        self.gateway_received: list[Json] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.dispatched: list[Json] = []
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeat_count = 0

        self._rate_limits: list[_RateLimit] = []
        self._waiters: list[_Waiter] = []
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self.shards = 1  # what GET /gateway/bot recommends
        self._connected = asyncio.Event()

        self._runner: web.AppRunner | None = None
        self.port = 0
        self._saved_patch: tuple[str, yarl.URL] | None = None
        self._routes = self._route_table()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What `discord.http.Route.BASE` should be."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """What `DiscordWebSocket.DEFAULT_GATEWAY` should be (also the resume URL)."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def default_guild_id(self) -> str:
        return next(iter(self.guilds))

    @property
    def default_channel_id(self) -> str:
        guild = self.guilds[self.default_guild_id]
        return str(guild["channels"][0]["id"])

    async def start(self, port: int = 0) -> None:
        """Listens on `port` (0: any free one): a test can bring Discord up on the port
        a bot has been failing to reach."""
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_route("*", "/api/v{version:\\d+}/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def close(self) -> None:
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001, message=b"fake shutting down"), 2)
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.cancel()
        self._waiters.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.unpatch_discord_py()

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- pointing discord.py at the fake ---------------------------------------------------

    def patch_discord_py(self) -> None:
        """Set Route.BASE and DiscordWebSocket.DEFAULT_GATEWAY to the fake (process-wide)."""
        if self._saved_patch is None:
            self._saved_patch = (
                discord.http.Route.BASE,
                discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
            )
        discord.http.Route.BASE = self.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    def unpatch_discord_py(self) -> None:
        """Put back what `patch_discord_py` replaced (no-op if it was not called)."""
        if self._saved_patch is not None:
            base, gateway = self._saved_patch
            discord.http.Route.BASE = base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
            self._saved_patch = None

    @contextlib.contextmanager
    def patched_discord_py(self) -> Iterator[FakeDiscord]:
        self.patch_discord_py()
        try:
            yield self
        finally:
            self.unpatch_discord_py()

    # --- configuration ---------------------------------------------------------------------

    def add_user(
        self,
        user_id: int | str,
        name: str,
        *,
        admin: bool = False,
        bot: bool = False,
        global_name: str | None = None,
        permissions: int | None = None,
    ) -> Json:
        """A user, member of every guild. Admins hold a role with ADMINISTRATOR and
        MANAGE_CHANNELS and get every permission in interactions (as Discord resolves it)."""
        uid = str(user_id)
        self.users[uid] = self._user_payload(uid, name, bot=bot, global_name=global_name)
        if admin:
            self._admins.add(uid)
        else:
            self._admins.discard(uid)
        if permissions is not None:
            self._user_permissions[uid] = permissions
        return self.users[uid]

    def add_channel(
        self, guild_id: int | str, channel_id: int | str, name: str, **extra: Any
    ) -> Json:
        """A text channel (or `type=...`) in a configured guild. Call before the client
        connects, or it arrives without a CHANNEL_CREATE."""
        gid, cid = str(guild_id), str(channel_id)
        guild = self.guilds[gid]
        channel: Json = {
            "id": cid,
            "type": 0,
            "guild_id": gid,
            "name": name,
            "position": len(guild["channels"]),
            "permission_overwrites": [],
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        channel.update(extra)
        guild["channels"].append(channel)
        self.channels[cid] = channel
        self.channel_messages.setdefault(cid, [])
        return channel

    def open_dm(self, user_id: int | str) -> str:
        """The id of the DM channel between the bot and a user (created on first use)."""
        uid = str(user_id)
        for cid, other in self._dm_channels.items():
            if other == uid:
                return cid
        cid = self._new_id()
        self._dm_channels[cid] = uid
        self.channel_messages.setdefault(cid, [])
        return cid

    def rate_limit_next(
        self,
        route: str,
        retry_after: float = 0.5,
        *,
        method: str | None = None,
        is_global: bool = False,
        count: int = 1,
    ) -> None:
        """The next `count` requests whose "METHOD /path" contains `route` answer 429."""
        self._rate_limits.append(
            _RateLimit(route, method.upper() if method else None, retry_after, is_global, count)
        )

    def versions_of(self, message_id: int | str) -> list[str]:
        """What a message showed, in order: its content when created (a deferred
        interaction's "thinking…" answer: "") and after each edit."""
        return list(self.versions.get(str(message_id), []))

    def original_versions(self, token: str) -> list[str]:
        """What an interaction's original answer showed, in order (see versions_of)."""
        original = self.interaction(token).original
        return self.versions_of(original["id"]) if original is not None else []

    def messages(self, channel_id: int | str) -> list[Json]:
        """A channel's stored messages, oldest first (REST shape)."""
        return self.channel_messages.setdefault(str(channel_id), [])

    def add_history(
        self,
        channel_id: int | str,
        author_id: int | str,
        content: str,
        *,
        timestamp: datetime | None = None,
        message_id: int | str | None = None,
    ) -> Json:
        """Store a past message without dispatching it (for history / backfill)."""
        cid = str(channel_id)
        mid = str(message_id) if message_id is not None else self._new_id(timestamp)
        message = self._message(cid, self._user(author_id), content, message_id=mid)
        self._store(cid, message)
        return copy.deepcopy(message)

    # --- waiting for the bot ---------------------------------------------------------------

    async def wait_for_request(
        self,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 (the test-facing API reads better this way)
        *,
        method: str | None = None,
        path: str | None = None,
        start: int = 0,
    ) -> RecordedRequest:
        """The first request (from index `start` of `requests`, including those already
        recorded) with the given method, containing `path`, and satisfying `predicate`."""

        def check(request: RecordedRequest) -> bool:
            return request.matches(method, path) and (predicate is None or predicate(request))

        for request in self.requests[start:]:
            if check(request):
                return request
        future: asyncio.Future[RecordedRequest] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(check, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            seen = [f"{r.method} {r.path} -> {r.status}" for r in self.requests[start:]]
            raise TimeoutError(f"no matching request within {timeout}s; saw {seen}") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def wait_for_connection(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until some client has identified (or resumed) and is connected."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    # --- gateway events from the test side -------------------------------------------------

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
        timestamp: datetime | None = None,
    ) -> Json:
        """A user posts a message: stored, then MESSAGE_CREATE. Returns the gateway payload."""
        cid = str(channel_id)
        if mentions_bot and not re.search(rf"<@!?{self.bot_id}>", content):
            content = f"<@{self.bot_id}> {content}"
        mid = str(message_id) if message_id is not None else self._new_id(timestamp)
        author = self._user(author_id)
        reference = None
        if reply_to is not None:
            guild_id = self._guild_of(cid)
            reference = {"message_id": str(reply_to), "channel_id": cid}
            if guild_id is not None:
                reference["guild_id"] = guild_id
        message = self._message(cid, author, content, message_id=mid, reference=reference)
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
        message["edited_timestamp"] = _iso(datetime.now(UTC))
        message["mentions"] = self._mentions_in(content, None)
        return await self.dispatch("MESSAGE_UPDATE", self._gateway_message(message))

    async def delete_message(self, channel_id: int | str, message_id: int | str) -> Json:
        cid, mid = str(channel_id), str(message_id)
        self._unstore(cid, [mid])
        data: Json = {"id": mid, "channel_id": cid}
        guild_id = self._guild_of(cid)
        if guild_id is not None:
            data["guild_id"] = guild_id
        return await self.dispatch("MESSAGE_DELETE", data)

    async def bulk_delete(self, channel_id: int | str, message_ids: Sequence[int | str]) -> Json:
        cid = str(channel_id)
        ids = [str(i) for i in message_ids]
        self._unstore(cid, ids)
        data: Json = {"ids": ids, "channel_id": cid}
        guild_id = self._guild_of(cid)
        if guild_id is not None:
            data["guild_id"] = guild_id
        return await self.dispatch("MESSAGE_DELETE_BULK", data)

    async def slash_command(
        self,
        channel_id: int | str,
        user_id: int | str,
        name: str,
        options: Mapping[str, Any] | Sequence[Json] | None = None,
        *,
        subcommand: str | None = None,
        group: str | None = None,
        permissions: int | None = None,
        locale: str = "en-US",
    ) -> Json:
        """A user runs a slash command: INTERACTION_CREATE (type 2). `name` may be
        "settings set" (a subcommand) or "a b c" (group and subcommand). `options` is a
        {name: value} mapping (types come from the synced command, else from the Python
        values) or a list of raw option objects. Returns the interaction payload."""
        cid, uid = str(channel_id), str(user_id)
        parts = name.split()
        if len(parts) == 3:
            name, group, subcommand = parts
        elif len(parts) == 2:
            name, subcommand = parts
        guild_id = self._guild_of(cid)
        command, command_guild = self._synced_command(name, guild_id)
        schema: list[Json] = list(command.get("options", [])) if command else []
        path: list[tuple[int, str]] = []
        if group is not None:
            path.append((OPT_SUB_COMMAND_GROUP, group))
        if subcommand is not None:
            path.append((OPT_SUB_COMMAND, subcommand))
        for _, part in path:
            schema = next((o.get("options", []) for o in schema if o.get("name") == part), [])

        resolved: Json = {}
        leaf = self._interaction_options(options, schema, guild_id, resolved)
        for kind, part in reversed(path):
            leaf = [{"type": kind, "name": part, "options": leaf}]

        user = self._user(uid)
        perms = permissions if permissions is not None else self._permissions_of(uid)
        data: Json = {
            "id": command["id"] if command else self._new_id(),
            "name": name,
            "type": 1,
        }
        if leaf:
            data["options"] = leaf
        if resolved:
            data["resolved"] = resolved
        if command_guild is not None:
            data["guild_id"] = command_guild

        interaction_id = self._new_id()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        channel = copy.deepcopy(self._channel_payload(cid))
        channel["permissions"] = str(perms)
        payload: Json = {
            "id": interaction_id,
            "application_id": self.app_id,
            "type": 2,
            "data": data,
            "channel_id": cid,
            "channel": channel,
            "token": token,
            "version": 1,
            "app_permissions": str(self._bot_permissions()),
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if guild_id is not None:
            payload["guild_id"] = guild_id
            payload["guild"] = {"id": guild_id, "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["authorizing_integration_owners"] = {"0": guild_id}
            payload["context"] = 0
            member = self._member_payload(guild_id, uid)
            member["permissions"] = str(perms)
            payload["member"] = member
        else:
            payload["user"] = user
            payload["authorizing_integration_owners"] = {"1": uid}
            payload["context"] = 1
        self.interactions[token] = InteractionRecord(
            id=interaction_id,
            token=token,
            channel_id=cid,
            guild_id=guild_id,
            user_id=uid,
            name=" ".join([name, *(p for _, p in path)]),
            dispatched_at=time.monotonic(),
            payload=payload,
        )
        return await self.dispatch("INTERACTION_CREATE", payload)

    def interaction(self, token_or_id: str) -> InteractionRecord:
        """The record of a dispatched interaction, by token or id."""
        if token_or_id in self.interactions:
            return self.interactions[token_or_id]
        for record in self.interactions.values():
            if record.id == token_or_id:
                return record
        raise KeyError(token_or_id)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client drops the socket and RESUMEs."""
        for conn in list(self._connections):
            if conn.session is not None:
                await conn.send({"op": OP_RECONNECT, "d": None, "s": None, "t": None})

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway socket from the server side (4000: client may resume)."""
        for conn in list(self._connections):
            await conn.ws.close(code=code)

    # --- payload builders ------------------------------------------------------------------

    def _new_id(self, at: datetime | None = None) -> str:
        if at is None:
            ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
            value = max((ms << 22) | (next(self._ids) & 0xFFF), self._last_id + 1)
            self._last_id = value
        else:
            ms = int(at.timestamp() * 1000) - DISCORD_EPOCH_MS
            value = (ms << 22) | (next(self._ids) & 0x3FFFFF)
        return str(value)

    @staticmethod
    def _user_payload(
        user_id: str, name: str, *, bot: bool = False, global_name: str | None = None
    ) -> Json:
        user: Json = {
            "id": user_id,
            "username": name,
            "discriminator": "0",
            "global_name": global_name if global_name is not None else (None if bot else name),
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "primary_guild": None,
            "collectibles": None,
        }
        if bot:
            user["bot"] = True
        return user

    def _user(self, user_id: int | str) -> Json:
        uid = str(user_id)
        if uid == self.bot_id:
            return self.bot_user
        if uid not in self.users:
            self.add_user(uid, f"user{uid}")
        return self.users[uid]

    def _add_guild(self, guild_id: str, spec: Mapping[str, Any]) -> None:
        admin_role, bot_role = self._new_id(), self._new_id()
        self._admin_role[guild_id] = admin_role
        self._bot_role[guild_id] = bot_role
        roles = [
            self._role(guild_id, "@everyone", DEFAULT_MEMBER_PERMISSIONS, 0),
            self._role(admin_role, "Admin", ADMIN_ROLE_PERMISSIONS, 2),
            self._role(bot_role, "Tsuzuki", DEFAULT_MEMBER_PERMISSIONS | MANAGE_MESSAGES, 1),
        ]
        roles[2]["managed"] = True
        roles[2]["tags"] = {"bot_id": self.bot_id}
        guild: Json = {
            "id": guild_id,
            "name": spec.get("name", f"guild{guild_id}"),
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(spec.get("owner_id", "1")),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "roles": roles,
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_members": 500_000,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": spec.get("locale", "en-US"),
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "channels": [],
        }
        self.guilds[guild_id] = guild
        for channel_id, channel_spec in dict(spec.get("channels", {})).items():
            if isinstance(channel_spec, str):
                self.add_channel(guild_id, channel_id, channel_spec)
            else:
                extra = dict(channel_spec)
                name = extra.pop("name", f"channel{channel_id}")
                self.add_channel(guild_id, channel_id, name, **extra)

    @staticmethod
    def _role(role_id: str, name: str, permissions: int, position: int) -> Json:
        return {
            "id": role_id,
            "name": name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": str(permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    def _member_payload(self, guild_id: str, user_id: str, *, with_user: bool = True) -> Json:
        roles: list[str] = []
        if user_id == self.bot_id:
            roles.append(self._bot_role[guild_id])
        elif user_id in self._admins:
            roles.append(self._admin_role[guild_id])
        member: Json = {
            "roles": roles,
            "nick": None,
            "avatar": None,
            "banner": None,
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = self._user(user_id)
        return member

    def _permissions_of(self, user_id: str) -> int:
        if user_id in self._user_permissions:
            return self._user_permissions[user_id]
        return ALL_PERMISSIONS if user_id in self._admins else DEFAULT_MEMBER_PERMISSIONS

    @staticmethod
    def _bot_permissions() -> int:
        return DEFAULT_MEMBER_PERMISSIONS | MANAGE_MESSAGES

    def _guild_create(self, guild_id: str) -> Json:
        guild = copy.deepcopy(self.guilds[guild_id])
        member_ids = [self.bot_id, *self.users]
        guild.update(
            {
                "joined_at": "2024-01-01T00:00:00.000000+00:00",
                "large": False,
                "unavailable": False,
                "member_count": len(member_ids),
                "voice_states": [],
                "members": [self._member_payload(guild_id, uid) for uid in member_ids],
                "threads": [],
                "presences": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
                "embedded_activities": [],
                "lazy": True,
            }
        )
        return guild

    def _guild_of(self, channel_id: str) -> str | None:
        channel = self.channels.get(channel_id)
        return str(channel["guild_id"]) if channel is not None else None

    def _channel_payload(self, channel_id: str) -> Json:
        if channel_id in self.channels:
            return self.channels[channel_id]
        if channel_id in self._dm_channels:
            return {
                "id": channel_id,
                "type": 1,
                "last_message_id": None,
                "flags": 0,
                "recipients": [self._user(self._dm_channels[channel_id])],
            }
        raise KeyError(f"unknown channel {channel_id}")

    def _known_channel(self, channel_id: str) -> bool:
        return channel_id in self.channels or channel_id in self._dm_channels

    def _mentions_in(self, content: str, allowed: Json | None) -> list[Json]:
        """Users mentioned in `content`, as far as `allowed_mentions` lets them ping."""
        ids = list(dict.fromkeys(_MENTION_RE.findall(content)))
        if allowed is not None:
            parse = allowed.get("parse", [])
            listed = {str(u) for u in allowed.get("users", [])}
            ids = [i for i in ids if "users" in parse or i in listed]
        return [self._user(i) for i in ids if i == self.bot_id or i in self.users]

    def _message(
        self,
        channel_id: str,
        author: Json,
        content: str,
        *,
        message_id: str,
        reference: Json | None = None,
        allowed_mentions: Json | None = None,
        extra: Json | None = None,
    ) -> Json:
        """A message as REST returns it (no guild_id or member)."""
        mentions = self._mentions_in(content, allowed_mentions)
        message: Json = {
            "id": message_id,
            "channel_id": channel_id,
            "type": 0,
            "author": copy.deepcopy(author),
            "content": content,
            "timestamp": _iso(_snowflake_time(message_id)),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "flags": 0,
        }
        if reference is not None:
            message["type"] = 19
            message["message_reference"] = {"type": 0, **reference}
            referenced = self._find_message(
                str(reference.get("channel_id", channel_id)), str(reference["message_id"])
            )
            message["referenced_message"] = copy.deepcopy(referenced)
            replied_ping = allowed_mentions is None or allowed_mentions.get("replied_user", False)
            if referenced is not None and replied_ping:
                replied = referenced["author"]
                if all(m["id"] != replied["id"] for m in mentions):
                    mentions.append(copy.deepcopy(replied))
        if extra:
            message.update(extra)
        self.versions[message_id] = [content]
        return message

    def _gateway_message(self, message: Json) -> Json:
        """REST message -> MESSAGE_CREATE/UPDATE payload (adds guild_id and members)."""
        data = copy.deepcopy(message)
        guild_id = self._guild_of(str(message["channel_id"]))
        if guild_id is not None:
            data["guild_id"] = guild_id
            author_id = str(data["author"]["id"])
            if "webhook_id" not in data:
                data["member"] = self._member_payload(guild_id, author_id, with_user=False)
            for mention in data["mentions"]:
                mention["member"] = self._member_payload(
                    guild_id, str(mention["id"]), with_user=False
                )
        return data

    def _store(self, channel_id: str, message: Json) -> None:
        messages = self.channel_messages.setdefault(channel_id, [])
        messages.append(message)
        messages.sort(key=lambda m: int(m["id"]))
        channel = self.channels.get(channel_id)
        if channel is not None:
            channel["last_message_id"] = messages[-1]["id"]

    def _unstore(self, channel_id: str, ids: Sequence[str]) -> None:
        gone = set(ids)
        messages = self.channel_messages.setdefault(channel_id, [])
        messages[:] = [m for m in messages if m["id"] not in gone]

    def _find_message(self, channel_id: str, message_id: str) -> Json | None:
        for message in self.channel_messages.get(channel_id, []):
            if message["id"] == message_id:
                return message
        return None

    def _synced_command(self, name: str, guild_id: str | None) -> tuple[Json | None, str | None]:
        if guild_id is not None:
            for command in self.commands.get(guild_id, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command, guild_id
        for command in self.commands.get(None, []):
            if command["name"] == name and command.get("type", 1) == 1:
                return command, None
        return None, None

    def _interaction_options(
        self,
        options: Mapping[str, Any] | Sequence[Json] | None,
        schema: list[Json],
        guild_id: str | None,
        resolved: Json,
    ) -> list[Json]:
        if options is None:
            return []
        if not isinstance(options, Mapping):
            return [dict(o) for o in options]
        types = {str(o["name"]): int(o.get("type", OPT_STRING)) for o in schema}
        result: list[Json] = []
        for name, value in options.items():
            kind = types.get(name)
            if kind is None:
                if isinstance(value, bool):
                    kind = OPT_BOOLEAN
                elif isinstance(value, int):
                    kind = OPT_INTEGER
                elif isinstance(value, float):
                    kind = OPT_NUMBER
                else:
                    kind = OPT_STRING
            if kind in (OPT_USER, OPT_MENTIONABLE) and str(value) in {*self.users, self.bot_id}:
                uid = str(value)
                resolved.setdefault("users", {})[uid] = self._user(uid)
                if guild_id is not None:
                    member = self._member_payload(guild_id, uid, with_user=False)
                    member["permissions"] = str(self._permissions_of(uid))
                    resolved.setdefault("members", {})[uid] = member
                value = uid
            elif kind == OPT_CHANNEL and self._known_channel(str(value)):
                channel = copy.deepcopy(self._channel_payload(str(value)))
                channel["permissions"] = str(ALL_PERMISSIONS)
                resolved.setdefault("channels", {})[str(value)] = channel
                value = str(value)
            elif kind == OPT_ROLE and guild_id is not None:
                for role in self.guilds[guild_id]["roles"]:
                    if role["id"] == str(value):
                        resolved.setdefault("roles", {})[role["id"]] = role
                value = str(value)
            result.append({"name": name, "type": kind, "value": value})
        return result

    # --- gateway ---------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        self.gateway_queries.append(dict(request.query))
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = self.compress_gateway and request.query.get("compress") == "zlib-stream"
        conn = _Connection(ws, compress)
        self._connections.add(conn)
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake-gateway"]}
            await conn.send({"op": OP_HELLO, "d": hello, "s": None, "t": None})
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
            await conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
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
        ready: Json = {
            "v": 10,
            "user": {**self.bot_user, "verified": True, "mfa_enabled": False, "email": None},
            "guilds": [
                {"id": gid, "unavailable": True} for gid in self.guilds if self._holds(session, gid)
            ],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "shard": session.shard,
            "application": {"id": self.app_id, "flags": 1 << 19},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "auth": {},
            "_trace": ["fake-gateway"],
        }
        await self._send_to(session, "READY", ready)
        if session.intents & INTENT_GUILDS:
            for gid in self.guilds:
                if self._holds(session, gid):
                    await self._send_to(session, "GUILD_CREATE", self._guild_create(gid))
        self._update_connected()

    async def _resume(self, conn: _Connection, data: Json) -> None:
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or not self._token_ok(data.get("token")):
            await conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
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

    # --- REST plumbing ---------------------------------------------------------------------

    def _route_table(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        snow = r"(?P<{}>\d+)"
        app = snow.format("app_id")
        guild = snow.format("guild_id")
        channel = snow.format("channel_id")
        message = snow.format("message_id")
        command = snow.format("command_id")
        token = r"(?P<token>[^/]+)"
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/users/@me", self._get_me),
            ("GET", "/users/" + snow.format("user_id"), self._get_user),
            ("POST", "/users/@me/channels", self._create_dm),
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", f"/applications/{app}/commands", self._get_commands),
            ("PUT", f"/applications/{app}/commands", self._put_commands),
            ("POST", f"/applications/{app}/commands", self._post_command),
            ("GET", f"/applications/{app}/commands/{command}", self._get_command),
            ("DELETE", f"/applications/{app}/commands/{command}", self._delete_command),
            ("GET", f"/applications/{app}/guilds/{guild}/commands", self._get_commands),
            ("PUT", f"/applications/{app}/guilds/{guild}/commands", self._put_commands),
            ("POST", f"/applications/{app}/guilds/{guild}/commands", self._post_command),
            ("GET", f"/applications/{app}/guilds/{guild}/commands/{command}", self._get_command),
            (
                "DELETE",
                f"/applications/{app}/guilds/{guild}/commands/{command}",
                self._delete_command,
            ),
            ("GET", f"/channels/{channel}", self._get_channel),
            ("GET", f"/channels/{channel}/messages", self._get_messages),
            ("POST", f"/channels/{channel}/messages", self._post_message),
            ("GET", f"/channels/{channel}/messages/{message}", self._get_message),
            ("PATCH", f"/channels/{channel}/messages/{message}", self._patch_message),
            ("DELETE", f"/channels/{channel}/messages/{message}", self._delete_message),
            ("POST", f"/channels/{channel}/messages/bulk-delete", self._bulk_delete),
            ("POST", f"/channels/{channel}/typing", self._no_content),
            (
                "PUT",
                f"/channels/{channel}/messages/{message}/reactions/[^/]+/@me",
                self._no_content,
            ),
            (
                "DELETE",
                f"/channels/{channel}/messages/{message}/reactions/[^/]+/@me",
                self._no_content,
            ),
            ("GET", f"/guilds/{guild}", self._get_guild),
            ("GET", f"/guilds/{guild}/channels", self._get_guild_channels),
            ("GET", f"/guilds/{guild}/roles", self._get_guild_roles),
            ("GET", f"/guilds/{guild}/members/" + snow.format("user_id"), self._get_member),
            (
                "POST",
                f"/interactions/{snow.format('interaction_id')}/{token}/callback",
                self._callback,
            ),
            ("POST", f"/webhooks/{app}/{token}", self._execute_webhook),
            (
                "GET",
                f"/webhooks/{app}/{token}/messages/(?P<message_id>@original|\\d+)",
                self._get_wh_message,
            ),
            (
                "PATCH",
                f"/webhooks/{app}/{token}/messages/(?P<message_id>@original|\\d+)",
                self._edit_wh_message,
            ),
            (
                "DELETE",
                f"/webhooks/{app}/{token}/messages/(?P<message_id>@original|\\d+)",
                self._delete_wh_message,
            ),
        ]
        return [(method, re.compile(pattern), handler) for method, pattern, handler in table]

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        path = "/" + request.match_info["tail"]
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        auth = request.headers.get("Authorization")
        if auth is not None:
            self.tokens_seen.append(auth)
        recorded = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            json=None,
            headers=headers,
            time=arrived,
        )
        try:
            response = await self._answer(request, recorded, auth)
        except Exception as exc:  # a bug in the fake: answer 500 and keep it visible
            response = _json_error(500, f"fake error: {exc!r}", 0)
        response.headers["Via"] = "1.1 google"
        recorded.status = response.status
        if isinstance(response, web.Response) and response.body is not None:
            with contextlib.suppress(ValueError, TypeError):
                recorded.response = json.loads(response.text or "null")
        self.requests.append(recorded)
        for waiter in list(self._waiters):
            if not waiter.future.done() and waiter.predicate(recorded):
                waiter.future.set_result(recorded)
        return response

    async def _answer(
        self, request: web.Request, recorded: RecordedRequest, auth: str | None
    ) -> web.StreamResponse:
        try:
            await self._read_body(request, recorded)
        except ValueError:
            return _json_error(400, "The request body contains invalid JSON.", 50109)

        limited = self._take_rate_limit(recorded)
        if limited is not None:
            return self._too_many_requests(limited)

        method_matched = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(recorded.path)
            if match is None:
                continue
            if method != recorded.method:
                method_matched = True
                continue
            public = recorded.path.startswith(("/interactions/", "/webhooks/"))
            if not public and not self._authorised(auth):
                return _json_error(401, "401: Unauthorized", 0)
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            return await handler(request, recorded, params)
        self.unknown_routes.append(f"{recorded.method} {recorded.path}")
        if method_matched:
            return _json_error(405, "405: Method Not Allowed", 0)
        return _json_error(404, "Unknown route", 0)

    def _authorised(self, auth: str | None) -> bool:
        if auth is None or not auth.startswith("Bot "):
            return False
        return self.token is None or auth == f"Bot {self.token}"

    @staticmethod
    async def _read_body(request: web.Request, recorded: RecordedRequest) -> None:
        if not request.can_read_body:
            return
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                data = await part.read()
                if part.name == "payload_json":
                    recorded.json = json.loads(data)
                else:
                    recorded.files.append(
                        RecordedFile(
                            field=part.name or "",
                            filename=part.filename,
                            content_type=part.headers.get("Content-Type"),
                            data=bytes(data),
                        )
                    )
            return
        raw = await request.read()
        if raw:
            recorded.json = json.loads(raw)

    def _take_rate_limit(self, recorded: RecordedRequest) -> _RateLimit | None:
        key = f"{recorded.method} {recorded.path}"
        for limit in self._rate_limits:
            if limit.route in key and (limit.method is None or limit.method == recorded.method):
                limit.remaining -= 1
                if limit.remaining <= 0:
                    self._rate_limits.remove(limit)
                return limit
        return None

    @staticmethod
    def _too_many_requests(limit: _RateLimit) -> web.Response:
        body: Json = {
            "message": "You are being rate limited.",
            "retry_after": limit.retry_after,
            "global": limit.is_global,
        }
        headers = {
            "Retry-After": str(max(1, math.ceil(limit.retry_after))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + limit.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{limit.retry_after:.3f}",
            "X-RateLimit-Bucket": "fake" + secrets.token_hex(8),
            "X-RateLimit-Scope": "global" if limit.is_global else "user",
        }
        if limit.is_global:
            headers["X-RateLimit-Global"] = "true"
        return _json_response(body, status=429, headers=headers)

    @staticmethod
    async def _no_content(
        request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        return web.Response(status=204)

    # --- REST: users, gateway, application -------------------------------------------------

    async def _get_me(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        me = {**self.bot_user, "verified": True, "mfa_enabled": False, "email": None}
        return _json_response(me)

    async def _get_user(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        uid = params["user_id"]
        if uid != self.bot_id and uid not in self.users:
            return _json_error(404, "Unknown User", 10013)
        return _json_response(self._user(uid))

    async def _create_dm(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        body = recorded.json or {}
        cid = self.open_dm(str(body.get("recipient_id")))
        return _json_response(self._channel_payload(cid))

    async def _get_gateway(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        return _json_response({"url": self.gateway_url})

    async def _get_gateway_bot(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return _json_response(
            {"url": self.gateway_url, "shards": self.shards, "session_start_limit": limit}
        )

    async def _get_application(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        return _json_response(
            {
                "id": self.app_id,
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 1 << 19,
                "owner": self._user_payload("1", "owner"),
                "team": None,
                "bot": self.bot_user,
                "tags": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "approximate_guild_count": len(self.guilds),
                "integration_types_config": {"0": {}},
            }
        )

    # --- REST: application commands --------------------------------------------------------

    def _check_app(self, params: dict[str, str]) -> web.Response | None:
        if params["app_id"] != self.app_id:
            return _json_error(403, "Missing Access", 50001)
        gid = params.get("guild_id")
        if gid is not None and gid not in self.guilds:
            return _json_error(403, "Missing Access", 50001)
        return None

    def _command_errors(self, command: Json, where: str) -> web.Response | None:
        name = command.get("name")
        kind = int(command.get("type", 1))
        if not isinstance(name, str) or not _COMMAND_NAME_RE.fullmatch(name):
            return _form_error(f"{where}.name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
        if kind == 1:
            if name != name.lower():
                return _form_error(
                    f"{where}.name", "APPLICATION_COMMAND_INVALID_NAME", "Name must be lowercase"
                )
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                return _form_error(
                    f"{where}.description",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
        options = command.get("options") or []
        if len(options) > 25:
            return _form_error(f"{where}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer.")
        seen_optional = False
        for index, option in enumerate(options):
            if int(option.get("type", 0)) in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP):
                error = self._command_errors({**option, "type": 1}, f"{where}.options.{index}")
                if error is not None:
                    return error
                continue
            if option.get("required"):
                if seen_optional:
                    return _form_error(
                        f"{where}.options.{index}",
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
            error = self._command_errors({**option, "type": 1}, f"{where}.options.{index}")
            if error is not None:
                return error
        return None

    def _stored_command(self, body: Json, guild_id: str | None, old: Json | None) -> Json:
        command: Json = {
            "id": old["id"] if old else self._new_id(),
            "application_id": self.app_id,
            "version": self._new_id(),
            "type": int(body.get("type", 1)),
            "name": body["name"],
            "name_localizations": body.get("name_localizations"),
            "description": body.get("description", ""),
            "description_localizations": body.get("description_localizations"),
            "default_member_permissions": body.get("default_member_permissions"),
            "dm_permission": body.get("dm_permission", True),
            "contexts": body.get("contexts"),
            "integration_types": body.get("integration_types", [0]),
            "nsfw": bool(body.get("nsfw", False)),
        }
        if body.get("options"):
            command["options"] = body["options"]
        if guild_id is not None:
            command["guild_id"] = guild_id
        return command

    async def _put_commands(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        error = self._check_app(params)
        if error is not None:
            return error
        body = recorded.json
        if not isinstance(body, list):
            return _json_error(400, "Invalid Form Body", 50035)
        if len(body) > 100:
            return _form_error("_", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        for index, command in enumerate(body):
            error = self._command_errors(command, str(index))
            if error is not None:
                return error
        gid = params.get("guild_id")
        old = {(c["name"], c["type"]): c for c in self.commands.get(gid, [])}
        stored = [
            self._stored_command(c, gid, old.get((c["name"], int(c.get("type", 1))))) for c in body
        ]
        self.commands[gid] = stored
        return _json_response(stored)

    async def _post_command(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        error = self._check_app(params)
        if error is not None:
            return error
        body = recorded.json or {}
        error = self._command_errors(body, "_")
        if error is not None:
            return error
        gid = params.get("guild_id")
        commands = self.commands.setdefault(gid, [])
        kind = int(body.get("type", 1))
        old = next((c for c in commands if (c["name"], c["type"]) == (body["name"], kind)), None)
        command = self._stored_command(body, gid, old)
        if old is not None:
            commands[commands.index(old)] = command
            return _json_response(command)
        commands.append(command)
        return _json_response(command, status=201)

    async def _get_commands(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        error = self._check_app(params)
        if error is not None:
            return error
        return _json_response(self.commands.get(params.get("guild_id"), []))

    async def _get_command(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        error = self._check_app(params)
        if error is not None:
            return error
        for command in self.commands.get(params.get("guild_id"), []):
            if command["id"] == params["command_id"]:
                return _json_response(command)
        return _json_error(404, "Unknown application command", 10063)

    async def _delete_command(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        error = self._check_app(params)
        if error is not None:
            return error
        commands = self.commands.get(params.get("guild_id"), [])
        for command in commands:
            if command["id"] == params["command_id"]:
                commands.remove(command)
                return web.Response(status=204)
        return _json_error(404, "Unknown application command", 10063)

    # --- REST: channels, messages, guilds --------------------------------------------------

    async def _get_channel(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        cid = params["channel_id"]
        if not self._known_channel(cid):
            return _json_error(404, "Unknown Channel", 10003)
        return _json_response(self._channel_payload(cid))

    async def _get_messages(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        cid = params["channel_id"]
        if not self._known_channel(cid):
            return _json_error(404, "Unknown Channel", 10003)
        query = recorded.query
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            return _form_error("limit", "NUMBER_TYPE_COERCE", "Value is not int.")
        if not 1 <= limit <= 100:
            return _form_error("limit", "NUMBER_TYPE_MAX", "int value should be between 1 and 100.")
        messages = self.channel_messages.get(cid, [])  # oldest first
        if "around" in query:
            around, half = int(query["around"]), limit // 2
            older = [m for m in messages if int(m["id"]) < around][-half:] if half else []
            newer = [m for m in messages if int(m["id"]) >= around][: limit - len(older)]
            page = older + newer
        elif "before" in query:
            before = int(query["before"])
            page = [m for m in messages if int(m["id"]) < before][-limit:]
        elif "after" in query:
            after = int(query["after"])
            page = [m for m in messages if int(m["id"]) > after][:limit]
        else:
            page = messages[-limit:]
        return _json_response([copy.deepcopy(m) for m in reversed(page)])

    async def _get_message(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        message = self._find_message(params["channel_id"], params["message_id"])
        if message is None:
            return _json_error(404, "Unknown Message", 10008)
        return _json_response(message)

    def _content_errors(self, body: Json, files: int, *, creating: bool) -> web.Response | None:
        content = body.get("content")
        if content is not None and len(str(content)) > MAX_CONTENT:
            return _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )
        if creating and not (
            content
            or body.get("embeds")
            or body.get("sticker_ids")
            or body.get("components")
            or body.get("poll")
            or files
        ):
            return _json_error(400, "Cannot send an empty message", 50006)
        return None

    def _attachments(self, recorded: RecordedRequest, channel_id: str) -> list[Json]:
        result = []
        for file in recorded.files:
            aid = self._new_id()
            url = f"{self.base_url}/attachments/{channel_id}/{aid}/{file.filename}"
            result.append(
                {
                    "id": aid,
                    "filename": file.filename or "file",
                    "size": len(file.data),
                    "url": url,
                    "proxy_url": url,
                    "content_type": file.content_type,
                }
            )
        return result

    async def _post_message(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        cid = params["channel_id"]
        if not self._known_channel(cid):
            return _json_error(404, "Unknown Channel", 10003)
        body: Json = recorded.json if isinstance(recorded.json, dict) else {}
        error = self._content_errors(body, len(recorded.files), creating=True)
        if error is not None:
            return error
        reference = body.get("message_reference")
        if reference is not None:
            reference = {k: str(v) for k, v in reference.items() if k != "fail_if_not_exists"}
            reference.setdefault("channel_id", cid)
            target = self._find_message(reference["channel_id"], reference["message_id"])
            fail = body["message_reference"].get("fail_if_not_exists", True)
            if target is None and fail:
                return _form_error(
                    "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
        extra: Json = {
            "tts": bool(body.get("tts", False)),
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "flags": int(body.get("flags") or 0),
            "attachments": self._attachments(recorded, cid),
        }
        if body.get("nonce") is not None:
            extra["nonce"] = body["nonce"]
        message = self._message(
            cid,
            self.bot_user,
            str(body.get("content") or ""),
            message_id=self._new_id(),
            reference=reference,
            allowed_mentions=body.get("allowed_mentions"),
            extra=extra,
        )
        self._store(cid, message)
        await self._echo("MESSAGE_CREATE", self._gateway_message(message))
        return _json_response(message)

    async def _patch_message(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        cid = params["channel_id"]
        message = self._find_message(cid, params["message_id"])
        if message is None:
            return _json_error(404, "Unknown Message", 10008)
        if message["author"]["id"] != self.bot_id:
            return _json_error(403, "Cannot edit a message authored by another user", 50005)
        body: Json = recorded.json if isinstance(recorded.json, dict) else {}
        error = self._content_errors(body, 0, creating=False)
        if error is not None:
            return error
        self._apply_edit(message, body)
        await self._echo("MESSAGE_UPDATE", self._gateway_message(message))
        return _json_response(message)

    def _apply_edit(self, message: Json, body: Json) -> None:
        if "content" in body:
            message["content"] = body["content"] or ""
            self.versions.setdefault(message["id"], []).append(message["content"])
            message["mentions"] = self._mentions_in(
                message["content"], body.get("allowed_mentions")
            )
        for key in ("embeds", "components", "attachments"):
            if key in body:
                message[key] = body[key] or []
        if "flags" in body and body["flags"] is not None:
            message["flags"] = int(body["flags"]) | (message["flags"] & FLAG_EPHEMERAL)
        message["flags"] &= ~FLAG_LOADING
        message["edited_timestamp"] = _iso(datetime.now(UTC))

    async def _delete_message(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        cid, mid = params["channel_id"], params["message_id"]
        if self._find_message(cid, mid) is None:
            return _json_error(404, "Unknown Message", 10008)
        self._unstore(cid, [mid])
        data: Json = {"id": mid, "channel_id": cid}
        guild_id = self._guild_of(cid)
        if guild_id is not None:
            data["guild_id"] = guild_id
        await self._echo("MESSAGE_DELETE", data)
        return web.Response(status=204)

    async def _bulk_delete(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        cid = params["channel_id"]
        ids = [str(i) for i in (recorded.json or {}).get("messages", [])]
        if not 2 <= len(ids) <= 100:
            return _form_error("messages", "BASE_TYPE_BAD_LENGTH", "Must be between 2 and 100.")
        self._unstore(cid, ids)
        data: Json = {"ids": ids, "channel_id": cid}
        guild_id = self._guild_of(cid)
        if guild_id is not None:
            data["guild_id"] = guild_id
        await self._echo("MESSAGE_DELETE_BULK", data)
        return web.Response(status=204)

    async def _get_guild(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        gid = params["guild_id"]
        if gid not in self.guilds:
            return _json_error(404, "Unknown Guild", 10004)
        guild = {k: v for k, v in self.guilds[gid].items() if k != "channels"}
        return _json_response(guild)

    async def _get_guild_channels(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        gid = params["guild_id"]
        if gid not in self.guilds:
            return _json_error(404, "Unknown Guild", 10004)
        return _json_response(self.guilds[gid]["channels"])

    async def _get_guild_roles(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        gid = params["guild_id"]
        if gid not in self.guilds:
            return _json_error(404, "Unknown Guild", 10004)
        return _json_response(self.guilds[gid]["roles"])

    async def _get_member(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        gid, uid = params["guild_id"], params["user_id"]
        if gid not in self.guilds:
            return _json_error(404, "Unknown Guild", 10004)
        if uid != self.bot_id and uid not in self.users:
            return _json_error(404, "Unknown Member", 10007)
        return _json_response(self._member_payload(gid, uid))

    # --- REST: interactions and their webhooks ---------------------------------------------

    def _interaction_message(self, record: InteractionRecord, body: Json, *, flags: int) -> Json:
        extra: Json = {
            "type": 20,
            "webhook_id": self.app_id,
            "application_id": self.app_id,
            "flags": flags,
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "interaction_metadata": {
                "id": record.id,
                "type": 2,
                "name": record.name,
                "command_type": 1,
                "user": self._user(record.user_id),
                "authorizing_integration_owners": record.payload.get(
                    "authorizing_integration_owners", {}
                ),
            },
        }
        return self._message(
            record.channel_id,
            self.bot_user,
            str(body.get("content") or ""),
            message_id=self._new_id(),
            allowed_mentions=body.get("allowed_mentions"),
            extra=extra,
        )

    async def _publish(self, message: Json) -> None:
        """A non-ephemeral interaction message lands in the channel like any other."""
        if message["flags"] & FLAG_EPHEMERAL:
            return
        self._store(str(message["channel_id"]), message)
        await self._echo("MESSAGE_CREATE", self._gateway_message(message))

    async def _callback(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        record = self.interactions.get(params["token"])
        if record is None or record.id != params["interaction_id"]:
            return _json_error(404, "Unknown interaction", 10062)
        if time.monotonic() - record.dispatched_at > self.interaction_ack_timeout:
            return _json_error(404, "Unknown interaction", 10062)
        if record.callback_type is not None:
            return _json_error(400, "Interaction has already been acknowledged.", 40060)
        body: Json = recorded.json if isinstance(recorded.json, dict) else {}
        kind = int(body.get("type", 0))
        data: Json = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        if kind == CALLBACK_MESSAGE:
            error = self._content_errors(data, len(recorded.files), creating=True)
            if error is not None:
                return error
        elif kind not in (CALLBACK_DEFERRED_MESSAGE, CALLBACK_DEFERRED_UPDATE, CALLBACK_PONG):
            if kind not in (CALLBACK_UPDATE_MESSAGE, 8, 9, 12):
                return _form_error("type", "BASE_TYPE_CHOICES", "Value must be one of ...")
        record.callback_type = kind
        record.callback_at = recorded.time
        record.ephemeral = bool(flags & FLAG_EPHEMERAL)
        resource: Json = {"type": kind}
        if kind == CALLBACK_MESSAGE:
            record.original = self._interaction_message(record, data, flags=flags)
            await self._publish(record.original)
            resource["message"] = record.original
        elif kind == CALLBACK_DEFERRED_MESSAGE:
            record.original = self._interaction_message(record, {}, flags=flags | FLAG_LOADING)
            await self._publish(record.original)
            resource["message"] = record.original
        if recorded.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        interaction: Json = {
            "id": record.id,
            "type": 2,
            "response_message_loading": kind == CALLBACK_DEFERRED_MESSAGE,
            "response_message_ephemeral": record.ephemeral,
        }
        if record.original is not None:
            interaction["response_message_id"] = record.original["id"]
        return _json_response({"interaction": interaction, "resource": resource})

    def _webhook_record(self, params: dict[str, str]) -> InteractionRecord | None:
        record = self.interactions.get(params["token"])
        if params["app_id"] != self.app_id or record is None:
            return None
        return record

    def _webhook_message(self, record: InteractionRecord, message_id: str) -> Json | None:
        if message_id == "@original":
            return record.original
        for message in [record.original, *record.followups]:
            if message is not None and message["id"] == message_id:
                return message
        return None

    async def _execute_webhook(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        record = self._webhook_record(params)
        if record is None or record.callback_type is None:
            # Discord knows no webhook for an interaction until it has been answered.
            return _json_error(404, "Unknown Webhook", 10015)
        body: Json = recorded.json if isinstance(recorded.json, dict) else {}
        error = self._content_errors(body, len(recorded.files), creating=True)
        if error is not None:
            return error
        flags = int(body.get("flags") or 0)
        if (
            record.callback_type == CALLBACK_DEFERRED_MESSAGE
            and record.original is not None
            and record.original["flags"] & FLAG_LOADING
        ):
            # The first followup after a deferral fills in the "thinking…" message.
            message = record.original
            self._apply_edit(message, body)
            if recorded.files:
                # Stored as Discord stores them: with their size, id and URL.
                message["attachments"] = self._attachments(recorded, record.channel_id)
            message["flags"] = (message["flags"] & FLAG_EPHEMERAL) | (flags & ~FLAG_EPHEMERAL)
            if not message["flags"] & FLAG_EPHEMERAL:
                await self._echo("MESSAGE_UPDATE", self._gateway_message(message))
        else:
            message = self._interaction_message(record, body, flags=flags)
            message["attachments"] = self._attachments(recorded, record.channel_id)
            record.followups.append(message)
            await self._publish(message)
        if recorded.query.get("wait") in ("1", "true", "True"):
            return _json_response(message)
        return web.Response(status=204)

    async def _get_wh_message(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        record = self._webhook_record(params)
        if record is None:
            return _json_error(404, "Unknown Webhook", 10015)
        message = self._webhook_message(record, params["message_id"])
        if message is None:
            return _json_error(404, "Unknown Message", 10008)
        return _json_response(message)

    async def _edit_wh_message(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        record = self._webhook_record(params)
        if record is None:
            return _json_error(404, "Unknown Webhook", 10015)
        message = self._webhook_message(record, params["message_id"])
        if message is None:
            return _json_error(404, "Unknown Message", 10008)
        body: Json = recorded.json if isinstance(recorded.json, dict) else {}
        error = self._content_errors(body, 0, creating=False)
        if error is not None:
            return error
        self._apply_edit(message, body)
        if not message["flags"] & FLAG_EPHEMERAL:
            await self._echo("MESSAGE_UPDATE", self._gateway_message(message))
        return _json_response(message)

    async def _delete_wh_message(
        self, request: web.Request, recorded: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        record = self._webhook_record(params)
        if record is None:
            return _json_error(404, "Unknown Webhook", 10015)
        message = self._webhook_message(record, params["message_id"])
        if message is None:
            return _json_error(404, "Unknown Message", 10008)
        if message is record.original:
            record.original = None
        else:
            record.followups.remove(message)
        if not message["flags"] & FLAG_EPHEMERAL:
            cid = str(message["channel_id"])
            self._unstore(cid, [message["id"]])
            data: Json = {"id": message["id"], "channel_id": cid}
            guild_id = self._guild_of(cid)
            if guild_id is not None:
                data["guild_id"] = guild_id
            await self._echo("MESSAGE_DELETE", data)
        return web.Response(status=204)


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A started FakeDiscord with discord.py pointed at it (restored afterwards)."""
    async with FakeDiscord() as fake:
        with fake.patched_discord_py():
            yield fake
