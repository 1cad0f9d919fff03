"""Reply chains: a member's reply to one of the bot's messages continues the
conversation it was written in.

The bot's posts are kept (bot/ports.py BotPostStore) with the conversation each
answered, as message ids; a reply to one (Discord: a message reference to it; Slack: a
message in a thread the bot started or answered in) is answered after that
conversation. Its messages are read back by id, so a message deleted or a member who
opted out since then drops out of it, as from the channel's history.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain import ChannelRef, ChatMessage, Reply
from bot.ports import Stores

# The most messages of a conversation a reply is written after (the newest); the
# prompt's context budget may keep fewer (bot/generation/prompt.py cuts the oldest).
CHAIN_MAX = 24


class Conversations:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    async def chain(self, message: ChatMessage, *, follow_replies: bool) -> tuple[str, ...] | None:
        """The conversation `message` continues, itself last; None when it replies to
        none of the bot's posts (or `follow_replies` is off: then a mention of the bot
        starts a conversation of its own, and nothing else is one)."""
        post = None
        if follow_replies and message.thread:
            post = await self.stores.posts.newest_in_thread(message.channel, message.thread)
        elif follow_replies and message.reply_to:
            post = await self.stores.posts.find(message.channel, message.reply_to)
        if post is None:
            return None
        return (*post.chain, post.external_id, message.external_id)[-CHAIN_MAX:]

    async def texts(self, ref: ChannelRef, chain: Sequence[str]) -> list[str]:
        """The conversation's texts, oldest first: members' messages as stored now,
        the bot's as it posted them; what is gone is left out."""
        members = await self.stores.messages.texts(ref, chain)
        own = await self.stores.posts.texts(ref, [i for i in chain if i not in members])
        return [t for i in chain if (t := members.get(i) or own.get(i))]

    async def posted(
        self, ref: ChannelRef, reply: Reply, posted: Sequence[tuple[str, str]], thread: str | None
    ) -> None:
        """Keeps what the platform showed of a generated reply ((message id, text) per
        message), with the conversation it answered."""
        if reply.generated and posted:
            await self.stores.posts.add(ref, posted, reply.chain, thread)
