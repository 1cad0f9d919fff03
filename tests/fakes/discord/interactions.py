"""The bot's answers to interactions on the Discord fake: the callback (within the
acknowledgement window, once), and the interaction webhook (followups, the original
answer's edits and deletion) under Discord's rules."""

from __future__ import annotations

import time

from aiohttp import web

from tests.fakes.discord.messages import Messages
from tests.fakes.discord.protocol import (
    CALLBACK_DEFERRED_MESSAGE,
    CALLBACK_DEFERRED_UPDATE,
    CALLBACK_MESSAGE,
    CALLBACK_PONG,
    CALLBACK_UPDATE_MESSAGE,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    Json,
)
from tests.fakes.discord.records import InteractionRecord, RecordedRequest
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

TRUE = ("1", "true", "True")


class Interactions(Messages):
    def _init_interactions(self, *, ack_timeout: float) -> None:
        self.interaction_ack_timeout = ack_timeout

    def _interaction_routes(self) -> list[Route]:
        webhook_message = f"/webhooks/{APP}/{TOKEN}/messages/(?P<message_id>@original|\\d+)"
        return [
            (
                "POST",
                f"/interactions/{snowflake('interaction_id')}/{TOKEN}/callback",
                self._callback,
            ),
            ("POST", f"/webhooks/{APP}/{TOKEN}", self._execute_webhook),
            ("GET", webhook_message, self._get_wh_message),
            ("PATCH", webhook_message, self._edit_wh_message),
            ("DELETE", webhook_message, self._delete_wh_message),
        ]

    def interaction(self, token_or_id: str) -> InteractionRecord:
        """The record of a dispatched interaction, by token or id."""
        if token_or_id in self.interactions:
            return self.interactions[token_or_id]
        for record in self.interactions.values():
            if record.id == token_or_id:
                return record
        raise KeyError(token_or_id)

    def original_versions(self, token: str) -> list[str]:
        """What an interaction's original answer showed, in order (see versions_of)."""
        original = self.interaction(token).original
        return self.versions_of(original["id"]) if original is not None else []

    # --- messages the bot sends as the interaction -----------------------------------------

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
        await self._echo_message("MESSAGE_CREATE", message)

    async def _echo_update(self, message: Json) -> None:
        """Others see an edit of an interaction message unless it is ephemeral."""
        if not message["flags"] & FLAG_EPHEMERAL:
            await self._echo_message("MESSAGE_UPDATE", message)

    # --- the callback ----------------------------------------------------------------------

    async def _callback(self, recorded: RecordedRequest, params: Params) -> web.Response:
        record = self.interactions.get(params["token"])
        if record is None or record.id != params["interaction_id"]:
            raise refusal(404, "Unknown interaction", 10062)
        if time.monotonic() - record.dispatched_at > self.interaction_ack_timeout:
            raise refusal(404, "Unknown interaction", 10062)
        if record.callback_type is not None:
            raise refusal(400, "Interaction has already been acknowledged.", 40060)
        body = json_object(recorded)
        kind = int(body.get("type", 0))
        data: Json = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        if kind == CALLBACK_MESSAGE:
            self._check_content(data, len(recorded.files), creating=True)
        elif kind not in (CALLBACK_DEFERRED_MESSAGE, CALLBACK_DEFERRED_UPDATE, CALLBACK_PONG):
            if kind not in (CALLBACK_UPDATE_MESSAGE, 8, 9, 12):
                raise invalid_form("type", "BASE_TYPE_CHOICES", "Value must be one of ...")
        record.callback_type = kind
        record.callback_at = recorded.time
        record.ephemeral = bool(flags & FLAG_EPHEMERAL)
        resource: Json = {"type": kind}
        if kind in (CALLBACK_MESSAGE, CALLBACK_DEFERRED_MESSAGE):
            if kind == CALLBACK_MESSAGE:
                record.original = self._interaction_message(record, data, flags=flags)
            else:
                record.original = self._interaction_message(record, {}, flags=flags | FLAG_LOADING)
            await self._publish(record.original)
            resource["message"] = record.original
        if recorded.query.get("with_response") not in TRUE:
            return no_content()
        interaction: Json = {
            "id": record.id,
            "type": 2,
            "response_message_loading": kind == CALLBACK_DEFERRED_MESSAGE,
            "response_message_ephemeral": record.ephemeral,
        }
        if record.original is not None:
            interaction["response_message_id"] = record.original["id"]
        return json_response({"interaction": interaction, "resource": resource})

    # --- the interaction webhook -----------------------------------------------------------

    def _webhook_record(self, params: Params, *, answered: bool = False) -> InteractionRecord:
        """The interaction a webhook URL names; with `answered`, only once it has been
        answered (Discord knows no webhook for an interaction until then)."""
        record = self.interactions.get(params["token"])
        if params["app_id"] != self.app_id or record is None:
            raise refusal(404, "Unknown Webhook", 10015)
        if answered and record.callback_type is None:
            raise refusal(404, "Unknown Webhook", 10015)
        return record

    def _webhook_message(self, params: Params) -> tuple[InteractionRecord, Json]:
        record = self._webhook_record(params)
        message_id = params["message_id"]
        if message_id == "@original":
            return record, self._require_message(record.original)
        for message in [record.original, *record.followups]:
            if message is not None and message["id"] == message_id:
                return record, message
        return record, self._require_message(None)

    async def _execute_webhook(self, recorded: RecordedRequest, params: Params) -> web.Response:
        record = self._webhook_record(params, answered=True)
        body = json_object(recorded)
        self._check_content(body, len(recorded.files), creating=True)
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
            await self._echo_update(message)
        else:
            message = self._interaction_message(record, body, flags=flags)
            message["attachments"] = self._attachments(recorded, record.channel_id)
            record.followups.append(message)
            await self._publish(message)
        if recorded.query.get("wait") in TRUE:
            return json_response(message)
        return no_content()

    async def _get_wh_message(self, recorded: RecordedRequest, params: Params) -> web.Response:
        _, message = self._webhook_message(params)
        return json_response(message)

    async def _edit_wh_message(self, recorded: RecordedRequest, params: Params) -> web.Response:
        _, message = self._webhook_message(params)
        body = json_object(recorded)
        self._check_content(body, 0, creating=False)
        self._apply_edit(message, body)
        await self._echo_update(message)
        return json_response(message)

    async def _delete_wh_message(self, recorded: RecordedRequest, params: Params) -> web.Response:
        record, message = self._webhook_message(params)
        if message is record.original:
            record.original = None
        else:
            record.followups.remove(message)
        if not message["flags"] & FLAG_EPHEMERAL:
            await self._echo_delete(str(message["channel_id"]), message["id"])
        return no_content()
