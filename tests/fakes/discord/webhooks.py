"""Channel webhooks on the Discord fake, as Discord keeps them: listed and created only
by a bot with Manage Webhooks in the channel (403 Missing Permissions otherwise),
executed by id and token with a `username` and `avatar_url` of the caller's choosing.
A webhook's message is the webhook's (its author a bot user named as asked, with a
`webhook_id`), stored in the channel and dispatched to the gateway like any other."""

from __future__ import annotations

import secrets

from aiohttp import web

from tests.fakes.discord.interactions import Interactions
from tests.fakes.discord.payloads import user_payload
from tests.fakes.discord.protocol import Json
from tests.fakes.discord.records import RecordedRequest
from tests.fakes.discord.rest import (
    APP,
    TOKEN,
    Params,
    Route,
    invalid_form,
    json_object,
    json_response,
    no_content,
    refusal,
    snowflake,
)

MANAGE_WEBHOOKS = 1 << 29
TRUE = {"1", "true", "True"}


class Webhooks(Interactions):
    """Recorded: `webhooks` (by id), `webhook_messages` (what each execution posted)."""

    def _init_webhooks(self) -> None:
        self.webhooks: dict[str, Json] = {}
        self.webhook_messages: list[Json] = []

    def _webhook_routes(self) -> list[Route]:
        channel = f"/channels/{snowflake('channel_id')}/webhooks"
        return [
            ("GET", channel, self._list_webhooks),
            ("POST", channel, self._create_webhook),
            # An interaction's webhook has the application's id: interactions.py's.
            ("POST", f"/webhooks/{APP}/{TOKEN}", self._execute),
        ]

    def grant_bot(self, guild_id: int | str, permissions: int) -> None:
        """Adds `permissions` to the bot's role in the guild (a server admin ticking
        them in the role settings)."""
        role = self._bot_role_payload(str(guild_id))
        role["permissions"] = str(int(role["permissions"]) | permissions)

    def _bot_role_payload(self, guild_id: str) -> Json:
        role_id = self._bot_role[guild_id]
        return next(r for r in self.guilds[guild_id]["roles"] if r["id"] == role_id)

    def _require_manage_webhooks(self, channel_id: str) -> str:
        self._require_channel(channel_id)
        guild_id = self._guild_of(channel_id)
        if guild_id is None or not int(self._bot_role_payload(guild_id)["permissions"]) & (
            MANAGE_WEBHOOKS
        ):
            raise refusal(403, "Missing Permissions", 50013)
        return guild_id

    async def _list_webhooks(self, recorded: RecordedRequest, params: Params) -> web.Response:
        cid = params["channel_id"]
        self._require_manage_webhooks(cid)
        return json_response([w for w in self.webhooks.values() if w["channel_id"] == cid])

    async def _create_webhook(self, recorded: RecordedRequest, params: Params) -> web.Response:
        cid = params["channel_id"]
        guild_id = self._require_manage_webhooks(cid)
        name = json_object(recorded).get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 80:
            raise invalid_form(
                "name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 80 in length."
            )
        webhook: Json = {
            "id": self._new_id(),
            "type": 1,
            "guild_id": guild_id,
            "channel_id": cid,
            "name": name,
            "avatar": None,
            "token": secrets.token_urlsafe(48),
            "application_id": None,
            "user": self._user(self.bot_id),
        }
        self.webhooks[webhook["id"]] = webhook
        return json_response(webhook)

    async def _execute(self, recorded: RecordedRequest, params: Params) -> web.Response:
        if params["app_id"] == self.app_id:
            return await self._execute_webhook(recorded, params)
        webhook = self.webhooks.get(params["app_id"])
        if webhook is None or webhook["token"] != params["token"]:
            raise refusal(404, "Unknown Webhook", 10015)
        body = json_object(recorded)
        self._check_content(body, len(recorded.files), creating=True)
        name = body.get("username") or webhook["name"]
        author = user_payload(webhook["id"], str(name), bot=True)
        author["avatar"] = body.get("avatar_url")  # the URL as given: what members see
        cid = str(webhook["channel_id"])
        message = self._message(
            cid,
            author,
            str(body.get("content") or ""),
            message_id=self._new_id(),
            allowed_mentions=body.get("allowed_mentions"),
            extra={"webhook_id": webhook["id"]},
        )
        self._store(cid, message)
        self.webhook_messages.append(message)
        await self.dispatch("MESSAGE_CREATE", self._gateway_message(message))
        if recorded.query.get("wait") in TRUE:
            return json_response(message)
        return no_content()
