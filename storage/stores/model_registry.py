"""The model registry: a channel's trained versions, which one answers, rollback and
reset, and what forgetting members' messages left to delete."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import ChannelRef, ModelVersionInfo
from bot.statuses import GONE_VERSIONS, VersionStatus
from storage.db import Database
from storage.models import AuditEntry, Channel, ModelVersion, Workspace
from storage.stores.rows import (
    FORGET_ACTION,
    as_utc,
    audit_entry,
    channel_id_query,
    channel_ref,
    ensure_channel,
    lock_channel,
)

# The statuses of versions that never answer again, in a fixed order for the SQL.
_GONE = tuple(sorted(GONE_VERSIONS))
# ModelVersionInfo's fields that a version row stores as they are, under the same name.
_SAME_FIELDS = tuple(
    f.name for f in fields(ModelVersionInfo) if f.name not in ("channel", "status", "created_at")
)


def version_info(ref: ChannelRef, row: ModelVersion) -> ModelVersionInfo:
    return ModelVersionInfo(
        channel=ref,
        status=VersionStatus(row.status),
        created_at=as_utc(row.created_at),
        **{name: getattr(row, name) for name in _SAME_FIELDS},
    )


def _version_row(channel_id: int, info: ModelVersionInfo, status: VersionStatus) -> ModelVersion:
    return ModelVersion(
        channel_id=channel_id,
        status=status,
        created_at=as_utc(info.created_at),
        **{name: getattr(info, name) for name in _SAME_FIELDS},
    )


async def _forget_epoch(session: AsyncSession, channel_id: Any) -> int:
    n = await session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.channel_id == channel_id, AuditEntry.action == FORGET_ACTION)
    )
    return int(n or 0)


class SqlModelRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def versions(self, ref: ChannelRef) -> list[ModelVersionInfo]:
        async with self.db.read() as session:
            rows = await session.scalars(
                select(ModelVersion)
                .where(ModelVersion.channel_id == channel_id_query(ref))
                .order_by(ModelVersion.version)
            )
            return [version_info(ref, row) for row in rows]

    async def active(self, ref: ChannelRef) -> ModelVersionInfo | None:
        async with self.db.read() as session:
            row = (
                await session.scalars(
                    select(ModelVersion).where(
                        ModelVersion.channel_id == channel_id_query(ref),
                        ModelVersion.status == VersionStatus.ACTIVE,
                    )
                )
            ).first()
            return None if row is None else version_info(ref, row)

    async def next_version(self, ref: ChannelRef) -> int:
        async with self.db.read() as session:
            n = await session.scalar(
                select(func.max(ModelVersion.version)).where(
                    ModelVersion.channel_id == channel_id_query(ref)
                )
            )
            return int(n or 0) + 1

    async def forget_epoch(self, ref: ChannelRef) -> int:
        """How many times members' messages in the channel were forgotten. A run reads
        it before it reads its data, and hands it to `add`."""
        async with self.db.read() as session:
            return await _forget_epoch(session, channel_id_query(ref))

    async def add(self, info: ModelVersionInfo, *, forget_epoch: int | None = None) -> bool:
        """Records a finished version as a candidate (its files are already complete).
        With `forget_epoch` (what forget_epoch said before the run read its data), a
        version whose data may hold messages forgotten since is refused: nothing is
        recorded and this returns False."""
        async with self.db.write() as session:
            channel = await ensure_channel(session, info.channel, "")
            if forget_epoch is not None:
                await lock_channel(session, channel.id)  # see SqlUserStore._forget_versions
                if await _forget_epoch(session, channel.id) != forget_epoch:
                    return False
            session.add(_version_row(channel.id, info, VersionStatus.CANDIDATE))
            return True

    async def activate(
        self, ref: ChannelRef, version: int, *, actor: str, note: str | None = None
    ) -> ModelVersionInfo | None:
        """Makes `version` the one that answers, in one transaction with retiring the
        previous one; None if the channel has no such version."""
        async with self.db.write() as session:
            rows = list(
                await session.scalars(
                    select(ModelVersion).where(ModelVersion.channel_id == channel_id_query(ref))
                )
            )
            target = next((r for r in rows if r.version == version), None)
            if target is None or target.status in GONE_VERSIONS:
                return None
            previous = next((r for r in rows if r.status == VersionStatus.ACTIVE), None)
            for row in rows:
                if row.status == VersionStatus.ACTIVE and row is not target:
                    row.status = VersionStatus.RETIRED
            target.status = VersionStatus.ACTIVE
            target.activated_at = datetime.now(UTC)
            if note is not None:
                target.note = note
            session.add(
                audit_entry(
                    actor,
                    "model.activate",
                    channel_id=target.channel_id,
                    old=previous.version if previous else None,
                    new=version,
                )
            )
            return version_info(ref, target)

    async def previous_active(self, ref: ChannelRef) -> ModelVersionInfo | None:
        """The version that was active before the current one (for rollback)."""
        async with self.db.read() as session:
            row = (
                await session.scalars(
                    select(ModelVersion)
                    .where(
                        ModelVersion.channel_id == channel_id_query(ref),
                        ModelVersion.status.not_in((VersionStatus.ACTIVE, *_GONE)),
                        ModelVersion.activated_at.is_not(None),
                    )
                    .order_by(ModelVersion.activated_at.desc())
                )
            ).first()
            return None if row is None else version_info(ref, row)

    async def reset(self, ref: ChannelRef, *, actor: str) -> int:
        """Retires every version of the channel for good (status `reset`), in one
        transaction with its audit entry; returns how many."""
        async with self.db.write() as session:
            rows = list(
                await session.scalars(
                    select(ModelVersion).where(
                        ModelVersion.channel_id == channel_id_query(ref),
                        ModelVersion.status.not_in(_GONE),
                    )
                )
            )
            for row in rows:
                row.status = VersionStatus.RESET
            if rows:
                session.add(
                    audit_entry(
                        actor,
                        "model.reset",
                        channel_id=rows[0].channel_id,
                        old=sorted(r.version for r in rows),
                        new=None,
                    )
                )
            return len(rows)

    async def set_note(self, ref: ChannelRef, version: int, note: str) -> None:
        await self._update(ref, version, note=note)

    async def set_quality(
        self,
        ref: ChannelRef,
        version: int,
        bits_per_char: float | None,
        markov: float | None,
        live: tuple[float | None, float | None] = (None, None),
    ) -> None:
        """The version's held-out figure and the Markov chain's, measured again, and
        their live figures (the model's, the chain's)."""
        await self._update(
            ref,
            version,
            eval_bits_per_char=bits_per_char,
            markov_bits_per_char=markov,
            live_bits_per_char=live[0],
            live_markov_bits_per_char=live[1],
        )

    async def _update(self, ref: ChannelRef, version: int, **values: Any) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(ModelVersion)
                .where(
                    ModelVersion.channel_id == channel_id_query(ref),
                    ModelVersion.version == version,
                )
                .values(**values)
            )

    async def forget_epochs(self) -> list[tuple[ChannelRef, int]]:
        """Every channel whose members' messages were ever forgotten, with its epoch."""
        async with self.db.read() as session:
            rows = await session.execute(
                select(Workspace.platform, Workspace.external_id, Channel.external_id, func.count())
                .select_from(AuditEntry)
                .join(Channel, AuditEntry.channel_id == Channel.id)
                .join(Workspace, Channel.workspace_id == Workspace.id)
                .where(AuditEntry.action == FORGET_ACTION)
                .group_by(Workspace.platform, Workspace.external_id, Channel.external_id)
            )
            return [(channel_ref(p, w, c), int(n)) for p, w, c, n in rows.all()]

    async def forgotten_paths(self) -> list[str]:
        """The directories of every channel's forgotten versions (to delete)."""
        async with self.db.read() as session:
            rows = await session.scalars(
                select(ModelVersion.path).where(ModelVersion.status == VersionStatus.FORGOTTEN)
            )
            return list(rows)

    async def move_paths(self, ref: ChannelRef, old: str, new: str) -> int:
        """Points the channel's versions in folder `old` (or under it) at the same place
        in `new`, after the folder moved; returns how many."""
        async with self.db.write() as session:
            rows = await session.scalars(
                select(ModelVersion).where(ModelVersion.channel_id == channel_id_query(ref))
            )
            moved = 0
            for row in rows:
                if row.path == old or row.path.startswith(old.rstrip("/") + "/"):
                    row.path = new + row.path[len(old) :]
                    moved += 1
            return moved

    async def lose_under(self, ref: ChannelRef, folder: str, note: str) -> list[int]:
        """Retires for good (status `reset`, with `note`) the channel's versions whose
        files under `folder` are not its own: they never answer again."""
        async with self.db.write() as session:
            rows = list(
                await session.scalars(
                    select(ModelVersion).where(
                        ModelVersion.channel_id == channel_id_query(ref),
                        ModelVersion.path.startswith(folder.rstrip("/") + "/"),
                        ModelVersion.status.not_in(_GONE),
                    )
                )
            )
            for row in rows:
                row.status = VersionStatus.RESET
                row.note = note
            return sorted(r.version for r in rows)

    async def remove(self, ref: ChannelRef, version: int) -> None:
        async with self.db.write() as session:
            await session.execute(
                delete(ModelVersion).where(
                    ModelVersion.channel_id == channel_id_query(ref),
                    ModelVersion.version == version,
                    ModelVersion.status != VersionStatus.ACTIVE,
                )
            )
