"""The Discord fake's REST channels and messages: reading a channel and its history,
sending (with replies and attachments), editing and deleting messages, typing and
reactions, and the rules on content every message obeys."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from aiohttp import web

from tests.fakes.discord.protocol import FLAG_EPHEMERAL, FLAG_LOADING, MAX_CONTENT, Json, iso
from tests.fakes.discord.records import RecordedRequest
from tests.fakes.discord.rest import (
    CHANNEL,
    MESSAGE,
    Params,
    Rest,
    Route,
    invalid_form,
    json_object,
    json_response,
    no_content,
    refusal,
)


class Messages(Rest):
    def _message_routes(self) -> list[Route]:
        reaction = f"/channels/{CHANNEL}/messages/{MESSAGE}/reactions/[^/]+/@me"
        return [
            ("GET", f"/channels/{CHANNEL}", self._get_channel),
            ("GET", f"/channels/{CHANNEL}/messages", self._get_messages),
            ("POST", f"/channels/{CHANNEL}/messages", self._post_message),
            ("GET", f"/channels/{CHANNEL}/messages/{MESSAGE}", self._get_message),
            ("PATCH", f"/channels/{CHANNEL}/messages/{MESSAGE}", self._patch_message),
            ("DELETE", f"/channels/{CHANNEL}/messages/{MESSAGE}", self._delete_message),
            ("POST", f"/channels/{CHANNEL}/messages/bulk-delete", self._bulk_delete),
            ("POST", f"/channels/{CHANNEL}/typing", self._no_content),
            ("PUT", reaction, self._no_content),
            ("DELETE", reaction, self._no_content),
        ]

    # --- checks shared with interactions ---------------------------------------------------

    def _require_channel(self, channel_id: str) -> None:
        if not self._known_channel(channel_id):
            raise refusal(404, "Unknown Channel", 10003)

    @staticmethod
    def _require_message(message: Json | None) -> Json:
        if message is None:
            raise refusal(404, "Unknown Message", 10008)
        return message

    @staticmethod
    def _check_content(body: Json, files: int, *, creating: bool) -> None:
        content = body.get("content")
        if content is not None and len(str(content)) > MAX_CONTENT:
            raise invalid_form(
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
            raise refusal(400, "Cannot send an empty message", 50006)

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
        message["edited_timestamp"] = iso(datetime.now(UTC))

    async def _echo_delete(self, channel_id: str, message_id: str) -> None:
        """The bot deleted a stored message: gone from the channel, MESSAGE_DELETE."""
        self._unstore(channel_id, [message_id])
        data = self._with_guild(channel_id, {"id": message_id, "channel_id": channel_id})
        await self._echo("MESSAGE_DELETE", data)

    # --- handlers --------------------------------------------------------------------------

    async def _get_channel(self, recorded: RecordedRequest, params: Params) -> web.Response:
        cid = params["channel_id"]
        self._require_channel(cid)
        return json_response(self._channel_payload(cid))

    async def _get_messages(self, recorded: RecordedRequest, params: Params) -> web.Response:
        cid = params["channel_id"]
        self._require_channel(cid)
        query = recorded.query
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            raise invalid_form("limit", "NUMBER_TYPE_COERCE", "Value is not int.") from None
        if not 1 <= limit <= 100:
            raise invalid_form("limit", "NUMBER_TYPE_MAX", "int value should be between 1 and 100.")
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
        return json_response([copy.deepcopy(m) for m in reversed(page)])

    async def _get_message(self, recorded: RecordedRequest, params: Params) -> web.Response:
        message = self._find_message(params["channel_id"], params["message_id"])
        return json_response(self._require_message(message))

    async def _post_message(self, recorded: RecordedRequest, params: Params) -> web.Response:
        cid = params["channel_id"]
        self._require_channel(cid)
        body = json_object(recorded)
        self._check_content(body, len(recorded.files), creating=True)
        reference = body.get("message_reference")
        if reference is not None:
            reference = {k: str(v) for k, v in reference.items() if k != "fail_if_not_exists"}
            reference.setdefault("channel_id", cid)
            target = self._find_message(reference["channel_id"], reference["message_id"])
            fail = body["message_reference"].get("fail_if_not_exists", True)
            if target is None and fail:
                raise invalid_form(
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
        await self._echo_message("MESSAGE_CREATE", message)
        return json_response(message)

    async def _patch_message(self, recorded: RecordedRequest, params: Params) -> web.Response:
        message = self._require_message(
            self._find_message(params["channel_id"], params["message_id"])
        )
        if message["author"]["id"] != self.bot_id:
            raise refusal(403, "Cannot edit a message authored by another user", 50005)
        body = json_object(recorded)
        self._check_content(body, 0, creating=False)
        self._apply_edit(message, body)
        await self._echo_message("MESSAGE_UPDATE", message)
        return json_response(message)

    async def _delete_message(self, recorded: RecordedRequest, params: Params) -> web.Response:
        cid, mid = params["channel_id"], params["message_id"]
        self._require_message(self._find_message(cid, mid))
        await self._echo_delete(cid, mid)
        return no_content()

    async def _bulk_delete(self, recorded: RecordedRequest, params: Params) -> web.Response:
        cid = params["channel_id"]
        ids = [str(i) for i in (recorded.json or {}).get("messages", [])]
        if not 2 <= len(ids) <= 100:
            raise invalid_form("messages", "BASE_TYPE_BAD_LENGTH", "Must be between 2 and 100.")
        self._unstore(cid, ids)
        data = self._with_guild(cid, {"ids": ids, "channel_id": cid})
        await self._echo("MESSAGE_DELETE_BULK", data)
        return no_content()
