"""Showing a generation as it is written: one platform message, edited as the text grows.

The engine hands an adapter the whole text so far a few times a second (a TextListener,
bot/ports.py); platforms allow far fewer edits than that. A LiveMessage coalesces those
texts and shows the newest one at most once per interval, never with two edits of one
message in flight (an older edit landing after a newer one would show text going
backwards), and on `finish` waits for the edit in flight and then shows the complete
text, so the complete text is always the last thing shown.

Edits that fail are logged and skipped: streaming is a courtesy, the complete reply is
what counts. Logs never carry the text (message content is personal data), nor an
exception's message, which for the platforms' clients can quote the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.token_bucket import TokenBucket

log = logging.getLogger(__name__)

Show = Callable[[str], Awaitable[None]]
Clock = Callable[[], float]


class EditBudget(TokenBucket):
    """A token bucket that several live messages share, for a platform whose edit limit
    is per account rather than per message (Slack's chat.update: Tier 3, about 50 a
    minute per workspace). Only intermediate edits take from it: a complete text is
    always shown, and the platform client waits out a rate limit if one is hit."""


class LiveMessage:
    """One message that shows a growing text.

    `show` puts a text on the platform: the first call posts the message (or fills in a
    deferred answer), later calls edit it; it is never called twice at once. `render`
    turns a partial text into what to show (render.py's partial_*: only the settled
    part, rendered); an empty result shows nothing. Call the instance with each partial
    text (it is a TextListener: it returns at once), then `finish` with the complete,
    rendered text; an adapter whose `finish` returns False (nothing was shown, or the
    complete text could not be) posts the reply as it would have without streaming.
    """

    def __init__(
        self,
        show: Show,
        render: Callable[[str], str],
        *,
        interval_s: float,
        budget: EditBudget | None = None,
        what: str = "message",
        clock: Clock = time.monotonic,
    ) -> None:
        self._show = show
        self._render = render
        self.interval_s = interval_s
        self._budget = budget
        self._what = what  # names the platform and kind in logs, never the content
        self._clock = clock
        self._pending: str | None = None  # the newest text not shown yet
        self.shown: str | None = None  # the last text the platform accepted
        self._next_at = 0.0  # when the next edit may go
        self._failed = False  # the message could not even be posted: stop trying
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __call__(self, text: str) -> None:
        if self._closing.is_set() or self._failed:
            return
        rendered = self._render(text)
        if not rendered or rendered == (self._pending or self.shown):
            return
        self._pending = rendered
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Shows the newest pending text whenever the interval (and the shared budget)
        allow; ends when nothing is pending, to be started again by the next text."""
        while self._pending is not None and not self._closing.is_set():
            wait = max(self._next_at - self._clock(), 0.0)
            if wait == 0 and self._budget is not None and not self._budget.take():
                wait = max(self._budget.wait_s(), 0.001)
            if wait > 0:
                # Sleeps, unless `finish` comes first: then the complete text goes
                # instead of this one.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), wait)
                continue
            text, self._pending = self._pending, None
            await self._put(text)
            if self.shown is None:
                self._failed = True  # e.g. no right to post here: the reply goes as before
                return

    async def _put(self, text: str) -> bool:
        try:
            await self._show(text)
        except Exception as exc:
            log.warning("%s: a streamed update failed (%s)", self._what, describe(exc))
            return False
        finally:
            self._next_at = self._clock() + self.interval_s
        self.shown = text
        return True

    async def __aenter__(self) -> LiveMessage:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        """Leaves no edit behind: waits for the one in flight, or, when the reply is
        not coming (cancelled, failed), drops it."""
        if kind is None:
            await self.stop()
        else:
            self._closing.set()
            if self._task is not None:
                self._task.cancel()

    async def stop(self) -> str | None:
        """Takes no more partial texts and waits for the edit in flight, if any; the
        text the message shows now (None: nothing was shown)."""
        self._closing.set()
        if self._task is not None:
            await self._task
        return self.shown

    async def finish(self, final: str) -> bool:
        """Shows the complete `final` text (once the interval allows) where a partial
        text was shown. False when nothing was shown, or the complete text could not be:
        then the caller posts it as a reply of its own."""
        if await self.stop() is None:
            return False
        if final == self.shown:
            return True
        wait = self._next_at - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        return await self._put(final)


def describe(exc: BaseException) -> str:
    """An exception for the log without its message: discord.py's HTTPException and
    slack_sdk's SlackApiError quote the platform's answer, which can hold the text."""
    parts = [type(exc).__name__]
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        parts.append(str(status))
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code:
        parts.append(f"code {code}")
    error = None
    with contextlib.suppress(Exception):  # SlackApiError's response; others have none
        error = exc.response.get("error")  # type: ignore[attr-defined]
    if isinstance(error, str):
        parts.append(error)
    return " ".join(parts)
