"""The Slack fake's messaging methods: chat.postMessage / postEphemeral / update / delete
(recorded in `posted`), users.info, conversations.info / join / history / replies, and
reactions."""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.slack.protocol import (
    CUSTOMIZE,
    MAX_TEXT,
    Json,
    SlackApiFailure,
    flag,
    is_top_level,
    json_list,
    paginate,
    str_param,
)
from tests.fakes.slack.records import PostedMessage, RecordedCall
from tests.fakes.slack.web_api import MethodHandler, WebApi


class Messaging(WebApi):
    """Recorded: `posted` (chat.postMessage / postEphemeral / update, decoded)."""

    def _init_messaging(self) -> None:
        self.posted: list[PostedMessage] = []

    def _messaging_methods(self) -> dict[str, MethodHandler]:
        return {
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.join": self._conversations_join,
            "reactions.add": self._reactions,
            "reactions.remove": self._reactions,
        }

    def versions_of(self, channel: str, ts: str) -> list[str]:
        """What a bot message showed, in order: its text when posted (chat.postMessage)
        and after each chat.update."""
        return [
            p.text
            for p in self.posted
            if p.channel == channel
            and p.ts == ts
            and p.method in ("chat.postMessage", "chat.update")
        ]

    # --- chat ------------------------------------------------------------------------------

    def _text_and_blocks(
        self, call: RecordedCall
    ) -> tuple[str, list[Any] | None, list[Any] | None]:
        text = str(call.params.get("text") or "")
        blocks = json_list(call.params.get("blocks"))
        attachments = json_list(call.params.get("attachments"))
        if not text and not blocks and not attachments:
            raise SlackApiFailure("no_text")
        return text, blocks, attachments

    def _posted(
        self, call: RecordedCall, channel: str, text: str, ts: str, **fields: Any
    ) -> PostedMessage:
        params = call.params
        record = PostedMessage(
            method=call.method,
            channel=channel,
            text=text,
            ts=ts,
            time=call.time,
            thread_ts=str_param(params, "thread_ts"),
            mrkdwn=flag(params.get("mrkdwn")),
            unfurl_links=flag(params.get("unfurl_links")),
            unfurl_media=flag(params.get("unfurl_media")),
            reply_broadcast=flag(params.get("reply_broadcast")),
            params=copy.deepcopy(params),
            **fields,
        )
        self.posted.append(record)
        return record

    def _own_message(self, call: RecordedCall, refusal: str) -> tuple[str, str, Json]:
        """The channel, ts and stored message a call names, which the bot must have sent
        (else `refusal`)."""
        channel = self._channel(call)
        ts = self._require(call, "ts")
        message = self._find(channel, ts)
        if message is None:
            raise SlackApiFailure("message_not_found")
        if message.get("user") != self.bot_user_id:
            raise SlackApiFailure(refusal)
        return channel, ts, message

    def _chat_post_message(self, call: RecordedCall) -> Json:
        channel = self._channel(call, posting=True)
        customized = {k: str_param(call.params, k) for k in ("username", "icon_url")}
        if any(customized.values()) and CUSTOMIZE not in self.scopes:
            # Slack refuses a post under another name without the scope for it.
            raise SlackApiFailure(
                "missing_scope", needed=CUSTOMIZE, provided=",".join(sorted(self.scopes))
            )
        text, blocks, attachments = self._text_and_blocks(call)
        truncated = len(text) > MAX_TEXT
        text = text[:MAX_TEXT]
        ts = self.new_ts()
        message = self._bot_message(text, ts, blocks)
        if customized["username"]:
            # Shown under that name and picture; still the bot's message (bot_id).
            message["subtype"] = "bot_message"
            message["username"] = customized["username"]
            if customized["icon_url"]:
                message["icons"] = {"image_48": customized["icon_url"]}
        if attachments is not None:
            message["attachments"] = attachments
        thread_ts = str_param(call.params, "thread_ts")
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            if flag(call.params.get("reply_broadcast")):
                message["subtype"] = "thread_broadcast"
        self._store(channel, message)
        self._posted(
            call,
            channel,
            text,
            ts,
            blocks=blocks,
            attachments=attachments,
            truncated=truncated,
        )
        return {"channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _chat_post_ephemeral(self, call: RecordedCall) -> Json:
        channel = self._channel(call, posting=True)
        user = self._require(call, "user")
        if user not in self.users:
            raise SlackApiFailure("user_not_in_channel")
        text, blocks, attachments = self._text_and_blocks(call)
        ts = self.new_ts()
        self._posted(
            call, channel, text[:MAX_TEXT], ts, user=user, blocks=blocks, attachments=attachments
        )
        return {"message_ts": ts}

    def _chat_update(self, call: RecordedCall) -> Json:
        channel, ts, message = self._own_message(call, "cant_update_message")
        text, blocks, attachments = self._text_and_blocks(call)
        message["text"] = text[:MAX_TEXT]
        if blocks is not None:
            message["blocks"] = blocks
        if attachments is not None:
            message["attachments"] = attachments
        message["edited"] = {"user": self.bot_user_id, "ts": self.new_ts()}
        self._posted(call, channel, message["text"], ts, blocks=blocks, attachments=attachments)
        return {
            "channel": channel,
            "ts": ts,
            "text": message["text"],
            "message": copy.deepcopy(message),
        }

    def _chat_delete(self, call: RecordedCall) -> Json:
        channel, ts, message = self._own_message(call, "cant_delete_message")
        self.history[channel].remove(message)
        return {"channel": channel, "ts": ts}

    # --- users, conversations, reactions ---------------------------------------------------

    def _users_info(self, call: RecordedCall) -> Json:
        user_id = str_param(call.params, "user")
        if user_id is None or user_id not in self.users:
            raise SlackApiFailure("user_not_found")
        user = copy.deepcopy(self.users[user_id])
        if str(call.params.get("include_locale", "")).lower() in {"1", "true"}:
            user["locale"] = self.user_locales.get(user_id, "en-US")
        return {"user": user}

    def _conversations_info(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        return {"channel": copy.deepcopy(self.channels[channel])}

    def _conversations_join(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        self.channels[channel]["is_member"] = True
        return {"channel": copy.deepcopy(self.channels[channel])}

    def _conversations_history(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        top_level = [m for m in self.history.get(channel, []) if is_top_level(m)]
        page, has_more, next_cursor = paginate(top_level, call.params, newest_first=True)
        return {
            "messages": page,
            "has_more": has_more,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _conversations_replies(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        ts = self._require(call, "ts")
        parent = self._find(channel, ts)
        if parent is None:
            raise SlackApiFailure("thread_not_found")
        thread_ts = parent.get("thread_ts", parent["ts"])
        thread = [
            m
            for m in self.history.get(channel, [])
            if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
        ]
        page, has_more, next_cursor = paginate(thread, call.params, newest_first=False)
        return {
            "messages": page,
            "has_more": has_more,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _reactions(self, call: RecordedCall) -> Json:
        channel = self._channel(call)
        timestamp = self._require(call, "timestamp")
        if self._find(channel, timestamp) is None:
            raise SlackApiFailure("message_not_found")
        self._require(call, "name")
        return {}
