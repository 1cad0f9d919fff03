"""The Slack fake's world: the team and the bot, where the fake listens, the stores (users,
channels, each channel's history with its threads), the event payloads a test sends,
and waiting for the fake's records to change."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from tests.fakes.slack.protocol import (
    ADMIN_USER_ID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_SCOPES,
    MEMBER_USER_ID,
    Json,
    format_ts,
    ts_key,
)
from tests.fakes.transport import LocalServer

T = TypeVar("T")


class SlackState(LocalServer):
    """Users, channels and history; `auth_info` is the auth.test answer (mutable)."""

    def __init__(
        self,
        *,
        team_id: str,
        team_name: str,
        team_domain: str,
        bot_user_id: str,
        bot_id: str,
        bot_name: str,
        app_id: str,
        users: Mapping[str, Mapping[str, Any]] | None,
        channels: Mapping[str, str] | None,
        bot_token: str | None,
        app_token: str | None,
    ) -> None:
        self.team_id = team_id
        self.team_name = team_name
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.app_id = app_id
        self.bot_token = bot_token
        self.app_token = app_token

        self.auth_info: Json = {
            "url": f"https://{team_domain}.slack.com/",
            "team": team_name,
            "user": bot_name,
            "team_id": team_id,
            "user_id": bot_user_id,
            "bot_id": bot_id,
            "is_enterprise_install": False,
        }

        self.users: dict[str, Json] = {}
        self.user_locales: dict[str, str] = {}
        # What the app was installed with (scopes a method needs are checked).
        self.scopes: set[str] = set(DEFAULT_SCOPES)
        if users is None:
            users = {
                ADMIN_USER_ID: {"name": "alice", "real_name": "Alice Admin", "is_admin": True},
                MEMBER_USER_ID: {"name": "bob", "real_name": "Bob Member"},
            }
        for user_id, spec in users.items():
            self.add_user(user_id, **dict(spec))
        if bot_user_id not in self.users:
            self.add_user(bot_user_id, name=bot_name, real_name=bot_name.title(), is_bot=True)

        self.channels: dict[str, Json] = {}
        self.history: dict[str, list[Json]] = {}
        for channel_id, name in (channels or {DEFAULT_CHANNEL_ID: "general"}).items():
            self.add_channel(channel_id, name)

        self._last_ts = 0
        self._changed = asyncio.Event()

    @property
    def api_url(self) -> str:
        """What `AsyncWebClient(base_url=...)` takes (with the trailing slash)."""
        return f"{self.base_url}/api/"

    # --- configuration ---------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str | None = None,
        *,
        real_name: str | None = None,
        display_name: str | None = None,
        is_admin: bool = False,
        is_owner: bool = False,
        is_bot: bool = False,
        locale: str = "en-US",
        **extra: Any,
    ) -> Json:
        """A workspace member, as users.info returns it (`extra` merges into the object);
        `locale` only when users.info is asked `include_locale`, as Slack does."""
        self.user_locales[user_id] = locale
        name = name or user_id.lower()
        real_name = real_name or name
        display_name = display_name if display_name is not None else name
        profile: Json = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": display_name,
            "display_name_normalized": display_name,
            "team": self.team_id,
            "image_72": f"https://avatars.example/{user_id}_72.png",
        }
        if is_bot:
            profile["bot_id"] = self.bot_id if user_id == self.bot_user_id else "B" + user_id[1:]
            profile["api_app_id"] = self.app_id
        user: Json = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real_name,
            "tz": "Asia/Tokyo",
            "tz_label": "Japan Standard Time",
            "tz_offset": 32400,
            "profile": profile,
            "is_admin": is_admin or is_owner,
            "is_owner": is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
        }
        user.update(extra)
        self.users[user_id] = user
        return user

    def add_channel(
        self, channel_id: str, name: str | None = None, *, is_private: bool = False, **extra: Any
    ) -> Json:
        """A channel the bot is a member of (ids starting with D are direct messages)."""
        is_im = channel_id.startswith("D")
        channel: Json = {
            "id": channel_id,
            "name": name or channel_id.lower(),
            "is_channel": not is_im and not is_private,
            "is_group": False,
            "is_im": is_im,
            "is_mpim": False,
            "is_private": is_private or is_im,
            "is_archived": False,
            "is_general": name == "general",
            "is_member": True,
            "created": int(time.time()),
            "creator": ADMIN_USER_ID,
            "name_normalized": name or channel_id.lower(),
            "context_team_id": self.team_id,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }
        if is_im:
            channel.pop("name")
            channel.pop("name_normalized")
        channel.update(extra)
        self.channels[channel_id] = channel
        self.history.setdefault(channel_id, [])
        return channel

    def new_ts(self) -> str:
        """A fresh message ts, later than every ts the fake has seen."""
        self._last_ts = max(int(time.time() * 1_000_000), self._last_ts + 1)
        return format_ts(self._last_ts)

    def add_history(
        self,
        channel: str,
        user: str,
        text: str,
        ts: str | float | None = None,
        *,
        thread_ts: str | None = None,
        **extra: Any,
    ) -> Json:
        """Store a past message (no event is sent); the channel is created if unknown.
        Returns a copy of the stored message."""
        message = self._user_message(channel, ts, user, text)
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
        message.update(extra)
        if not self._store(channel, message):
            raise ValueError(f"{channel} already has a message with ts {message['ts']}")
        return copy.deepcopy(message)

    def messages(self, channel: str) -> list[Json]:
        """A channel's stored messages, oldest first (thread replies included)."""
        return self.history.setdefault(channel, [])

    # --- event payloads --------------------------------------------------------------------

    def app_mention_event(
        self,
        text: str,
        *,
        user: str = MEMBER_USER_ID,
        channel: str = DEFAULT_CHANNEL_ID,
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> Json:
        """An `app_mention` event; `<@BOT>` is put in front of the text when missing."""
        if f"<@{self.bot_user_id}>" not in text:
            text = f"<@{self.bot_user_id}> {text}"
        return self._message_like("app_mention", text, user, channel, ts, thread_ts)

    def message_event(
        self,
        text: str,
        *,
        user: str = MEMBER_USER_ID,
        channel: str = DEFAULT_CHANNEL_ID,
        ts: str | None = None,
        thread_ts: str | None = None,
        channel_type: str | None = None,
    ) -> Json:
        """A plain `message` event (message.channels / message.im)."""
        event = self._message_like("message", text, user, channel, ts, thread_ts)
        event["channel_type"] = channel_type or ("im" if channel.startswith("D") else "channel")
        return event

    def _message_like(
        self,
        type_: str,
        text: str,
        user: str,
        channel: str,
        ts: str | None,
        thread_ts: str | None,
    ) -> Json:
        ts = ts or self.new_ts()
        event: Json = {
            "type": type_,
            "user": user,
            "text": text,
            "ts": ts,
            "client_msg_id": str(uuid.uuid4()),
            "team": self.team_id,
            "channel": channel,
            "event_ts": ts,
        }
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
        return event

    def _remember_event_message(self, event: Mapping[str, Any]) -> None:
        """A message-like event a test sends reports a message that exists in Slack."""
        if event.get("type") not in ("message", "app_mention") or event.get("subtype"):
            return
        channel, ts, user = event.get("channel"), event.get("ts"), event.get("user")
        if not (isinstance(channel, str) and isinstance(ts, str) and isinstance(user, str)):
            return
        message = self._user_message(channel, ts, user, str(event.get("text", "")))
        message["ts"] = ts  # as the event wrote it
        for key in ("client_msg_id", "thread_ts", "blocks"):
            if key in event:
                message[key] = copy.deepcopy(event[key])
        self._store(channel, message)  # already stored (same ts): keep the first

    # --- history ---------------------------------------------------------------------------

    def _user_message(self, channel: str, ts: str | float | None, user: str, text: str) -> Json:
        """A user's message in `channel` (created if unknown) at `ts` (None: a new one),
        not stored yet. The fake hands out no ts at or before it from now on."""
        if channel not in self.channels:
            self.add_channel(channel)
        key = ts_key(ts) if ts is not None else ts_key(self.new_ts())
        self._last_ts = max(self._last_ts, key)
        return {
            "type": "message",
            "user": user,
            "text": text,
            "ts": format_ts(key),
            "team": self.team_id,
        }

    def _find(self, channel: str, ts: str) -> Json | None:
        for message in self.history.get(channel, []):
            if message["ts"] == ts:
                return message
        return None

    def _store(self, channel: str, message: Json) -> bool:
        """Insert in ts order; False (and nothing stored) if the ts is taken. A reply
        updates its parent's thread fields as Slack does."""
        messages = self.history.setdefault(channel, [])
        key = ts_key(message["ts"])
        keys = [ts_key(m["ts"]) for m in messages]
        index = bisect.bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            return False
        messages.insert(index, message)
        thread_ts = message.get("thread_ts")
        if thread_ts is not None and thread_ts != message["ts"]:
            parent = self._find(channel, thread_ts)
            if parent is not None:
                message.setdefault("parent_user_id", parent.get("user"))
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = int(parent.get("reply_count", 0)) + 1
                users: list[str] = parent.setdefault("reply_users", [])
                if message.get("user") and message["user"] not in users:
                    users.append(message["user"])
                parent["reply_users_count"] = len(users)
                parent["latest_reply"] = max(
                    parent.get("latest_reply", message["ts"]), message["ts"], key=ts_key
                )
        return True

    def _bot_message(self, text: str, ts: str, blocks: list[Any] | None) -> Json:
        message: Json = {
            "user": self.bot_user_id,
            "type": "message",
            "ts": ts,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": text,
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "deleted": False,
                "team_id": self.team_id,
            },
        }
        if blocks is not None:
            message["blocks"] = blocks
        return message

    # --- waiting ---------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(
        self,
        find: Callable[[], T | None],
        timeout: float,  # noqa: ASYNC109
        describe: Callable[[], str],
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = find()
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(describe())
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
