"""Ingest: what happens to every message a platform shows us."""

from __future__ import annotations

import logging

from bot.commands import CommandContext, Commands
from bot.domain import ChatMessage, Reply
from bot.ports import MessageStore

log = logging.getLogger(__name__)


class Ingest:
    def __init__(self, messages: MessageStore, commands: Commands) -> None:
        self.messages = messages
        self.commands = commands

    async def on_message(self, message: ChatMessage, *, mentions_bot: bool = False) -> Reply | None:
        """Stores a person's message (bots, ours included, are never stored: the model
        should learn the channel's people, not itself) and, when it mentions the bot,
        answers with the channel's next message."""
        if message.is_bot:
            return None
        if message.text.strip():
            await self.messages.add(message)
        if not mentions_bot:
            return None
        return await self.commands.reply(CommandContext(message.channel, message.author))
