"""The console channel: a chat channel in the terminal, the embedded default.

Lines typed (or piped in) are the channel's messages; `/continue …`, `/settings …`,
`/models`, `/help` and `@tsuzuki …` work as on the platforms. The local user is the
channel's admin. Output is plain lines, so it works in scripts: generated text goes to
stdout, errors to stderr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import re
import sys
import threading
import uuid
from datetime import UTC, datetime
from typing import TextIO

from adapters.render import partial_console, render_console
from bot import messages as M
from bot.core.context import CommandContext
from bot.core.entry import Core
from bot.domain import Author, ChannelRef, ChatMessage, Notice, Reply

BOT_NAME = "tsuzuki"
_MENTION = re.compile(rf"^@{BOT_NAME}\b[:,]?\s*", re.IGNORECASE)


class ConsoleAdapter:
    name = "console"

    def __init__(
        self,
        core: Core,
        channel: ChannelRef,
        *,
        model_name: str = "",
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.core = core
        self.channel = channel
        self.model_name = model_name
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        user = getpass.getuser()
        self.author = Author(id=user, name=user, is_admin=True)
        self.ctx = CommandContext(channel, self.author, channel.channel)

    async def run(self) -> None:
        interactive = self.stdin.isatty()
        if interactive:
            self._print(M.t("console_welcome", channel=self.channel, model=self.model_name))
        lines = self._read_lines()
        while True:
            if interactive:
                self.stdout.write("> ")
                self.stdout.flush()
            line = await lines.get()
            if line is None:
                break
            await self.handle_line(line.rstrip("\r\n"))

    def _read_lines(self) -> asyncio.Queue[str | None]:
        """Feeds stdin lines into a queue from a daemon thread: a blocked readline()
        must not keep the process alive after Ctrl-C, and must not block the loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def pump() -> None:
            for line in self.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=pump, name="console-stdin", daemon=True).start()
        return queue

    async def handle_line(self, line: str) -> None:
        if not line.strip():
            return
        reply: Reply | None
        live = _LiveLine(self.stdout)
        if line.startswith("/"):
            # Only a /continue for one text streams; other commands ignore `stream`.
            reply = await self.core.on_command(dataclasses.replace(self.ctx, stream=live), line)
        else:
            mention = _MENTION.match(line)
            text = line[mention.end() :] if mention else line
            message = ChatMessage(
                channel=self.channel,
                external_id=uuid.uuid4().hex,
                author=self.author,
                text=text,
                created_at=datetime.now(UTC),
            )
            reply = await self.core.on_message(
                message, mentions_bot=mention is not None, stream=live
            )
        if reply is not None and not live.finish(reply):
            await self.send(self.channel, reply)

    async def send(self, channel: ChannelRef, reply: Reply) -> None:
        out = self.stderr if reply.is_error else self.stdout
        many = len(reply.texts) > 1
        for i, text in enumerate(reply.texts, start=1):
            prefix = M.t("variant", i=i, n=len(reply.texts)) + " " if many else ""
            for piece in render_console(text):
                self._print(prefix + piece, out)
        if reply.image is not None:
            self._print(M.t("console_image", path=reply.image), out)

    async def post_notice(self, notice: Notice) -> None:
        """A training notice: its text, and where its loss curve is (a terminal shows
        no image)."""
        self.notice(notice.text)
        if notice.image is not None:
            self.notice(M.t("console_image", path=notice.image))

    def notice(self, text: str) -> None:
        """A line from the bot itself (a new model version took over), on stderr so
        piped output stays the channel's text."""
        self._print(text, self.stderr)

    def _print(self, text: str, out: TextIO | None = None) -> None:
        out = out or self.stdout
        out.write(text + "\n")
        out.flush()


class _LiveLine:
    """Prints a generation as it is written: each time the text grows, what it adds.
    A terminal cannot take back what it printed, so a text that does not extend what
    is on the line (the engine's cleaning changed its end) waits for the complete one."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.printed = ""

    def __call__(self, text: str) -> None:
        shown = partial_console(text)
        if len(shown) > len(self.printed) and shown.startswith(self.printed):
            self.out.write(shown[len(self.printed) :])
            self.out.flush()
            self.printed = shown

    def finish(self, reply: Reply) -> bool:
        """Completes the line with the reply; False when the reply must be printed in
        full (nothing was printed, or the reply is not the printed text's end)."""
        if not self.printed:
            return False
        one = len(reply.texts) == 1 and not reply.is_error
        final = render_console(reply.texts[0])[0] if one else ""
        if not final.startswith(self.printed):
            self.out.write("\n")  # ends the partial line; the reply follows in full
            self.out.flush()
            return False
        self.out.write(final[len(self.printed) :] + "\n")
        self.out.flush()
        return True
