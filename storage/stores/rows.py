"""What the stores share: stored times, channel lookups and get-or-create of the rows
every other row hangs from (workspace, user, channel), the channel lock and audit
entries."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import ChannelRef, Platform
from storage.models import AuditEntry, Channel, UnlearnedMessage, User, Workspace

# The audit entry a channel gets each time a member's messages in it are forgotten.
# How many it has is the channel's "forget epoch" (SqlModelRegistry.forget_epoch).
FORGET_ACTION = "messages.forget"
# Rows per INSERT statement in bulk imports: large enough to amortise round trips,
# small enough to stay under PostgreSQL's 32767 bind parameters (8 columns a row).
BULK_CHUNK = 2000

_NO_VALUE: Any = object()


def as_utc(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def insert(session: AsyncSession, table: Any) -> Any:
    """INSERT that supports on_conflict_do_nothing on either backend."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def channel_ref(platform: str, workspace: str, channel: str) -> ChannelRef:
    """A ChannelRef from stored columns (the platform was validated on the way in)."""
    return ChannelRef(cast(Platform, platform), workspace, channel)


def ref_query() -> Select[str, str, str]:
    """The columns channel_ref reads, for channels (narrowed by the caller)."""
    return select(Workspace.platform, Workspace.external_id, Channel.external_id).join(
        Workspace, Channel.workspace_id == Workspace.id
    )


def channel_query(ref: ChannelRef) -> Select[Channel]:
    return (
        select(Channel)
        .join(Workspace, Channel.workspace_id == Workspace.id)
        .where(
            Workspace.platform == ref.platform,
            Workspace.external_id == ref.workspace,
            Channel.external_id == ref.channel,
        )
    )


def channel_id_query(ref: ChannelRef) -> Any:
    return channel_query(ref).with_only_columns(Channel.id).scalar_subquery()


async def ensure_workspace(session: AsyncSession, platform: str, external_id: str) -> int:
    await session.execute(
        insert(session, Workspace)
        .values(platform=platform, external_id=external_id, name="", created_at=datetime.now(UTC))
        .on_conflict_do_nothing()
    )
    ws_id = await session.scalar(
        select(Workspace.id).where(
            Workspace.platform == platform, Workspace.external_id == external_id
        )
    )
    assert ws_id is not None
    return ws_id


def new_user(ws_id: int, external_id: str, name: str = "", is_bot: bool = False) -> dict[str, Any]:
    """A users row's values, for a member first seen now."""
    return {
        "workspace_id": ws_id,
        "external_id": external_id,
        "display_name": name[:200],
        "is_bot": is_bot,
        "opted_out": False,
        "created_at": datetime.now(UTC),
    }


async def ensure_user(session: AsyncSession, ws_id: int, external_id: str) -> int:
    await session.execute(
        insert(session, User).values(new_user(ws_id, external_id)).on_conflict_do_nothing()
    )
    uid = await session.scalar(
        select(User.id).where(User.workspace_id == ws_id, User.external_id == external_id)
    )
    assert uid is not None
    return uid


async def ensure_channel(session: AsyncSession, ref: ChannelRef, name: str) -> Channel:
    ws_id = await ensure_workspace(session, ref.platform, ref.workspace)
    now = datetime.now(UTC)
    await session.execute(
        insert(session, Channel)
        .values(
            workspace_id=ws_id,
            external_id=ref.channel,
            name=name or ref.channel,
            training_enabled=False,
            sampling={},
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )
    channel = (await session.scalars(channel_query(ref))).one()
    if name and channel.name != name:
        channel.name = name
    return channel


async def lock_channel(session: AsyncSession, channel_id: int) -> None:
    """Serialises forgetting a channel's messages with registering its versions and
    with live edits and deletes in it. Row lock on PostgreSQL; SQLite's write
    transactions are serial already."""
    await lock_channels(session, [channel_id])


async def lock_channels(session: AsyncSession, channel_ids: Iterable[int]) -> None:
    """The channels' rows locked for a change to their messages, in id order.

    Every transaction that changes messages of channels it did not just make locks
    them first, before any users or messages rows, in the same order: so an opt-out
    (channels, then its user, then the messages) and a batch of live writes (channels,
    then authors, then messages) wait for each other instead of deadlocking.
    FOR NO KEY UPDATE: two of these wait for each other, but not for the FOR KEY
    SHARE that stores of new messages hold on their channels."""
    ids = sorted(set(channel_ids))
    if ids:
        await session.execute(
            select(Channel.id)
            .where(Channel.id.in_(ids))
            .order_by(Channel.id)
            .with_for_update(key_share=True)
        )


def audit_entry(
    actor: str,
    action: str,
    *,
    new: Any,
    old: Any = _NO_VALUE,
    channel_id: int | None = None,
    key: str | None = None,
) -> AuditEntry:
    """An audit row, stamped now; values are stored as JSON, `old` only when given."""
    return AuditEntry(
        actor=actor,
        channel_id=channel_id,
        action=action,
        key=key,
        old_value=None if old is _NO_VALUE else json.dumps(old),
        new_value=json.dumps(new),
        at=datetime.now(UTC),
    )


async def unlearned(
    session: AsyncSession, channel_id: int, external_ids: Iterable[str]
) -> set[str]:
    """Which of these messages of the channel were taken out of the history at a
    member's word (never stored again)."""
    ids = sorted(set(external_ids))
    found: set[str] = set()
    for start in range(0, len(ids), BULK_CHUNK):
        found.update(
            await session.scalars(
                select(UnlearnedMessage.external_id).where(
                    UnlearnedMessage.channel_id == channel_id,
                    UnlearnedMessage.external_id.in_(ids[start : start + BULK_CHUNK]),
                )
            )
        )
    return found
