"""The core's one entry point for adapters, and the error policy of errors.py.

Adapters translate platform events into calls on Core and post what it returns; they
never see an exception: a UserError becomes its reason, anything else is logged with
its traceback and becomes a short generic message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from bot import messages as M
from bot.core.command_values import Command
from bot.core.commands import Commands
from bot.core.context import CommandContext
from bot.core.home import Home, HomeState
from bot.core.ingest import Ingest
from bot.core.text_commands import parse_command, parse_named
from bot.domain import ChannelRef, ChatMessage, Reply
from bot.errors import UserError
from bot.outages import explained
from bot.ports import TextListener

log = logging.getLogger(__name__)


class Core:
    def __init__(self, commands: Commands, ingest: Ingest) -> None:
        self.commands = commands
        self.ingest = ingest
        self.homes = Home(ingest.replies.stores)

    async def on_message(
        self,
        message: ChatMessage,
        *,
        mentions_bot: bool = False,
        stream: TextListener | None = None,
    ) -> Reply | None:
        """Stores a message; answers it when it mentions the bot (`stream` hears the
        answer as it is written)."""
        return await _safely(
            lambda: self.ingest.on_message(message, mentions_bot=mentions_bot, stream=stream)
        )

    async def on_command(
        self, ctx: CommandContext, command: Command | str, *, named: str | None = None
    ) -> Reply:
        """Runs a command value, or a line as typed ('/settings set top_k 40'), which
        goes through the one parser (bot/core/text_commands.py) first. `named`: the
        platform already split the command's name off (Slack's `/continue <text>`)."""

        async def run() -> Reply:
            if isinstance(command, str):
                value = parse_named(named, command) if named else parse_command(command)
            else:
                value = command
            return await self.commands.execute(ctx, value)

        with M.speaking(ctx.locale):
            reply = await _safely(run)
        assert reply is not None
        return reply

    async def on_posted(
        self,
        ref: ChannelRef,
        reply: Reply,
        posted: Sequence[tuple[str, str]],
        *,
        thread: str | None = None,
    ) -> None:
        """The platform showed a generated reply as these messages ((id, text) each, in
        `thread` on Slack): kept, so that a reply to one continues the conversation."""
        await _safely(lambda: self._posted(ref, reply, posted, thread))

    async def _posted(
        self,
        ref: ChannelRef,
        reply: Reply,
        posted: Sequence[tuple[str, str]],
        thread: str | None,
    ) -> None:
        await self.ingest.replies.conversations.posted(ref, reply, posted, thread)

    async def home(
        self, workspace: tuple[str, str], visible: Sequence[ChannelRef], viewer: str
    ) -> HomeState:
        """What a member's home view shows (bot/core/home.py)."""
        return await self.homes.state(workspace, visible, viewer)

    async def on_edit(self, ref: ChannelRef, external_id: str, text: str, at: datetime) -> None:
        await _safely(lambda: self._edit(ref, external_id, text, at))

    async def on_delete(self, ref: ChannelRef, external_ids: Sequence[str]) -> None:
        await _safely(lambda: self._delete(ref, external_ids))

    async def _edit(self, ref: ChannelRef, external_id: str, text: str, at: datetime) -> None:
        await self.ingest.on_edit(ref, external_id, text, at)

    async def _delete(self, ref: ChannelRef, external_ids: Sequence[str]) -> None:
        await self.ingest.on_delete(ref, external_ids)


async def _safely(call: Callable[[], Awaitable[Reply | None]]) -> Reply | None:
    try:
        return await call()
    except UserError as e:
        return Reply.error(e.reason)
    except Exception as e:
        # The traceback goes to the log; the user gets no exception text, which could
        # hold message content, paths or secrets: only a full disk or a damaged
        # database is named (bot/outages.py).
        log.exception("unhandled error while handling an event")
        return Reply.error(explained(e))
