"""The Discord fake's world: who the bot is, where the fake listens, and the stores
(users, guilds, channels, direct messages, messages and their versions, synced commands,
interactions), with the payloads built from them."""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tests.fakes.discord.payloads import (
    dm_channel,
    guild_create,
    guild_payload,
    member_payload,
    message_payload,
    role_payload,
    text_channel,
    user_payload,
)
from tests.fakes.discord.protocol import (
    ADMIN_ROLE_PERMISSIONS,
    ADMIN_USER_ID,
    ALL_PERMISSIONS,
    API_PREFIX,
    BOT_PERMISSIONS,
    DEFAULT_CHANNEL_ID,
    DEFAULT_GUILD_ID,
    DEFAULT_MEMBER_PERMISSIONS,
    DISCORD_EPOCH_MS,
    MEMBER_USER_ID,
    MENTION_RE,
    Json,
)
from tests.fakes.discord.records import InteractionRecord
from tests.fakes.transport import LocalServer


class DiscordState(LocalServer):
    """The stores behind the fake's REST API and gateway. IDs are snowflake strings
    (methods accept ints too)."""

    def __init__(
        self,
        *,
        guilds: Mapping[int | str, Mapping[str, Any]] | None,
        users: Mapping[int | str, Mapping[str, Any]] | None,
        bot_id: int | str,
        app_id: int | str,
        bot_name: str,
        token: str | None,
    ) -> None:
        self.bot_id = str(bot_id)
        self.app_id = str(app_id)
        self.token = token

        self._ids = itertools.count()
        self._last_id = 0

        self.bot_user: Json = user_payload(self.bot_id, bot_name, bot=True)
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

    # --- where the fake listens ------------------------------------------------------------

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
        self.users[uid] = user_payload(uid, name, bot=bot, global_name=global_name)
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
        channel = text_channel(gid, cid, name, len(guild["channels"]))
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

    def versions_of(self, message_id: int | str) -> list[str]:
        """What a message showed, in order: its content when created (a deferred
        interaction's "thinking…" answer: "") and after each edit."""
        return list(self.versions.get(str(message_id), []))

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

    # --- ids, users, guilds, channels ------------------------------------------------------

    def _new_id(self, at: datetime | None = None) -> str:
        if at is None:
            ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
            value = max((ms << 22) | (next(self._ids) & 0xFFF), self._last_id + 1)
            self._last_id = value
        else:
            ms = int(at.timestamp() * 1000) - DISCORD_EPOCH_MS
            value = (ms << 22) | (next(self._ids) & 0x3FFFFF)
        return str(value)

    def _user(self, user_id: int | str) -> Json:
        uid = str(user_id)
        if uid == self.bot_id:
            return self.bot_user
        if uid not in self.users:
            self.add_user(uid, f"user{uid}")
        return self.users[uid]

    def _known_user(self, user_id: str) -> bool:
        return user_id == self.bot_id or user_id in self.users

    def _add_guild(self, guild_id: str, spec: Mapping[str, Any]) -> None:
        admin_role, bot_role = self._new_id(), self._new_id()
        self._admin_role[guild_id] = admin_role
        self._bot_role[guild_id] = bot_role
        roles = [
            role_payload(guild_id, "@everyone", DEFAULT_MEMBER_PERMISSIONS, 0),
            role_payload(admin_role, "Admin", ADMIN_ROLE_PERMISSIONS, 2),
            role_payload(bot_role, "Tsuzuki", BOT_PERMISSIONS, 1),
        ]
        roles[2]["managed"] = True
        roles[2]["tags"] = {"bot_id": self.bot_id}
        self.guilds[guild_id] = guild_payload(guild_id, spec, roles)
        for channel_id, channel_spec in dict(spec.get("channels", {})).items():
            if isinstance(channel_spec, str):
                self.add_channel(guild_id, channel_id, channel_spec)
            else:
                extra = dict(channel_spec)
                name = extra.pop("name", f"channel{channel_id}")
                self.add_channel(guild_id, channel_id, name, **extra)

    def _member_payload(self, guild_id: str, user_id: str, *, with_user: bool = True) -> Json:
        roles: list[str] = []
        if user_id == self.bot_id:
            roles.append(self._bot_role[guild_id])
        elif user_id in self._admins:
            roles.append(self._admin_role[guild_id])
        member = member_payload(roles)
        if with_user:
            member["user"] = self._user(user_id)
        return member

    def _permissions_of(self, user_id: str) -> int:
        if user_id in self._user_permissions:
            return self._user_permissions[user_id]
        return ALL_PERMISSIONS if user_id in self._admins else DEFAULT_MEMBER_PERMISSIONS

    def _guild_create(self, guild_id: str) -> Json:
        members = [self._member_payload(guild_id, uid) for uid in [self.bot_id, *self.users]]
        return guild_create(copy.deepcopy(self.guilds[guild_id]), members)

    def _guild_of(self, channel_id: str) -> str | None:
        channel = self.channels.get(channel_id)
        return str(channel["guild_id"]) if channel is not None else None

    def _with_guild(self, channel_id: str, data: Json) -> Json:
        """`data` with the channel's guild_id added (none for a DM)."""
        guild_id = self._guild_of(channel_id)
        if guild_id is not None:
            data["guild_id"] = guild_id
        return data

    def _channel_payload(self, channel_id: str) -> Json:
        if channel_id in self.channels:
            return self.channels[channel_id]
        if channel_id in self._dm_channels:
            return dm_channel(channel_id, self._user(self._dm_channels[channel_id]))
        raise KeyError(f"unknown channel {channel_id}")

    def _known_channel(self, channel_id: str) -> bool:
        return channel_id in self.channels or channel_id in self._dm_channels

    # --- messages --------------------------------------------------------------------------

    def _mentions_in(self, content: str, allowed: Json | None) -> list[Json]:
        """Users mentioned in `content`, as far as `allowed_mentions` lets them ping."""
        ids = list(dict.fromkeys(MENTION_RE.findall(content)))
        if allowed is not None:
            parse = allowed.get("parse", [])
            listed = {str(u) for u in allowed.get("users", [])}
            ids = [i for i in ids if "users" in parse or i in listed]
        return [self._user(i) for i in ids if self._known_user(i)]

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
        message = message_payload(message_id, channel_id, author, content, mentions)
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
