"""What Slack sends a bot, as module functions: `event_callback` payloads and slash
command fields (posted in HTTP mode, wrapped in envelopes in Socket Mode), the
`url_verification` handshake, and the request signature (HTTP mode)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec
from urllib.parse import urlencode

from tests.fakes.slack.protocol import (
    APP_ID,
    BOT_USER_ID,
    DEFAULT_CHANNEL_ID,
    DEFAULT_TEAM_DOMAIN,
    DEFAULT_TEAM_ID,
    ID_ALPHABET,
    MEMBER_USER_ID,
    VERIFICATION_TOKEN,
    Json,
)

P = ParamSpec("P")


def new_event_id() -> str:
    """An Events API event id (`Ev` + 10 characters)."""
    return "Ev" + "".join(secrets.choice(ID_ALPHABET) for _ in range(10))


def _trigger_id() -> str:
    return f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def event_callback(
    event: Mapping[str, Any],
    event_id: str | None = None,
    *,
    team_id: str = DEFAULT_TEAM_ID,
    api_app_id: str = APP_ID,
    bot_user_id: str = BOT_USER_ID,
    event_time: int | None = None,
    token: str = VERIFICATION_TOKEN,
) -> Json:
    """The `event_callback` payload Slack posts (HTTP mode) or wraps in an `events_api`
    envelope (Socket Mode), with `authorizations` naming the bot."""
    return {
        "token": token,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + base64.urlsafe_b64encode(secrets.token_bytes(24)).decode(),
    }


def slash_command_payload(
    command: str,
    text: str = "",
    user_id: str = MEMBER_USER_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    response_url: str = "",
    team_id: str = DEFAULT_TEAM_ID,
    *,
    channel_name: str = "general",
    user_name: str | None = None,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = APP_ID,
    trigger_id: str | None = None,
    token: str = VERIFICATION_TOKEN,
) -> dict[str, str]:
    """The fields of a slash command, all strings, in the order Slack sends them (form
    fields over HTTP, the `payload` object of a `slash_commands` envelope)."""
    return {
        "token": token,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name if user_name is not None else user_id.lower(),
        "command": command if command.startswith("/") else "/" + command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(),
    }


def message_action_payload(
    callback_id: str,
    message: Mapping[str, Any],
    user_id: str = MEMBER_USER_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    response_url: str = "",
    team_id: str = DEFAULT_TEAM_ID,
    *,
    channel_name: str = "general",
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    trigger_id: str | None = None,
    token: str = VERIFICATION_TOKEN,
) -> Json:
    """A message shortcut (`message_action`): a member picked the app's action on
    `message` (as conversations.history returns it). Slack posts it to the
    interactivity URL as a `payload` form field, or wraps it in an `interactive`
    envelope in Socket Mode."""
    return {
        "type": "message_action",
        "token": token,
        "action_ts": f"{time.time():.6f}",
        "team": {"id": team_id, "domain": team_domain},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": team_id, "name": user_id},
        "channel": {"id": channel_id, "name": channel_name},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id or _trigger_id(),
        "response_url": response_url,
        "message_ts": message["ts"],
        "message": dict(message),
    }


def message_action_body(*args: Any, **kwargs: Any) -> bytes:
    """A message shortcut as Slack posts it in HTTP mode: `payload=<json>`, form-encoded;
    arguments as `message_action_payload`'s."""
    return urlencode({"payload": json.dumps(message_action_payload(*args, **kwargs))}).encode()


def _encoded(
    name: str,
    build: Callable[P, Mapping[str, Any]],
    encode: Callable[[Mapping[str, Any]], str],
    doc: str,
) -> Callable[P, bytes]:
    """A function `name` that takes `build`'s arguments and returns what it builds,
    encoded as a request body."""

    def body(*args: P.args, **kwargs: P.kwargs) -> bytes:
        return encode(build(*args, **kwargs)).encode()

    body.__name__ = body.__qualname__ = name
    body.__doc__ = doc
    return body


event_body = _encoded(
    "event_body",
    event_callback,
    json.dumps,
    "The JSON body of an Events API request (HTTP mode); arguments as `event_callback`'s.",
)
slash_command_body = _encoded(
    "slash_command_body",
    slash_command_payload,
    urlencode,
    "A slash command as Slack posts it, `application/x-www-form-urlencoded`; arguments as "
    "`slash_command_payload`'s.",
)


def url_verification_body(
    challenge: str = "fake-challenge", token: str = VERIFICATION_TOKEN
) -> bytes:
    """The JSON body of the Events API `url_verification` handshake."""
    return json.dumps({"token": token, "challenge": challenge, "type": "url_verification"}).encode()


def sign(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """`X-Slack-Signature` (`v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`) and
    `X-Slack-Request-Timestamp`. The timestamp defaults to now; Slack's verifiers reject
    one more than five minutes away from their clock."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": str(ts)}


def signed_headers(
    signing_secret: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    content_type: str | None = None,
    retry_num: int | None = None,
    retry_reason: str | None = None,
) -> dict[str, str]:
    """`sign()` plus Content-Type (JSON when the body starts with `{`, else form) and, for a
    redelivery, `X-Slack-Retry-Num` / `X-Slack-Retry-Reason`."""
    headers = sign(signing_secret, body, timestamp)
    if content_type is None:
        is_json = body.lstrip().startswith(b"{")
        content_type = "application/json" if is_json else "application/x-www-form-urlencoded"
    headers["Content-Type"] = content_type
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    return headers
