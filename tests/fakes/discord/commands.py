"""The Discord fake's application commands over REST: syncing (bulk overwrite), creating,
reading and deleting global and guild commands, with Discord's validation of names,
descriptions and options."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.discord.protocol import (
    COMMAND_NAME_RE,
    CONTEXT_MENU_NAME_RE,
    OPT_SUB_COMMAND,
    OPT_SUB_COMMAND_GROUP,
    Json,
)
from tests.fakes.discord.records import RecordedRequest
from tests.fakes.discord.rest import (
    APP,
    GUILD,
    Params,
    Rest,
    Route,
    invalid_form,
    json_response,
    no_content,
    refusal,
    snowflake,
)


class Commands(Rest):
    def _command_routes(self) -> list[Route]:
        command = snowflake("command_id")
        routes: list[Route] = []
        for scope in (f"/applications/{APP}", f"/applications/{APP}/guilds/{GUILD}"):
            routes += [
                ("GET", f"{scope}/commands", self._get_commands),
                ("PUT", f"{scope}/commands", self._put_commands),
                ("POST", f"{scope}/commands", self._post_command),
                ("GET", f"{scope}/commands/{command}", self._get_command),
                ("DELETE", f"{scope}/commands/{command}", self._delete_command),
            ]
        return routes

    def _check_app(self, params: Params) -> None:
        if params["app_id"] != self.app_id:
            raise refusal(403, "Missing Access", 50001)
        gid = params.get("guild_id")
        if gid is not None and gid not in self.guilds:
            raise refusal(403, "Missing Access", 50001)

    def _check_command(self, command: Json, where: str) -> None:
        name = command.get("name")
        kind = int(command.get("type", 1))
        pattern = COMMAND_NAME_RE if kind == 1 else CONTEXT_MENU_NAME_RE
        if not isinstance(name, str) or not pattern.fullmatch(name):
            raise invalid_form(f"{where}.name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
        if kind == 1:
            if name != name.lower():
                raise invalid_form(
                    f"{where}.name", "APPLICATION_COMMAND_INVALID_NAME", "Name must be lowercase"
                )
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                raise invalid_form(
                    f"{where}.description",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
        options = command.get("options") or []
        if len(options) > 25:
            raise invalid_form(f"{where}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer.")
        seen_optional = False
        for index, option in enumerate(options):
            nested = int(option.get("type", 0)) in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP)
            if not nested:
                if not option.get("required"):
                    seen_optional = True
                elif seen_optional:
                    raise invalid_form(
                        f"{where}.options.{index}",
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            self._check_command({**option, "type": 1}, f"{where}.options.{index}")

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

    def _find_command(self, params: Params) -> tuple[list[Json], Json]:
        """The scope's command list and the command `params` name in it."""
        commands = self.commands.get(params.get("guild_id"), [])
        for command in commands:
            if command["id"] == params["command_id"]:
                return commands, command
        raise refusal(404, "Unknown application command", 10063)

    async def _put_commands(self, recorded: RecordedRequest, params: Params) -> web.Response:
        self._check_app(params)
        body = recorded.json
        if not isinstance(body, list):
            raise refusal(400, "Invalid Form Body", 50035)
        if len(body) > 100:
            raise invalid_form("_", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        for index, command in enumerate(body):
            self._check_command(command, str(index))
        gid = params.get("guild_id")
        old = {(c["name"], c["type"]): c for c in self.commands.get(gid, [])}
        stored = [
            self._stored_command(c, gid, old.get((c["name"], int(c.get("type", 1))))) for c in body
        ]
        self.commands[gid] = stored
        return json_response(stored)

    async def _post_command(self, recorded: RecordedRequest, params: Params) -> web.Response:
        self._check_app(params)
        body = recorded.json or {}
        self._check_command(body, "_")
        gid = params.get("guild_id")
        commands = self.commands.setdefault(gid, [])
        kind = int(body.get("type", 1))
        old = next((c for c in commands if (c["name"], c["type"]) == (body["name"], kind)), None)
        command = self._stored_command(body, gid, old)
        if old is not None:
            commands[commands.index(old)] = command
            return json_response(command)
        commands.append(command)
        return json_response(command, status=201)

    async def _get_commands(self, recorded: RecordedRequest, params: Params) -> web.Response:
        self._check_app(params)
        return json_response(self.commands.get(params.get("guild_id"), []))

    async def _get_command(self, recorded: RecordedRequest, params: Params) -> web.Response:
        self._check_app(params)
        _, command = self._find_command(params)
        return json_response(command)

    async def _delete_command(self, recorded: RecordedRequest, params: Params) -> web.Response:
        self._check_app(params)
        commands, command = self._find_command(params)
        commands.remove(command)
        return no_content()
