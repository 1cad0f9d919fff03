"""Channels: their names, an admin's sampling settings and training consent, audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from bot.domain import ChannelRef
from bot.records import ChannelInfo
from storage.db import Database
from storage.models import AuditEntry, Channel
from storage.stores.rows import (
    as_utc,
    audit_entry,
    channel_id_query,
    channel_query,
    channel_ref,
    ensure_channel,
    ref_query,
)


def channel_info(channel: Channel, ref: ChannelRef) -> ChannelInfo:
    return ChannelInfo(
        id=channel.id,
        ref=ref,
        name=channel.name,
        training_enabled=channel.training_enabled,
        sampling=dict(channel.sampling or {}),
        history_changed_at=(
            as_utc(channel.history_changed_at) if channel.history_changed_at else None
        ),
    )


class SqlChannelStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def ensure(self, ref: ChannelRef, name: str = "") -> ChannelInfo:
        existing = await self.get(ref)
        if existing is not None and (not name or existing.name == name):
            return existing
        async with self.db.write() as session:
            return channel_info(await ensure_channel(session, ref, name), ref)

    async def get(self, ref: ChannelRef) -> ChannelInfo | None:
        async with self.db.read() as session:
            channel = (await session.scalars(channel_query(ref))).one_or_none()
            return None if channel is None else channel_info(channel, ref)

    async def set_sampling(
        self, ref: ChannelRef, key: str, value: Any, *, actor: str
    ) -> tuple[Any, Any]:
        async with self.db.write() as session:
            channel = await ensure_channel(session, ref, "")
            sampling = dict(channel.sampling or {})
            old = sampling.get(key)
            if value is None:
                sampling.pop(key, None)
            else:
                sampling[key] = value
            # A new dict, so the JSON column is seen as changed.
            channel.sampling = sampling
            channel.updated_at = datetime.now(UTC)
            action = "settings.set" if value is not None else "settings.reset"
            session.add(
                audit_entry(actor, action, channel_id=channel.id, key=key, old=old, new=value)
            )
            return old, value

    async def set_training(self, ref: ChannelRef, enabled: bool, *, actor: str) -> bool:
        """Turns training consent on or off (audited); returns the previous value."""
        async with self.db.write() as session:
            channel = await ensure_channel(session, ref, "")
            old = channel.training_enabled
            channel.training_enabled = enabled
            channel.updated_at = datetime.now(UTC)
            action = "training.on" if enabled else "training.off"
            session.add(audit_entry(actor, action, channel_id=channel.id, old=old, new=enabled))
            return old

    async def training_channels(self) -> list[ChannelRef]:
        """Channels whose admins turned training on."""
        async with self.db.read() as session:
            rows = await session.execute(
                ref_query().where(Channel.training_enabled.is_(True)).order_by(Channel.id)
            )
            return [channel_ref(*row) for row in rows]

    async def known(self) -> list[ChannelRef]:
        """Every channel the bot has a row for: it saw a message, an event or a
        command there, or an import named it."""
        async with self.db.read() as session:
            rows = await session.execute(ref_query().order_by(Channel.id))
            return [channel_ref(*row) for row in rows]

    async def audit(self, ref: ChannelRef) -> list[AuditEntry]:
        async with self.db.read() as session:
            rows = await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.channel_id == channel_id_query(ref))
                .order_by(AuditEntry.id)
            )
            return list(rows)
