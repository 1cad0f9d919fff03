"""Members: opting out (which forgets their messages, and the versions that learnt
from them) and lending a channel their voice."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import ChannelRef
from bot.records import ForgetPolicy, VersionRecord
from bot.statuses import VersionStatus
from storage.db import Database
from storage.models import Message, ModelVersion, User, VoiceConsent, Workspace
from storage.stores.rows import (
    FORGET_ACTION,
    as_utc,
    audit_entry,
    channel_id_query,
    ensure_channel,
    ensure_user,
    ensure_workspace,
    insert,
    lock_channel,
    lock_channels,
)


class SqlUserStore:
    def __init__(self, db: Database, forget_policy: ForgetPolicy) -> None:
        self.db = db
        # Which versions a member's forgotten messages take with them
        # (bot.training.lineage.plan_forget).
        self.forget_policy = forget_policy

    async def set_opted_out(
        self, platform: str, workspace: str, user_id: str, opted_out: bool, *, actor: str
    ) -> int:
        """A user's own choice. Opting out forgets every stored message of theirs in
        the workspace (returns how many) and keeps new ones out."""
        key = f"{platform}:{workspace}/{user_id}"
        async with self.db.write() as session:
            ws_id = await ensure_workspace(session, platform, workspace)
            await ensure_user(session, ws_id, user_id)
            user_ids = select(User.id).where(
                User.workspace_id == ws_id, User.external_id == user_id
            )
            if opted_out:
                # The channels their messages are in, before their user row: the lock
                # order of every change to stored messages (rows.lock_channels).
                held = await session.scalars(
                    select(Message.channel_id).where(Message.author_id.in_(user_ids)).distinct()
                )
                await lock_channels(session, list(held))
            await session.execute(
                update(User)
                .where(User.workspace_id == ws_id, User.external_id == user_id)
                .values(opted_out=opted_out)
            )
            action = "user.optout" if opted_out else "user.optin"
            session.add(audit_entry(actor, action, key=key, new=opted_out))
            if not opted_out:
                return 0
            # Forgotten means no voice either, in any channel of the workspace.
            await session.execute(delete(VoiceConsent).where(VoiceConsent.user_id.in_(user_ids)))
            # Every version trained on these messages goes with them, in this transaction.
            firsts = await session.execute(
                select(Message.channel_id, func.min(Message.id), func.count())
                .where(Message.author_id.in_(user_ids))
                .group_by(Message.channel_id)
            )
            for channel_id, first_id, count in firsts.all():
                session.add(
                    audit_entry(actor, FORGET_ACTION, channel_id=channel_id, key=key, new=count)
                )
                await self._forget_versions(session, channel_id, first_id, actor)
            res = await session.execute(delete(Message).where(Message.author_id.in_(user_ids)))
            return int(res.rowcount)  # type: ignore[attr-defined]

    async def _forget_versions(
        self, session: AsyncSession, channel_id: int, first_id: int, actor: str
    ) -> None:
        """Applies the forget policy to the channel's versions, given the first of the
        forgotten messages: the versions it names are marked forgotten, and the one it
        names answers instead of the active one. The rows stay, so version numbers are
        never reused; the files go (TrainingService.delete_forgotten)."""
        # Taken before the versions are read, so a run registering a version meanwhile
        # (SqlModelRegistry.add) either is seen here or sees this forgetting.
        await lock_channel(session, channel_id)
        rows = list(
            await session.scalars(
                select(ModelVersion)
                .where(ModelVersion.channel_id == channel_id)
                .order_by(ModelVersion.version)
            )
        )
        plan = self.forget_policy([_record(row) for row in rows], first_id)
        for row in rows:
            if row.version in plan.forgotten:
                row.status = VersionStatus.FORGOTTEN
            elif row.version == plan.reactivate:
                row.status = VersionStatus.ACTIVE
                row.activated_at = datetime.now(UTC)
                session.add(
                    audit_entry(
                        actor,
                        "model.activate",
                        channel_id=channel_id,
                        old=plan.replaces,
                        new=plan.reactivate,
                    )
                )

    async def set_voice(self, ref: ChannelRef, user_id: str, on: bool, *, actor: str) -> None:
        """A member's own consent to being written as in this channel (audited)."""
        async with self.db.write() as session:
            channel = await ensure_channel(session, ref, "")
            uid = await ensure_user(session, channel.workspace_id, user_id)
            if on:
                await session.execute(
                    insert(session, VoiceConsent)
                    .values(channel_id=channel.id, user_id=uid, created_at=datetime.now(UTC))
                    .on_conflict_do_nothing()
                )
            else:
                await session.execute(
                    delete(VoiceConsent).where(
                        VoiceConsent.channel_id == channel.id, VoiceConsent.user_id == uid
                    )
                )
            key = f"{ref.platform}:{ref.workspace}/{user_id}"
            action = "voice.on" if on else "voice.off"
            session.add(audit_entry(actor, action, channel_id=channel.id, key=key, new=on))

    async def has_voice(self, ref: ChannelRef, user_id: str) -> bool:
        async with self.db.read() as session:
            found = await session.scalar(
                select(VoiceConsent.id)
                .join(User, VoiceConsent.user_id == User.id)
                .where(
                    VoiceConsent.channel_id == channel_id_query(ref),
                    User.external_id == user_id,
                    User.opted_out.is_(False),
                )
            )
            return found is not None

    async def is_opted_out(self, platform: str, workspace: str, user_id: str) -> bool:
        async with self.db.read() as session:
            value = await session.scalar(
                select(User.opted_out)
                .join(Workspace, User.workspace_id == Workspace.id)
                .where(
                    Workspace.platform == platform,
                    Workspace.external_id == workspace,
                    User.external_id == user_id,
                )
            )
            return bool(value)


def _record(row: ModelVersion) -> VersionRecord:
    return VersionRecord(
        version=row.version,
        status=VersionStatus(row.status),
        method=row.method,
        base_model=row.base_model,
        last_message_id=row.last_message_id,
        activated_at=None if row.activated_at is None else as_utc(row.activated_at),
    )
