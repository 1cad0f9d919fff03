"""The console channel: a chat channel in the terminal, the embedded default.

Lines typed (or piped in) are the channel's messages; `/continue …`, `/settings …`,
`/models`, `/help` and `@tsuzuki …` work as on the platforms. The local user is the
channel's admin. Output is plain lines, so it works in scripts: generated text goes to
stdout, errors to stderr.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import sys
import threading
import uuid
from datetime import UTC, datetime
from typing import TextIO

from adapters.render import render_console
from bot import messages as M
from bot.commands import CommandContext
from bot.core import Core
from bot.domain import Author, ChannelRef, ChatMessage, Reply

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
        if line.startswith("/"):
            reply = await self.core.on_command(self.ctx, line)
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
            reply = await self.core.on_message(message, mentions_bot=mention is not None)
        if reply is not None:
            await self.send(self.channel, reply)

    async def send(self, channel: ChannelRef, reply: Reply) -> None:
        out = self.stderr if reply.is_error else self.stdout
        many = len(reply.texts) > 1
        for i, text in enumerate(reply.texts, start=1):
            prefix = M.t("variant", i=i, n=len(reply.texts)) + " " if many else ""
            for piece in render_console(text):
                self._print(prefix + piece, out)

    def notice(self, text: str) -> None:
        """A line from the bot itself (a new model version took over), on stderr so
        piped output stays the channel's text."""
        self._print(text, self.stderr)

    def _print(self, text: str, out: TextIO | None = None) -> None:
        out = out or self.stdout
        out.write(text + "\n")
        out.flush()
