"""The App Home on the Slack fake: `app_home_opened` events and `block_actions`
payloads (a member pressing a button in their Home tab) as Slack sends them, and the
methods the bot answers with: views.publish (recorded in `published`, checked as Slack
checks a home view) and users.conversations (the channels a member is in)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from tests.fakes.slack.protocol import Json, SlackApiFailure, str_param
from tests.fakes.slack.records import RecordedCall
from tests.fakes.slack.web_api import MethodHandler, WebApi

MAX_BLOCKS = 100


class Home(WebApi):
    """Recorded: `published` (each views.publish: user id and view). State:
    `channel_members` (channel id → member ids; a channel not in it has everyone)."""

    def _init_home(self) -> None:
        self.published: list[tuple[str, Json]] = []
        self.channel_members: dict[str, set[str]] = {}

    def _home_methods(self) -> dict[str, MethodHandler]:
        return {
            "views.publish": self._views_publish,
            "users.conversations": self._users_conversations,
        }

    def home_view(self, user_id: str) -> Json:
        """The Home view last published for `user_id`."""
        for user, view in reversed(self.published):
            if user == user_id:
                return view
        raise KeyError(f"no home view published for {user_id}")

    def app_home_opened_event(self, user_id: str, tab: str = "home") -> Json:
        return {
            "type": "app_home_opened",
            "user": user_id,
            "channel": "D" + user_id[1:],
            "tab": tab,
            "event_ts": f"{time.time():.6f}",
        }

    def block_actions_body(
        self, user_id: str, action_id: str, value: str | None = None, team_id: str | None = None
    ) -> bytes:
        """A member pressed button `action_id` in their Home tab (its confirm dialog, if
        it has one, already said yes): the `payload` form field Slack posts."""
        view = self.home_view(user_id)
        action: Json = {
            "type": "button",
            "action_id": action_id,
            "block_id": "b",
            "text": {"type": "plain_text", "text": action_id},
            "action_ts": f"{time.time():.6f}",
        }
        if value is not None:
            action["value"] = value
        team = team_id or self.team_id
        payload = {
            "type": "block_actions",
            "user": {"id": user_id, "username": user_id.lower(), "name": user_id, "team_id": team},
            "api_app_id": self.app_id,
            "token": "verification-token",
            "container": {"type": "view", "view_id": "V1"},
            "trigger_id": f"{time.time_ns()}.1.x",
            "team": {"id": team, "domain": "fake"},
            "is_enterprise_install": False,
            "view": {**copy.deepcopy(view), "id": "V1", "team_id": team},
            "actions": [action],
        }
        return urlencode({"payload": json.dumps(payload)}).encode()

    def _views_publish(self, call: RecordedCall) -> Json:
        user_id = str_param(call.params, "user_id")
        if user_id is None or user_id not in self.users:
            raise SlackApiFailure("user_not_found")
        raw = call.params.get("view")
        view = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(view, Mapping) or view.get("type") != "home":
            raise SlackApiFailure("invalid_arguments")
        blocks = view.get("blocks")
        if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
            raise SlackApiFailure("invalid_blocks")
        self.published.append((user_id, dict(view)))
        self._notify()
        return {"view": {"id": "V1", "team_id": self.team_id, **view}}

    def _users_conversations(self, call: RecordedCall) -> Json:
        user_id = str_param(call.params, "user")
        if user_id is None or user_id not in self.users:
            raise SlackApiFailure("user_not_found")
        channels: list[Any] = [
            copy.deepcopy(c)
            for cid, c in self.channels.items()
            if not cid.startswith("D") and user_id in self.channel_members.get(cid, {user_id})
        ]
        return {"channels": channels, "response_metadata": {"next_cursor": ""}}
