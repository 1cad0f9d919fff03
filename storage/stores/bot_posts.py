"""The bot's own posts, kept for reply chains: what it said and after which messages.
Never trained on (they are not in `messages`); the newest KEPT_PER_CHANNEL of a
channel are kept, an older reply chain simply starts afresh."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, delete, select

from bot.domain import ChannelRef
from bot.records import BotPost as BotPostInfo
from storage.db import Database
from storage.models import BotPost
from storage.stores.rows import channel_id_query, ensure_channel, insert

KEPT_PER_CHANNEL = 1000


def _info(row: BotPost) -> BotPostInfo:
    return BotPostInfo(row.external_id, row.text, tuple(row.chain or ()), row.thread)


class SqlBotPostStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        ref: ChannelRef,
        posts: Sequence[tuple[str, str]],
        chain: Sequence[str],
        thread: str | None = None,
    ) -> None:
        """Keeps `posts` ((external id, text), as posted) with the conversation they
        answered; a post seen again keeps what was first kept."""
        if not posts:
            return
        async with self.db.write() as session:
            channel = await ensure_channel(session, ref, "")
            rows = [
                {
                    "channel_id": channel.id,
                    "external_id": external_id,
                    "thread": thread,
                    "text": text,
                    "chain": list(chain),
                }
                for external_id, text in posts
            ]
            await session.execute(insert(session, BotPost).values(rows).on_conflict_do_nothing())
            # Older posts than the newest KEPT_PER_CHANNEL go.
            cutoff = (
                select(BotPost.id)
                .where(BotPost.channel_id == channel.id)
                .order_by(BotPost.id.desc())
                .offset(KEPT_PER_CHANNEL)
                .limit(1)
                .scalar_subquery()
            )
            await session.execute(
                delete(BotPost).where(BotPost.channel_id == channel.id, BotPost.id <= cutoff)
            )

    async def find(self, ref: ChannelRef, external_id: str) -> BotPostInfo | None:
        found = await self._newest(ref, BotPost.external_id == external_id)
        return found[0] if found else None

    async def newest_in_thread(self, ref: ChannelRef, thread: str) -> BotPostInfo | None:
        """The bot's newest post in a thread (Slack), or the thread's root when it is
        the bot's."""
        found = await self._newest(
            ref, (BotPost.thread == thread) | (BotPost.external_id == thread)
        )
        return found[0] if found else None

    async def texts(self, ref: ChannelRef, external_ids: Sequence[str]) -> dict[str, str]:
        """What the bot posted as each of these messages that is kept, by id."""
        if not external_ids:
            return {}
        found = await self._newest(ref, BotPost.external_id.in_(list(external_ids)), limit=None)
        return {post.external_id: post.text for post in found}

    async def _newest(
        self, ref: ChannelRef, where: ColumnElement[bool], limit: int | None = 1
    ) -> list[BotPostInfo]:
        """The channel's posts that match `where`, newest first."""
        query = (
            select(BotPost)
            .where(BotPost.channel_id == channel_id_query(ref), where)
            .order_by(BotPost.id.desc())
            .limit(limit)
        )
        async with self.db.read() as session:
            return [_info(row) for row in await session.scalars(query)]

    async def delete(self, ref: ChannelRef, external_ids: Sequence[str]) -> int:
        """Posts deleted on the platform go here too."""
        if not external_ids:
            return 0
        # Nearly every deletion is of a member's message: a read (which never waits on
        # the writer) spares those a write transaction.
        async with self.db.read() as session:
            found = (
                await session.scalars(
                    select(BotPost.id).where(
                        BotPost.channel_id == channel_id_query(ref),
                        BotPost.external_id.in_(list(external_ids)),
                    )
                )
            ).all()
        if not found:
            return 0
        async with self.db.write() as session:
            res = await session.execute(
                delete(BotPost).where(
                    BotPost.channel_id == channel_id_query(ref),
                    BotPost.external_id.in_(list(external_ids)),
                )
            )
            return int(res.rowcount)  # type: ignore[attr-defined]
