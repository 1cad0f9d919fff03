"""Ingest: what happens to every message a platform shows us."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from bot.core.context import CommandContext
from bot.core.replies import Replies
from bot.domain import ChannelRef, ChatMessage, Reply
from bot.ports import MessageStore, TextListener

log = logging.getLogger(__name__)

# Edits and deletions remembered for messages that may not be stored yet (see Ingest).
LATE_CHANGES = 10_000

# What became of a message: its newest edit (text, when), or None: it was deleted.
_Change = tuple[str, datetime] | None


class Ingest:
    def __init__(self, messages: MessageStore, replies: Replies) -> None:
        self.messages = messages
        self.replies = replies
        # A message's edit or deletion can be handled before the message is stored: its
        # own handling awaits more (storing it), so under load one event overtakes
        # another, and Slack delivers out of order, or again. Each change is remembered
        # before it is applied, and a message stored after it gets it too: no edit is
        # lost, and no deleted message comes back.
        self._changes: OrderedDict[tuple[ChannelRef, str], _Change] = OrderedDict()

    async def on_message(
        self,
        message: ChatMessage,
        *,
        mentions_bot: bool = False,
        stream: TextListener | None = None,
    ) -> Reply | None:
        """Stores a person's message (bots, ours included, are never stored: the model
        should learn the channel's people, not itself) and, when it mentions the bot or
        replies to one of its posts, answers with the channel's next message; otherwise
        sometimes writes it unasked (Replies.unprompted)."""
        if message.is_bot:
            return None
        ref = message.channel
        # The store leaves out a member who opted out (MessageStore.add says False).
        stored = bool(message.text.strip()) and await self.messages.add(message)
        if stored:
            await self._catch_up(ref, message.external_id)
        ctx = CommandContext(message.channel, message.author)
        if mentions_bot or message.reply_to or message.thread:
            # A mention, or a reply to one of the bot's posts (when the channel lets
            # replies be answered), is answered after the conversation it continues.
            options = await self.replies.settings.options(ref)
            conversations = self.replies.conversations
            chain = await conversations.chain(message, follow_replies=options.reply_to_replies)
            if chain is None and mentions_bot:
                chain = (message.external_id,)  # a mention starts a conversation
            if chain is not None:
                return await self.replies.reply(replace(ctx, stream=stream), chain)
        # A message seen for the first time (not a platform's re-delivery) may get the
        # channel's next message unprompted, by the channel's reply_chance.
        return await self.replies.unprompted(ctx) if stored else None

    async def on_edit(self, ref: ChannelRef, external_id: str, text: str, at: datetime) -> None:
        key = (ref, external_id)
        if key in self._changes:
            known = self._changes[key]
            if known is None or known[1] > at:
                return  # deleted, or a later edit came first: this one is stale
        self._remember(key, (text, at))
        await self.messages.edit(ref, external_id, text, at)

    async def on_delete(self, ref: ChannelRef, external_ids: Sequence[str]) -> None:
        for external_id in external_ids:
            self._remember((ref, external_id), None)
        await self.messages.delete(ref, external_ids)
        # One of the bot's own posts, deleted (by an admin, say), leaves its chains.
        await self.replies.stores.posts.delete(ref, external_ids)

    def _remember(self, key: tuple[ChannelRef, str], change: _Change) -> None:
        self._changes[key] = change
        self._changes.move_to_end(key)
        while len(self._changes) > LATE_CHANGES:
            self._changes.popitem(last=False)

    async def _catch_up(self, ref: ChannelRef, external_id: str) -> None:
        """A message just stored gets the change that was handled before it."""
        key = (ref, external_id)
        if key not in self._changes:
            return
        change = self._changes[key]
        if change is None:
            await self.messages.delete(ref, [external_id])
        else:
            await self.messages.edit(ref, external_id, *change)
