"""A channel's model versions: `/models`, activate, rollback, reset, and `/train now`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bot import messages as M
from bot.core.context import CommandContext
from bot.core.presentation import loss_curve, version_line
from bot.core.settings_commands import require_admin
from bot.domain import Reply
from bot.errors import UserError
from bot.ports import Stores
from bot.statuses import LIVE_VERSIONS, VersionStatus


class ModelCommands:
    def __init__(self, stores: Stores, base_model: str, on_job_queued: Callable[[], None]) -> None:
        self.stores = stores
        self.base_model = base_model
        self.on_job_queued = on_job_queued

    async def show(self, ctx: CommandContext) -> Reply:
        versions = await self.stores.registry.versions(ctx.channel)
        if not versions:
            return Reply.info(M.t("models_none", channel=ctx.channel, base=self.base_model))
        lines = [M.t("models_header", channel=ctx.channel)]
        lines += [version_line(v) for v in versions]
        shown = next((v for v in versions if v.status == VersionStatus.ACTIVE), None) or next(
            (v for v in reversed(versions) if v.status in LIVE_VERSIONS), None
        )
        chart = loss_curve(shown) if shown else None
        if shown and chart:
            lines.append(M.t("models_chart", version=shown.version))
        return replace(Reply.info("\n".join(lines)), image=chart)

    async def activate(self, ctx: CommandContext, version: str) -> Reply:
        require_admin(ctx)
        number = version.lstrip("vV")
        if not number.isdigit():
            raise UserError(M.t("model_version_unknown", channel=ctx.channel, version=version))
        registry = self.stores.registry
        done = await registry.activate(ctx.channel, int(number), actor=ctx.actor_id)
        if done is None:
            versions = await registry.versions(ctx.channel)
            if any(
                v.version == int(number) and v.status == VersionStatus.FORGOTTEN for v in versions
            ):
                raise UserError(M.t("model_forgotten", channel=ctx.channel, version=int(number)))
            raise UserError(M.t("model_version_unknown", channel=ctx.channel, version=version))
        return Reply.info(M.t("model_activated", channel=ctx.channel, version=done.version))

    async def rollback(self, ctx: CommandContext) -> Reply:
        require_admin(ctx)
        previous = await self.stores.registry.previous_active(ctx.channel)
        if previous is None:
            raise UserError(M.t("model_no_rollback", channel=ctx.channel))
        await self.stores.registry.activate(ctx.channel, previous.version, actor=ctx.actor_id)
        return Reply.info(M.t("model_activated", channel=ctx.channel, version=previous.version))

    async def reset(self, ctx: CommandContext, confirmed: bool) -> Reply:
        """Retires every version: the base answers, and the next training starts from
        it, on the whole history. Asked twice, so that one stray command costs nothing."""
        require_admin(ctx)
        versions = [
            v for v in await self.stores.registry.versions(ctx.channel) if v.status in LIVE_VERSIONS
        ]
        if not versions:
            raise UserError(M.t("models_reset_nothing", channel=ctx.channel))
        if not confirmed:
            return Reply.info(M.t("models_reset_confirm", channel=ctx.channel, count=len(versions)))
        count = await self.stores.registry.reset(ctx.channel, actor=ctx.actor_id)
        return Reply.info(
            M.t("models_reset_done", channel=ctx.channel, count=count, base=self.base_model)
        )

    async def queue_training(self, ctx: CommandContext) -> Reply:
        """Queues a training run for the channel now (consent is checked when it runs,
        and here, so nobody waits for a job that will refuse)."""
        require_admin(ctx)
        channel = await self.stores.channels.get(ctx.channel)
        if channel is None or not channel.training_enabled:
            raise UserError(M.t("training_disabled", channel=ctx.channel))
        job = await self.stores.jobs.enqueue("train", ctx.channel, {}, priority=5)
        self.on_job_queued()
        return Reply.info(M.t("training_queued", channel=ctx.channel, job=job.id))
