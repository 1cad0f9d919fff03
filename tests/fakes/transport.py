"""What the Discord and Slack fakes both need of aiohttp: a server on 127.0.0.1 with its
lifecycle, a websocket whose sends stay in order, and a request's headers as the fakes
record them."""

from __future__ import annotations

import asyncio
import socket
from typing import Self

from aiohttp import web

__all__ = ["LocalServer", "OrderedSocket", "recorded_headers"]


class LocalServer:
    """A fake's listening side: an aiohttp application on 127.0.0.1, which the subclass
    builds in `start()` and serves with `_listen`; `async with` starts and closes it."""

    port = 0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def _listen(self, app: web.Application, port: int = 0) -> None:
        """Serves `app` on 127.0.0.1:`port` (0: any free one) and sets `port`."""
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def _stop_listening(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def recorded_headers(request: web.Request) -> dict[str, str]:
    """A request's headers without Authorization (the fakes record tokens apart)."""
    return {k: v for k, v in request.headers.items() if k.lower() != "authorization"}


class OrderedSocket:
    """The server side of one websocket. Sends are serialised, and each frame is encoded
    under the lock (`encode`), so a stateful encoding such as a zlib stream stays in order."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()

    def encode(self, text: str) -> str | bytes:
        """The frame for `text`: a text frame unless a subclass compresses it."""
        return text

    async def send_text(self, text: str) -> bool:
        """False (nothing sent) when the socket is closed or closes while sending."""
        async with self.lock:
            if self.ws.closed:
                return False
            try:
                frame = self.encode(text)
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return False
        return True
