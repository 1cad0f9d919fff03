"""Messages: stored (live or imported in bulk), edited, deleted, and read back for
replies and for training, never with the text of members who opted out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import Author, ChannelRef, ChatMessage
from bot.records import ImportBatch, ImportCounts, LiveFingerprint, LiveRow, TrainingText
from storage.db import Database
from storage.models import Channel, Message, UnlearnedMessage, User, VoiceConsent
from storage.stores.group_commit import GroupCommit
from storage.stores.live_writes import Delete, Edit, LiveWrites, Result, Store, Write
from storage.stores.message_bulk import bulk_insert, lock_references
from storage.stores.rows import (
    BULK_CHUNK,
    as_utc,
    audit_entry,
    channel_id_query,
    ensure_channel,
    ensure_workspace,
    insert,
    lock_channels,
    new_user,
    unlearned,
)
from storage.stores.secrets import instance_secret

# The audit entry of a message taken out of the history ("Don't learn from this").
UNLEARN_ACTION = "messages.unlearn"
# Rows per driver call in add_batch: few enough calls to cost nothing, and a progress
# report after each.
_IMPORT_CHUNK = 10_000


def _group_batch(
    messages: list[ChatMessage],
) -> tuple[dict[ChannelRef, list[ChatMessage]], dict[tuple[str, str], dict[str, Author]]]:
    """Each channel's messages in batch order, and each (platform, workspace)'s
    authors by external id (the last one seen wins, as it names the user)."""
    groups: dict[ChannelRef, list[ChatMessage]] = {}
    authors: dict[tuple[str, str], dict[str, Author]] = {}
    ref: ChannelRef | None = None
    group: list[ChatMessage] = []
    seen: dict[str, Author] = {}
    for m in messages:
        # Parsers share one ChannelRef object per channel: the lookups run once per
        # run of messages, not once per message.
        if m.channel is not ref:
            ref = m.channel
            group = groups.setdefault(ref, [])
            seen = authors.setdefault((ref.platform, ref.workspace), {})
        group.append(m)
        seen[m.author.id] = m.author
    return groups, authors


VOICE_KEY = "voice-tags"


async def _history_changed(session: AsyncSession, ref: ChannelRef) -> None:
    """Marks the channel's history as changed under its versions (a delete, an edit)."""
    await session.execute(
        update(Channel)
        .where(Channel.id == channel_id_query(ref))
        .values(history_changed_at=datetime.now(UTC))
    )


class SqlMessageStore:
    """`group_commit` (live ingest's default): add, edit and delete from many
    coroutines share transactions (storage/stores/group_commit.py); without it each is
    its own transaction, as before."""

    def __init__(
        self, db: Database, *, group_commit: bool = True, max_queued: int = 10_000
    ) -> None:
        self.db = db
        self._voice_key: bytes | None = None
        self.writes: GroupCommit[Write, Result] | None = None
        if group_commit:
            self.writes = GroupCommit(LiveWrites(db).apply, max_queued=max_queued)

    async def close(self) -> None:
        """Commits the writes still queued (a stopping bot loses none)."""
        if self.writes is not None:
            await self.writes.close()

    async def voice_key(self) -> bytes:
        """The key of the voice tags in this installation's training texts (see
        bot/domain.py voice_tag)."""
        if self._voice_key is None:
            self._voice_key = await instance_secret(self.db, VOICE_KEY)
        return self._voice_key

    async def add(self, message: ChatMessage) -> bool:
        if self.writes is not None:
            return bool(await self.writes.write(Store(message)))
        batch = ImportBatch(messages=[message])
        counts = await self.add_batch(batch)
        return counts[message.channel].imported == 1

    async def add_batch(
        self, batch: ImportBatch, progress: Callable[[int, int], None] | None = None
    ) -> dict[ChannelRef, ImportCounts]:
        """Stores every message of the batch in one transaction: all or nothing.
        Messages already stored (same channel and external id) are counted as
        duplicates and left as they are. `progress`, when given, is called with
        (messages handled, messages in the batch) as the rows go in."""
        groups, authors = _group_batch(batch.messages)
        refs = sorted(set(groups) | set(batch.channel_names))
        done, total = 0, len(batch.messages)
        result: dict[ChannelRef, ImportCounts] = {}
        async with self.db.write() as session:
            channel_ids: dict[ChannelRef, int] = {}
            for ref in refs:
                channel = await ensure_channel(session, ref, batch.channel_names.get(ref, ""))
                channel_ids[ref] = channel.id
            user_ids = await self._ensure_users(session, authors)
            opted_out = await self._opted_out(
                session, {uid for ids in user_ids.values() for uid in ids.values()}
            )
            await lock_references(
                session,
                channel_ids.values(),
                {uid for ids in user_ids.values() for uid in ids.values()},
            )
            store_rows = bulk_insert(session)
            for ref in refs:
                messages = groups.get(ref, [])
                ids = user_ids.get((ref.platform, ref.workspace), {})
                kept = [m for m in messages if ids[m.author.id] not in opted_out]
                gone = await unlearned(session, channel_ids[ref], (m.external_id for m in kept))
                kept_learnable = [m for m in kept if m.external_id not in gone]
                imported = 0
                for start in range(0, len(kept_learnable), _IMPORT_CHUNK):
                    chunk = kept_learnable[start : start + _IMPORT_CHUNK]
                    imported += await store_rows(session, channel_ids[ref], chunk, ids)
                    if progress is not None:
                        progress(done + start + len(chunk), total)
                done += len(messages)
                result[ref] = ImportCounts(
                    imported=imported,
                    duplicates=len(kept_learnable) - imported,
                    opted_out=len(messages) - len(kept),
                    unlearned=len(kept) - len(kept_learnable),
                )
        if progress is not None:
            progress(total, total)
        return result

    @staticmethod
    async def _opted_out(session: AsyncSession, user_ids: set[int]) -> set[int]:
        """Which of these users opted out (their text is never stored again)."""
        found: set[int] = set()
        ids = sorted(user_ids)
        for start in range(0, len(ids), BULK_CHUNK):
            found.update(
                await session.scalars(
                    select(User.id).where(
                        User.id.in_(ids[start : start + BULK_CHUNK]), User.opted_out.is_(True)
                    )
                )
            )
        return found

    @staticmethod
    async def _ensure_users(
        session: AsyncSession, wanted: dict[tuple[str, str], dict[str, Author]]
    ) -> dict[tuple[str, str], dict[str, int]]:
        """(platform, workspace) → user external id → users.id, creating missing users."""
        ids: dict[tuple[str, str], dict[str, int]] = {}
        for (platform, workspace), authors in wanted.items():
            ws_id = await ensure_workspace(session, platform, workspace)
            rows = [new_user(ws_id, a.id, a.name, a.is_bot) for a in authors.values()]
            for start in range(0, len(rows), BULK_CHUNK):
                await session.execute(
                    insert(session, User)
                    .values(rows[start : start + BULK_CHUNK])
                    .on_conflict_do_nothing()
                )
            found = ids[platform, workspace] = {}
            external = list(authors)
            for start in range(0, len(external), BULK_CHUNK):
                rows_found = await session.execute(
                    select(User.external_id, User.id).where(
                        User.workspace_id == ws_id,
                        User.external_id.in_(external[start : start + BULK_CHUNK]),
                    )
                )
                for ext, uid in rows_found:
                    found[ext] = uid
        return ids

    async def edit(self, ref: ChannelRef, external_id: str, text: str, at: datetime) -> bool:
        if self.writes is not None:
            return bool(await self.writes.write(Edit(ref, external_id, text, at)))
        async with self.db.write() as session:
            res = await session.execute(
                update(Message)
                .where(
                    Message.channel_id == channel_id_query(ref),
                    Message.external_id == external_id,
                    # An edit older than the stored one (late, or delivered again) is stale.
                    or_(Message.edited_at.is_(None), Message.edited_at <= as_utc(at)),
                )
                .values(text=text, edited_at=as_utc(at))
            )
            changed = bool(res.rowcount)  # type: ignore[attr-defined]
            if changed:
                await _history_changed(session, ref)
            return changed

    async def delete(self, ref: ChannelRef, external_ids: Sequence[str]) -> int:
        if self.writes is not None:
            return int(await self.writes.write(Delete(ref, tuple(external_ids))))
        async with self.db.write() as session:
            res = await session.execute(
                delete(Message).where(
                    Message.channel_id == channel_id_query(ref),
                    Message.external_id.in_(list(external_ids)),
                )
            )
            deleted = int(res.rowcount)  # type: ignore[attr-defined]
            if deleted:
                await _history_changed(session, ref)
            return deleted

    async def recent(self, ref: ChannelRef, limit: int) -> list[ChatMessage]:
        if limit <= 0:
            return []
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(Message, User)
                    .outerjoin(User, Message.author_id == User.id)
                    .where(
                        Message.channel_id == channel_id_query(ref),
                        # A reply's context never quotes a member who opted out.
                        or_(User.id.is_(None), User.opted_out.is_(False)),
                    )
                    .order_by(Message.created_at.desc(), Message.id.desc())
                    .limit(limit)
                )
            ).all()
        out = [
            ChatMessage(
                channel=ref,
                external_id=msg.external_id,
                author=Author(
                    id=user.external_id if user else "",
                    name=user.display_name if user else "",
                    is_bot=msg.is_bot,
                ),
                text=msg.text,
                created_at=as_utc(msg.created_at),
                edited_at=as_utc(msg.edited_at) if msg.edited_at else None,
            )
            for msg, user in rows
        ]
        out.reverse()
        return out

    async def texts(self, ref: ChannelRef, external_ids: Sequence[str]) -> dict[str, str]:
        """The stored text of each of these messages that is still here (deleted ones
        and those of members who opted out are not), by external id."""
        if not external_ids:
            return {}
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(Message.external_id, Message.text)
                    .outerjoin(User, Message.author_id == User.id)
                    .where(
                        Message.channel_id == channel_id_query(ref),
                        Message.external_id.in_(list(external_ids)),
                        or_(User.id.is_(None), User.opted_out.is_(False)),
                    )
                )
            ).all()
        return {external_id: text for external_id, text in rows}

    async def author_of(self, ref: ChannelRef, external_id: str) -> str | None:
        """The platform id of the stored message's author ("" when unknown); None when
        no such message is stored."""
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(Message.id, User.external_id)
                    .outerjoin(User, Message.author_id == User.id)
                    .where(
                        Message.channel_id == channel_id_query(ref),
                        Message.external_id == external_id,
                    )
                )
            ).first()
        return None if row is None else (row[1] or "")

    async def unlearn(self, ref: ChannelRef, external_id: str, *, actor: str) -> bool:
        """A message taken out of the channel's history at a member's or an admin's
        word (it stays on the platform), audited with who asked, and never stored
        again (import and live ingest look for it in unlearned_messages)."""
        async with self.db.write() as session:
            channel_id = (await session.execute(select(channel_id_query(ref)))).scalar()
            if channel_id is None:
                return False
            await lock_channels(session, [channel_id])  # the order every change keeps
            res = await session.execute(
                delete(Message).where(
                    Message.channel_id == channel_id, Message.external_id == external_id
                )
            )
            # Remembered whether or not it was stored: it is never stored again.
            await session.execute(
                insert(session, UnlearnedMessage)
                .values(channel_id=channel_id, external_id=external_id)
                .on_conflict_do_nothing()
            )
            if not res.rowcount:  # type: ignore[attr-defined]
                return False
            await _history_changed(session, ref)
            session.add(
                audit_entry(
                    actor, UNLEARN_ACTION, channel_id=channel_id, key="message", new=external_id
                )
            )
            return True

    async def count(self, ref: ChannelRef) -> int:
        async with self.db.read() as session:
            n = await session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.channel_id == channel_id_query(ref))
            )
            return int(n or 0)

    @staticmethod
    def _trainable(ref: ChannelRef, max_id: int | None = None) -> list[Any]:
        """Messages a model may learn from: people's (not bots'), and never those of
        users who opted out."""
        conditions = [
            Message.channel_id == channel_id_query(ref),
            Message.is_bot.is_(False),
            or_(User.id.is_(None), User.opted_out.is_(False)),
        ]
        if max_id is not None:
            conditions.append(Message.id <= max_id)
        return conditions

    async def training_snapshot(self, ref: ChannelRef) -> tuple[int, int]:
        """(how many trainable messages, the newest message id): a run reads exactly
        these, however many messages arrive while it prepares its data."""
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(func.count(), func.max(Message.id))
                    .select_from(Message)
                    .outerjoin(User, Message.author_id == User.id)
                    .where(*self._trainable(ref))
                )
            ).one()
            return int(row[0] or 0), int(row[1] or 0)

    async def count_trainable_after(self, ref: ChannelRef, after_id: int) -> int:
        """Trainable messages stored after message `after_id` (0: all of them)."""
        async with self.db.read() as session:
            n = await session.scalar(
                select(func.count())
                .select_from(Message)
                .outerjoin(User, Message.author_id == User.id)
                .where(*self._trainable(ref), Message.id > after_id)
            )
            return int(n or 0)

    async def iter_training_texts(
        self, ref: ChannelRef, max_id: int, page_size: int = 5000
    ) -> AsyncIterator[list[TrainingText]]:
        """Pages of (author name, text, voice), oldest first, up to message `max_id`;
        voice is the author's user id when they turned `/voice on` in this channel.
        Keyset pagination keeps each query cheap and memory flat on channels of
        millions."""
        after: tuple[Any, int] | None = None
        while True:
            query = (
                self._with_voice(ref, max_id, Message.created_at)
                .order_by(Message.created_at, Message.id)
                .limit(page_size)
            )
            if after is not None:
                query = query.where(tuple_(Message.created_at, Message.id) > tuple_(*after))
            async with self.db.read() as session:
                rows = (await session.execute(query)).all()
            if not rows:
                return
            yield [(name or "", text, voice or "") for _, _, name, text, voice in rows]
            after = (rows[-1][0], rows[-1][1])

    def _with_voice(self, ref: ChannelRef, max_id: int | None, *first: Any) -> Any:
        """The trainable messages as (*first, id, author name, text, voice), voice being
        the author's user id where they lent the channel their voice, else ""."""
        return (
            select(
                *first,
                Message.id,
                User.display_name,
                Message.text,
                case((VoiceConsent.id.is_not(None), User.external_id), else_=""),
            )
            .outerjoin(User, Message.author_id == User.id)
            .outerjoin(
                VoiceConsent,
                and_(
                    VoiceConsent.user_id == Message.author_id,
                    VoiceConsent.channel_id == Message.channel_id,
                ),
            )
            .where(*self._trainable(ref, max_id))
        )

    # --- the live counts (bot/engine/live.py) ----------------------------------------

    async def live_fingerprint(self, ref: ChannelRef, upto: int | None) -> LiveFingerprint:
        """The fingerprint of the channel's trainable messages (up to message `upto`)."""
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(
                        func.count(),
                        func.max(Message.id),
                        func.sum(Message.id),
                        func.max(Message.edited_at),
                    )
                    .select_from(Message)
                    .outerjoin(User, Message.author_id == User.id)
                    .where(*self._trainable(ref, upto))
                )
            ).one()
        edited = as_utc(row[3]) if row[3] is not None else None
        return LiveFingerprint(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0), edited)

    async def live_rows(
        self,
        ref: ChannelRef,
        *,
        upto: int | None,
        newest: int,
        after_id: int = 0,
        edited_after: datetime | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[LiveRow]:
        """Trainable messages, the newest `newest` of them: all, those after message
        `after_id`, those edited after `edited_after`, or those of `ids`."""
        query = (
            self._with_voice(ref, upto)
            .where(Message.id > after_id)
            .order_by(Message.id.desc())
            .limit(newest)
        )
        if edited_after is not None:
            query = query.where(Message.edited_at > as_utc(edited_after))
        rows: list[Any] = []
        async with self.db.read() as session:
            if ids is None:
                rows = list((await session.execute(query)).all())
            else:
                wanted = list(ids)
                for start in range(0, len(wanted), BULK_CHUNK):
                    chunk = wanted[start : start + BULK_CHUNK]
                    rows += (await session.execute(query.where(Message.id.in_(chunk)))).all()
        return [LiveRow(int(i), name or "", text, voice or "") for i, name, text, voice in rows]

    async def live_ids(self, ref: ChannelRef, upto: int | None) -> list[int]:
        """The ids of every trainable message (up to message `upto`)."""
        async with self.db.read() as session:
            found = await session.scalars(
                select(Message.id)
                .outerjoin(User, Message.author_id == User.id)
                .where(*self._trainable(ref, upto))
            )
            return [int(i) for i in found]
