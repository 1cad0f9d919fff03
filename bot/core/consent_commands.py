"""Consent: an admin's for the channel (training on|off), a member's own (opt out, which
forgets their messages; `/voice on|off`, lending their voice in one channel)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot import messages as M
from bot.core.context import CommandContext
from bot.core.settings_commands import require_admin
from bot.domain import Reply, voice_tag
from bot.ports import Stores
from bot.training.voices import figure_of as voice_figure


class ConsentCommands:
    def __init__(
        self,
        stores: Stores,
        on_job_queued: Callable[[], None],
        on_forgotten: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self.stores = stores
        self.on_job_queued = on_job_queued
        # Deletes the files of the versions an opt-out withdrew (the training runs).
        self.on_forgotten = on_forgotten

    async def training(self, ctx: CommandContext, enabled: bool) -> Reply:
        """Consent: an admin opts the channel in to (or out of) training."""
        require_admin(ctx)
        await self.stores.channels.set_training(ctx.channel, enabled, actor=ctx.actor_id)
        if enabled and ctx.channel.platform != "console":
            # The past matters too: read the channel's history in the background.
            await self.stores.jobs.enqueue("backfill", ctx.channel, {}, priority=3)
            self.on_job_queued()
        return Reply.info(M.t("training_on" if enabled else "training_off", channel=ctx.channel))

    async def opt(self, ctx: CommandContext, out: bool) -> Reply:
        """A user's own consent: opting out forgets their messages in this workspace."""
        ref = ctx.channel
        count = await self.stores.users.set_opted_out(
            ref.platform, ref.workspace, ctx.actor.id, out, actor=ctx.actor_id
        )
        # The versions that learnt from those messages were withdrawn with them (the
        # channel answers with an earlier version, or its base); now their files go.
        if out and self.on_forgotten is not None:
            await self.on_forgotten()
        return Reply.info(M.t("opted_out", count=count) if out else M.t("opted_in"))

    async def voice(self, ctx: CommandContext, on: bool | None) -> Reply:
        """A member's own consent to being written as, in this channel only. Off takes
        it back at once (nobody may ask for it) and from the next version on."""
        users = self.stores.users
        if on is not None:
            await users.set_voice(ctx.channel, ctx.actor.id, on, actor=ctx.actor_id)
            return Reply.info(M.t("voice_on" if on else "voice_off", channel=ctx.channel))
        if not await users.has_voice(ctx.channel, ctx.actor.id):
            return Reply.info(M.t("voice_status_off", channel=ctx.channel))
        lines = [M.t("voice_status_on", channel=ctx.channel)]
        active = await self.stores.registry.active(ctx.channel)
        tag = voice_tag(ctx.channel, ctx.actor.id, await self.stores.messages.voice_key())
        figure = voice_figure(active.path, tag) if active else None
        if active and figure:
            lines.append(
                M.t(
                    "voice_figure",
                    version=active.version,
                    messages=figure.messages,
                    voice=figure.bits_as_voice,
                    channel=figure.bits_as_channel,
                )
            )
        else:
            lines.append(M.t("voice_not_yet"))
        return Reply.info("\n".join(lines))
