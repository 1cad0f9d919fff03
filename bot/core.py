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
from bot.commands import CommandContext, Commands
from bot.domain import ChannelRef, ChatMessage, Reply
from bot.errors import UserError
from bot.ingest import Ingest
from bot.ports import MessageStore

log = logging.getLogger(__name__)


class Core:
    def __init__(self, commands: Commands, ingest: Ingest, messages: MessageStore) -> None:
        self.commands = commands
        self.ingest = ingest
        self.messages = messages

    async def on_message(self, message: ChatMessage, *, mentions_bot: bool = False) -> Reply | None:
        return await _safely(lambda: self.ingest.on_message(message, mentions_bot=mentions_bot))

    async def on_text_command(self, ctx: CommandContext, line: str) -> Reply:
        reply = await _safely(lambda: self.commands.run_text(ctx, line))
        assert reply is not None
        return reply

    async def on_command(
        self, ctx: CommandContext, run: Callable[[Commands, CommandContext], Awaitable[Reply]]
    ) -> Reply:
        """Runs one structured command, e.g. `lambda c, ctx: c.continue_text(ctx, p)`."""
        reply = await _safely(lambda: run(self.commands, ctx))
        assert reply is not None
        return reply

    async def on_edit(self, ref: ChannelRef, external_id: str, text: str, at: datetime) -> None:
        await _safely(lambda: self._edit(ref, external_id, text, at))

    async def on_delete(self, ref: ChannelRef, external_ids: Sequence[str]) -> None:
        await _safely(lambda: self._delete(ref, external_ids))

    async def _edit(self, ref: ChannelRef, external_id: str, text: str, at: datetime) -> None:
        await self.messages.edit(ref, external_id, text, at)

    async def _delete(self, ref: ChannelRef, external_ids: Sequence[str]) -> None:
        await self.messages.delete(ref, external_ids)


async def _safely(call: Callable[[], Awaitable[Reply | None]]) -> Reply | None:
    try:
        return await call()
    except UserError as e:
        return Reply.error(e.reason)
    except Exception:
        # The traceback goes to the log; the user gets no exception text, which could
        # hold message content, paths or secrets.
        log.exception("unhandled error while handling an event")
        return Reply.error(M.t("internal_error"))
