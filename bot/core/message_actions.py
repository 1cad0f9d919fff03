"""What a member can do from a message itself (Discord's message context menu, Slack's
message shortcuts): "Continue this message" and "Don't learn from this"."""

from __future__ import annotations

from dataclasses import replace

from bot import messages as M
from bot.core.context import CommandContext
from bot.core.replies import Replies
from bot.domain import Reply
from bot.errors import UserError
from bot.ports import Stores


class MessageActions:
    def __init__(self, stores: Stores, replies: Replies) -> None:
        self.stores = stores
        self.replies = replies

    async def continue_message(
        self, ctx: CommandContext, external_id: str, text: str, author_id: str
    ) -> Reply:
        """The message's text continued; only the new text is posted (in reply to the
        message), so no one's message is handed back whole."""
        ref = ctx.channel
        if author_id and await self.stores.users.is_opted_out(
            ref.platform, ref.workspace, author_id
        ):
            raise UserError(M.t("action_opted_out"))
        reply = await self.replies.continue_text(ctx, text)
        texts = tuple(t[len(text) :].strip() if t.startswith(text) else t for t in reply.texts)
        texts = tuple(t for t in texts if t) or (M.t("reply_empty"),)
        return replace(reply, texts=texts, chain=(external_id,))

    async def unlearn(self, ctx: CommandContext, external_id: str) -> Reply:
        """The message leaves the channel's history (what training, the live counts and
        every later version read), audited; it stays on the platform. Its author's
        wish, or an admin's."""
        ref = ctx.channel
        author = await self.stores.messages.author_of(ref, external_id)
        if author is None:
            return Reply.info(M.t("unlearn_not_stored"))
        if author != ctx.actor.id and not ctx.actor.is_admin:
            raise UserError(M.t("unlearn_not_yours"))
        await self.stores.messages.unlearn(ref, external_id, actor=ctx.actor_id)
        return Reply.info(M.t("unlearned"))
