"""The Discord fake's REST plumbing: recording each request, reading its body (JSON or
multipart), authorisation, the rate limits a test asks for, routing to the handlers the
other modules define, and Discord's JSON answers and errors. Also waiting for a request."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.discord.gateway import Gateway
from tests.fakes.discord.protocol import Json
from tests.fakes.discord.records import RecordedFile, RecordedRequest
from tests.fakes.ratelimit import RateLimit, RateLimiter
from tests.fakes.transport import recorded_headers

Params = dict[str, str]
Handler = Callable[[RecordedRequest, Params], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]  # method, path pattern (relative to the API base), handler


def snowflake(name: str) -> str:
    """A path pattern's named snowflake segment."""
    return rf"(?P<{name}>\d+)"


APP = snowflake("app_id")
GUILD = snowflake("guild_id")
CHANNEL = snowflake("channel_id")
MESSAGE = snowflake("message_id")
TOKEN = r"(?P<token>[^/]+)"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """JSON with Content-Type exactly `application/json`: discord.py compares the header
    verbatim and treats anything else (aiohttp adds "; charset=utf-8") as text."""
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def json_error(status: int, message: str, code: int, errors: Json | None = None) -> web.Response:
    body: Json = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return json_response(body, status=status)


def form_error(path: str, code: str, message: str) -> web.Response:
    """400 Invalid Form Body, as Discord nests it: {"errors": {"content": {"_errors": [...]}}}."""
    errors: Json = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path.split(".")):
        errors = {key: errors}
    return json_error(400, "Invalid Form Body", 50035, errors)


class Refused(Exception):
    """Raised by a handler (or a check it calls): the fake answers `response`."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def refusal(status: int, message: str, code: int) -> Refused:
    """`raise refusal(404, "Unknown Channel", 10003)`: a JSON error."""
    return Refused(json_error(status, message, code))


def invalid_form(path: str, code: str, message: str) -> Refused:
    """`raise invalid_form("content", ...)`: 400 Invalid Form Body for one field."""
    return Refused(form_error(path, code, message))


def json_object(recorded: RecordedRequest) -> Json:
    """The request's JSON body if it is an object, else {}."""
    return recorded.json if isinstance(recorded.json, dict) else {}


def no_content() -> web.Response:
    return web.Response(status=204)


@dataclass
class _Waiter:
    predicate: Callable[[RecordedRequest], bool]
    future: asyncio.Future[RecordedRequest]


class Rest(Gateway):
    """The REST half of the fake. Recorded: `requests` (every REST request),
    `tokens_seen` (Authorization headers) and `unknown_routes`."""

    def _init_rest(self, routes: Sequence[Route]) -> None:
        self.requests: list[RecordedRequest] = []
        self.tokens_seen: list[str] = []
        self.unknown_routes: list[str] = []
        self._rate_limits = RateLimiter()
        self._waiters: list[_Waiter] = []
        self._routes = [
            (method, re.compile(pattern), handler) for method, pattern, handler in routes
        ]

    def rate_limit_next(
        self,
        route: str,
        retry_after: float = 0.5,
        *,
        method: str | None = None,
        is_global: bool = False,
        count: int = 1,
    ) -> None:
        """The next `count` requests whose "METHOD /path" contains `route` answer 429."""
        self._rate_limits.limit_next(
            route,
            retry_after,
            method=method.upper() if method else None,
            is_global=is_global,
            count=max(count, 1),
        )

    async def wait_for_request(
        self,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 (the test-facing API reads better this way)
        *,
        method: str | None = None,
        path: str | None = None,
        start: int = 0,
    ) -> RecordedRequest:
        """The first request (from index `start` of `requests`, including those already
        recorded) with the given method, containing `path`, and satisfying `predicate`."""

        def check(request: RecordedRequest) -> bool:
            return request.matches(method, path) and (predicate is None or predicate(request))

        for request in self.requests[start:]:
            if check(request):
                return request
        future: asyncio.Future[RecordedRequest] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(check, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            seen = [f"{r.method} {r.path} -> {r.status}" for r in self.requests[start:]]
            raise TimeoutError(f"no matching request within {timeout}s; saw {seen}") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _cancel_waiters(self) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.cancel()
        self._waiters.clear()

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        path = "/" + request.match_info["tail"]
        headers = recorded_headers(request)
        auth = request.headers.get("Authorization")
        if auth is not None:
            self.tokens_seen.append(auth)
        recorded = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            json=None,
            headers=headers,
            time=arrived,
        )
        try:
            response = await self._answer(request, recorded, auth)
        except Exception as exc:  # a bug in the fake: answer 500 and keep it visible
            response = json_error(500, f"fake error: {exc!r}", 0)
        response.headers["Via"] = "1.1 google"
        recorded.status = response.status
        if isinstance(response, web.Response) and response.body is not None:
            with contextlib.suppress(ValueError, TypeError):
                recorded.response = json.loads(response.text or "null")
        self.requests.append(recorded)
        for waiter in list(self._waiters):
            if not waiter.future.done() and waiter.predicate(recorded):
                waiter.future.set_result(recorded)
        return response

    async def _answer(
        self, request: web.Request, recorded: RecordedRequest, auth: str | None
    ) -> web.StreamResponse:
        try:
            await self._read_body(request, recorded)
        except ValueError:
            return json_error(400, "The request body contains invalid JSON.", 50109)

        key = f"{recorded.method} {recorded.path}"
        limited = self._rate_limits.take(
            lambda limit: limit.route in key and limit.method in (None, recorded.method)
        )
        if limited is not None:
            return self._too_many_requests(limited)

        method_matched = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(recorded.path)
            if match is None:
                continue
            if method != recorded.method:
                method_matched = True
                continue
            public = recorded.path.startswith(("/interactions/", "/webhooks/"))
            if not public and not self._authorised(auth):
                return json_error(401, "401: Unauthorized", 0)
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            try:
                return await handler(recorded, params)
            except Refused as refused:
                return refused.response
        self.unknown_routes.append(f"{recorded.method} {recorded.path}")
        if method_matched:
            return json_error(405, "405: Method Not Allowed", 0)
        return json_error(404, "Unknown route", 0)

    def _authorised(self, auth: str | None) -> bool:
        if auth is None or not auth.startswith("Bot "):
            return False
        return self.token is None or auth == f"Bot {self.token}"

    @staticmethod
    async def _read_body(request: web.Request, recorded: RecordedRequest) -> None:
        if not request.can_read_body:
            return
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                data = await part.read()
                if part.name == "payload_json":
                    recorded.json = json.loads(data)
                else:
                    recorded.files.append(
                        RecordedFile(
                            field=part.name or "",
                            filename=part.filename,
                            content_type=part.headers.get("Content-Type"),
                            data=bytes(data),
                        )
                    )
            return
        raw = await request.read()
        if raw:
            recorded.json = json.loads(raw)

    @staticmethod
    def _too_many_requests(limit: RateLimit) -> web.Response:
        body: Json = {
            "message": "You are being rate limited.",
            "retry_after": limit.retry_after,
            "global": limit.is_global,
        }
        headers = {
            "Retry-After": str(max(1, math.ceil(limit.retry_after))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + limit.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{limit.retry_after:.3f}",
            "X-RateLimit-Bucket": "fake" + secrets.token_hex(8),
            "X-RateLimit-Scope": "global" if limit.is_global else "user",
        }
        if limit.is_global:
            headers["X-RateLimit-Global"] = "true"
        return json_response(body, status=429, headers=headers)

    @staticmethod
    async def _no_content(recorded: RecordedRequest, params: Params) -> web.Response:
        return no_content()
