"""Ingest: what happens to every message a platform shows us."""

from __future__ import annotations

import logging

from bot.commands import CommandContext, Commands
from bot.domain import ChatMessage, Reply
from bot.ports import MessageStore, UserStore

log = logging.getLogger(__name__)


class Ingest:
    def __init__(
        self, messages: MessageStore, commands: Commands, users: UserStore | None = None
    ) -> None:
        self.messages = messages
        self.commands = commands
        self.users = users

    async def on_message(self, message: ChatMessage, *, mentions_bot: bool = False) -> Reply | None:
        """Stores a person's message (bots, ours included, are never stored: the model
        should learn the channel's people, not itself) and, when it mentions the bot,
        answers with the channel's next message."""
        if message.is_bot:
            return None
        ref = message.channel
        opted_out = self.users is not None and await self.users.is_opted_out(
            ref.platform, ref.workspace, message.author.id
        )
        if message.text.strip() and not opted_out:
            await self.messages.add(message)
        if not mentions_bot:
            return None
        return await self.commands.reply(CommandContext(message.channel, message.author))
