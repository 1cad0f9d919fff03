"""The Discord fake's REST look-ups: the bot's user, users, DM channels, the gateway
URLs, the application, guilds, their roles and members."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.discord.payloads import application_payload, current_user
from tests.fakes.discord.protocol import Json
from tests.fakes.discord.records import RecordedRequest
from tests.fakes.discord.rest import GUILD, Params, Rest, Route, json_response, refusal, snowflake


class Resources(Rest):
    def _resource_routes(self) -> list[Route]:
        user = snowflake("user_id")
        return [
            ("GET", "/users/@me", self._get_me),
            ("GET", f"/users/{user}", self._get_user),
            ("POST", "/users/@me/channels", self._create_dm),
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", f"/guilds/{GUILD}", self._get_guild),
            ("GET", f"/guilds/{GUILD}/channels", self._get_guild_channels),
            ("GET", f"/guilds/{GUILD}/roles", self._get_guild_roles),
            ("GET", f"/guilds/{GUILD}/members/{user}", self._get_member),
        ]

    def _require_guild(self, guild_id: str) -> Json:
        if guild_id not in self.guilds:
            raise refusal(404, "Unknown Guild", 10004)
        return self.guilds[guild_id]

    async def _get_me(self, recorded: RecordedRequest, params: Params) -> web.Response:
        return json_response(current_user(self.bot_user))

    async def _get_user(self, recorded: RecordedRequest, params: Params) -> web.Response:
        uid = params["user_id"]
        if not self._known_user(uid):
            raise refusal(404, "Unknown User", 10013)
        return json_response(self._user(uid))

    async def _create_dm(self, recorded: RecordedRequest, params: Params) -> web.Response:
        body = recorded.json or {}
        cid = self.open_dm(str(body.get("recipient_id")))
        return json_response(self._channel_payload(cid))

    async def _get_gateway(self, recorded: RecordedRequest, params: Params) -> web.Response:
        return json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, recorded: RecordedRequest, params: Params) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return json_response(
            {"url": self.gateway_url, "shards": self.shards, "session_start_limit": limit}
        )

    async def _get_application(self, recorded: RecordedRequest, params: Params) -> web.Response:
        return json_response(application_payload(self.app_id, self.bot_user, len(self.guilds)))

    async def _get_guild(self, recorded: RecordedRequest, params: Params) -> web.Response:
        guild = self._require_guild(params["guild_id"])
        return json_response({k: v for k, v in guild.items() if k != "channels"})

    async def _get_guild_channels(self, recorded: RecordedRequest, params: Params) -> web.Response:
        return json_response(self._require_guild(params["guild_id"])["channels"])

    async def _get_guild_roles(self, recorded: RecordedRequest, params: Params) -> web.Response:
        return json_response(self._require_guild(params["guild_id"])["roles"])

    async def _get_member(self, recorded: RecordedRequest, params: Params) -> web.Response:
        gid, uid = params["guild_id"], params["user_id"]
        self._require_guild(gid)
        if not self._known_user(uid):
            raise refusal(404, "Unknown Member", 10007)
        return json_response(self._member_payload(gid, uid))
