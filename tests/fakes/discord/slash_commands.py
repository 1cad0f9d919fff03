"""A user runs a slash command on the Discord fake: the INTERACTION_CREATE payload (its
options typed from the synced command and resolved as Discord resolves them), recorded
in `interactions` for the bot's answer (interactions.py)."""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tests.fakes.discord.gateway import Gateway
from tests.fakes.discord.protocol import (
    ALL_PERMISSIONS,
    BOT_PERMISSIONS,
    OPT_BOOLEAN,
    OPT_CHANNEL,
    OPT_INTEGER,
    OPT_MENTIONABLE,
    OPT_NUMBER,
    OPT_ROLE,
    OPT_STRING,
    OPT_SUB_COMMAND,
    OPT_SUB_COMMAND_GROUP,
    OPT_USER,
    Json,
)
from tests.fakes.discord.records import InteractionRecord


class SlashCommands(Gateway):
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
        label = " ".join([name, *(p for _, p in path)])
        return await self._interaction(cid, uid, data, label, permissions, locale)

    async def message_command(
        self,
        channel_id: int | str,
        user_id: int | str,
        name: str,
        message_id: int | str,
        *,
        permissions: int | None = None,
        locale: str = "en-US",
    ) -> Json:
        """A user picks a message command (right-click a message, Apps): INTERACTION_CREATE
        of type 2 whose data is of type 3, naming the message (`target_id`) and carrying
        it in `resolved.messages`, as Discord does. The command must have been synced."""
        cid, mid = str(channel_id), str(message_id)
        guild_id = self._guild_of(cid)
        command, command_guild = self._synced_command(name, guild_id, kind=3)
        if command is None:
            raise KeyError(f"no message command {name!r} was synced")
        message = self._find_message(cid, mid)
        if message is None:
            raise KeyError(f"no message {mid} in channel {cid}")
        data: Json = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": mid,
            "resolved": {"messages": {mid: copy.deepcopy(message)}},
        }
        if command_guild is not None:
            data["guild_id"] = command_guild
        return await self._interaction(cid, str(user_id), data, name, permissions, locale)

    async def _interaction(
        self,
        cid: str,
        uid: str,
        data: Json,
        label: str,
        permissions: int | None,
        locale: str,
    ) -> Json:
        """INTERACTION_CREATE for an application command `data`, recorded by its token."""
        guild_id = self._guild_of(cid)
        user = self._user(uid)
        perms = permissions if permissions is not None else self._permissions_of(uid)
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
            "app_permissions": str(BOT_PERMISSIONS),
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
            name=label,
            dispatched_at=time.monotonic(),
            payload=payload,
        )
        return await self.dispatch("INTERACTION_CREATE", payload)

    def _synced_command(
        self, name: str, guild_id: str | None, kind: int = 1
    ) -> tuple[Json | None, str | None]:
        scopes: list[str | None] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == kind:
                    return command, scope
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
            if kind in (OPT_USER, OPT_MENTIONABLE) and self._known_user(str(value)):
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
