"""The Slack fake's Web API plumbing: recording each call, reading its parameters (query,
form or JSON), tokens by kind, the rate limits, failures and stubs a test asks for,
dispatch to the method handlers the other modules define, and waiting for a call. Also
the two methods about the API itself (api.test, auth.test) and the channel a call names."""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.ratelimit import NextRequests, RateLimiter
from tests.fakes.slack.protocol import BOT_SCOPES, Json, SlackApiFailure, str_param
from tests.fakes.slack.records import RecordedCall
from tests.fakes.slack.state import SlackState
from tests.fakes.transport import recorded_headers

MethodHandler = Callable[[RecordedCall], Json]


@dataclass(frozen=True)
class _Failure:
    method: str
    error: str
    status: int
    headers: dict[str, str]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header."""
    if authorization is not None and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


class WebApi(SlackState):
    """Recorded: `calls` (every Web API call), `tokens_seen` (Authorization header
    values) and `unknown_methods`."""

    def _init_web_api(self, methods: Mapping[str, MethodHandler]) -> None:
        self.calls: list[RecordedCall] = []
        self.tokens_seen: list[str] = []
        self.unknown_methods: list[str] = []
        self._req_ids = itertools.count(1)
        self._rate_limits = RateLimiter()
        self._failures = NextRequests[_Failure]()
        self._stubs: dict[str, MethodHandler] = {}
        self._methods = dict(methods)

    def _web_api_methods(self) -> dict[str, MethodHandler]:
        return {"api.test": self._api_test, "auth.test": self._auth_test}

    # --- from the test side ----------------------------------------------------------------

    def rate_limit_next(self, method: str, retry_after: int = 1, *, count: int = 1) -> None:
        """The next `count` calls of `method` answer HTTP 429, `Retry-After: <retry_after>`
        and `{"ok": false, "error": "ratelimited"}`."""
        self._rate_limits.limit_next(method, int(retry_after), count=count)

    def fail_next(
        self,
        method: str,
        error: str,
        *,
        status: int = 200,
        count: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next `count` calls of `method` answer `{"ok": false, "error": error}` with
        HTTP `status` (Slack answers most errors with 200)."""
        self._failures.add(_Failure(method, error, status, dict(headers or {})), count)

    def stub_method(self, method: str, response: Json | MethodHandler) -> None:
        """Answer `method` (known or not) with a fixed body (`ok: true` added when missing)
        or with a function of the RecordedCall. A handler may raise SlackApiFailure."""
        if callable(response):
            self._stubs[method] = response
        else:
            body = {"ok": True, **response}
            self._stubs[method] = lambda _call: copy.deepcopy(body)

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == method]

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[RecordedCall], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 (the test-facing API reads better this way)
        start: int = 0,
    ) -> RecordedCall:
        """The first call of `method` (from index `start` of `calls`, including calls
        already recorded) satisfying `predicate`. Rate-limited and failed calls count;
        filter on `call.ok` or `call.status` to skip them."""

        def find() -> RecordedCall | None:
            for call in self.calls[start:]:
                if call.method == method and (predicate is None or predicate(call)):
                    return call
            return None

        def describe() -> str:
            seen = [f"{c.method} -> {c.status} {c.error or ''}".strip() for c in self.calls[start:]]
            return f"no matching {method} call within {timeout}s; saw {seen}"

        return await self._wait(find, timeout, describe)

    # --- HTTP ------------------------------------------------------------------------------

    async def _read_params(self, request: web.Request) -> tuple[Json, bool]:
        """Query string plus body; the bool says whether the body was JSON."""
        params: Json = dict(request.query)
        if not request.can_read_body:
            return params, False
        ctype = request.content_type
        if ctype == "application/json":
            raw = await request.read()
            data = json.loads(raw) if raw.strip() else {}
            if not isinstance(data, dict):
                raise SlackApiFailure("invalid_json")
            params.update(data)
            return params, True
        if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = value
                elif isinstance(value, bytes | bytearray):
                    params[key] = bytes(value).decode(errors="replace")
                else:
                    params[key] = {"filename": value.filename, "content_type": value.content_type}
            return params, False
        raw = await request.read()
        if raw:
            params["_raw_body"] = raw.decode(errors="replace")
        return params, False

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        arrived = time.monotonic()
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            self.tokens_seen.append(authorization)
        call = RecordedCall(
            method=method,
            params={},
            headers=recorded_headers(request),
            time=arrived,
            http_verb=request.method,
            token=bearer_token(authorization),
        )
        self.calls.append(call)
        status: int = 200
        body: Json = {"ok": False, "error": "internal_error"}
        extra_headers: dict[str, str] = {}
        try:
            params, from_json = await self._read_params(request)
            body_token = params.pop("token", None)
            # A token inside a JSON body is ignored by Slack; forms and query strings work.
            if call.token is None and body_token and not from_json:
                call.token = str(body_token)
            call.params = params
            status, body, extra_headers = self._answer(call)
        except SlackApiFailure as failure:
            body = {"ok": False, "error": failure.error, **failure.extra}
        except json.JSONDecodeError:
            body = {"ok": False, "error": "invalid_json"}
        call.status, call.response = status, body
        response_headers = {"X-Slack-Req-Id": f"fake-{next(self._req_ids)}", **extra_headers}
        if call.token is not None and call.token.startswith("xoxb-"):
            response_headers["X-OAuth-Scopes"] = BOT_SCOPES
        self._notify()
        return web.json_response(copy.deepcopy(body), status=status, headers=response_headers)

    def _answer(self, call: RecordedCall) -> tuple[int, Json, dict[str, str]]:
        method = call.method
        limit = self._rate_limits.take(lambda limit: limit.route == method)
        if limit is not None:
            retry_after = {"Retry-After": str(int(limit.retry_after))}
            return 429, {"ok": False, "error": "ratelimited"}, retry_after
        failure = self._failures.take(lambda failure: failure.method == method)
        if failure is not None:
            return failure.status, {"ok": False, "error": failure.error}, failure.headers
        handler = self._stubs.get(method) or self._methods.get(method)
        if handler is None:
            self.unknown_methods.append(method)
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        self._check_token(call)
        body = handler(call)
        return 200, {"ok": True, **body} if "ok" not in body else body, {}

    def _check_token(self, call: RecordedCall) -> None:
        token = call.token
        if not token:
            raise SlackApiFailure("not_authed")
        if call.method == "apps.connections.open":
            if not token.startswith("xapp-"):
                raise SlackApiFailure("not_allowed_token_type")
            if self.app_token is not None and token != self.app_token:
                raise SlackApiFailure("invalid_auth")
            return
        if call.method == "api.test":
            return
        if token.startswith("xapp-"):
            raise SlackApiFailure("not_allowed_token_type")
        if not self._accepts(token):
            raise SlackApiFailure("invalid_auth")

    def _accepts(self, token: str) -> bool:
        """A bot or user token (the bot's own, when the fake was given one)."""
        return token.startswith(("xoxb-", "xoxp-")) and (
            self.bot_token is None or not token.startswith("xoxb-") or token == self.bot_token
        )

    # --- methods ---------------------------------------------------------------------------

    def _api_test(self, call: RecordedCall) -> Json:
        error = call.params.get("error")
        if error:
            raise SlackApiFailure(str(error), args=call.params)
        return {"args": call.params}

    def _auth_test(self, call: RecordedCall) -> Json:
        return copy.deepcopy(self.auth_info)

    def _require(self, call: RecordedCall, name: str) -> str:
        value = str_param(call.params, name)
        if value is None:
            raise SlackApiFailure("invalid_arguments" if name != "channel" else "channel_not_found")
        return value

    def _channel(self, call: RecordedCall, *, posting: bool = False) -> str:
        """The channel id a call names: an id, `#name` or a name; when posting, a user id
        (or a D id) opens the direct message."""
        value = self._require(call, "channel")
        if value in self.channels:
            return value
        if posting and value[:1] in ("U", "W") and value in self.users:
            dm = "D" + value[1:]
            if dm not in self.channels:
                self.add_channel(dm, user=value)
            return dm
        if value.startswith("D"):
            self.add_channel(value)
            return value
        name = value.removeprefix("#")
        for channel_id, channel in self.channels.items():
            if channel.get("name") == name:
                return channel_id
        raise SlackApiFailure("channel_not_found")
