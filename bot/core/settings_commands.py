"""A channel's settings: what a request runs with, and `/settings show|set|reset`.

Sampling settings come per request > channel > configured default; channel settings
(notices, unprompted replies) from the channel alone. SETTING_SPECS (domain.py) is the
one table behind validation, help and display."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from bot import messages as M
from bot.core.context import CommandContext
from bot.domain import ChannelRef, Reply
from bot.errors import UserError
from bot.ports import ChannelStore
from bot.setting_specs import SETTING_SPECS, ChannelOptions, SamplingSettings, scoped, spec_for

# The stored channel value naming the admin who turned notices on (not a setting).
NOTICES_TO = "notices_to"

# How long a channel's options are read from memory (see ChannelSettings.options).
OPTIONS_TTL_S = 10.0


def require_admin(ctx: CommandContext) -> None:
    if not ctx.actor.is_admin:
        raise UserError(M.t("admin_only"))


class ChannelSettings:
    def __init__(
        self, channels: ChannelStore, defaults: SamplingSettings, clock: Callable[[], float]
    ) -> None:
        self.channels = channels
        self.defaults = defaults
        self.clock = clock
        self._options: dict[ChannelRef, tuple[float, ChannelOptions]] = {}
        self._loading: dict[ChannelRef, asyncio.Future[ChannelOptions]] = {}
        self._changes = 0  # settings changed here so far

    async def effective(
        self, ref: ChannelRef, overrides: Mapping[str, object] | None = None
    ) -> SamplingSettings:
        """Per-request override > channel setting > configured default."""
        channel = await self.channels.get(ref)
        settings = self.defaults.merged(scoped(channel.sampling, "sampling") if channel else {})
        return settings.merged(overrides or {})

    async def options(self, ref: ChannelRef) -> ChannelOptions:
        """The channel's own behaviour: notices, unprompted replies. Read for every
        message a member writes (is an unprompted reply due?), so kept for a few seconds:
        a change made here applies at once, one made by another process within
        OPTIONS_TTL_S."""
        cached = self._options.get(ref)
        if cached is not None and self.clock() - cached[0] < OPTIONS_TTL_S:
            return cached[1]
        # One read per channel however many messages ask at once: a burst into a
        # channel whose options are not in memory would otherwise read them per message.
        loading = self._loading.get(ref)
        if loading is None:
            loading = self._loading[ref] = asyncio.ensure_future(self._read_options(ref))
            loading.add_done_callback(
                lambda done: self._loading.pop(ref) if self._loading.get(ref) is done else None
            )
        return await asyncio.shield(loading)

    async def _read_options(self, ref: ChannelRef) -> ChannelOptions:
        changes = self._changes
        channel = await self.channels.get(ref)
        options = ChannelOptions.from_stored(channel.sampling if channel else {})
        if changes == self._changes:  # a read that a change overtook is not kept
            self._options[ref] = (self.clock(), options)
        return options

    def _changed(self, ref: ChannelRef) -> None:
        self._options.pop(ref, None)
        self._loading.pop(ref, None)
        self._changes += 1

    def _effective(self, own: Mapping[str, object]) -> dict[str, Any]:
        """Every setting's value for a channel whose own settings are `own`."""
        sampling = self.defaults.merged(scoped(own, "sampling"))
        return {**sampling.as_dict(), **ChannelOptions.from_stored(own).as_dict()}

    async def _own(self, ref: ChannelRef) -> dict[str, Any]:
        channel = await self.channels.get(ref)
        return channel.sampling if channel else {}

    async def show(self, ctx: CommandContext) -> Reply:
        own = await self._own(ctx.channel)
        effective = self._effective(own)
        lines = [M.t("settings_header", channel=ctx.channel)]
        for name, spec in SETTING_SPECS.items():
            source = M.t("source_channel") if name in own else M.t("source_default")
            lines.append(
                M.t(
                    "settings_line",
                    key=name,
                    value=spec.show(effective[name]),
                    source=source,
                    range=spec.describe_range(),
                    help=spec.help,
                )
            )
        return Reply.info("\n".join(lines))

    async def set(self, ctx: CommandContext, key: str, raw_value: str) -> Reply:
        require_admin(ctx)
        spec = spec_for(key)
        value = spec.coerce(raw_value)
        old = self._effective(await self._own(ctx.channel))[spec.name]
        await self.channels.set_sampling(ctx.channel, spec.name, value, actor=ctx.actor_id)
        self._changed(ctx.channel)
        if spec.name == "notices" and value:
            # Who hears, privately, why a run was not used: the admin who asked for
            # notices (a platform has no "admins only" message in a channel).
            await self.channels.set_sampling(
                ctx.channel, NOTICES_TO, ctx.actor.id, actor=ctx.actor_id
            )
        return Reply.info(
            M.t("setting_set", key=spec.name, value=spec.show(value), old=spec.show(old))
        )

    async def reset(self, ctx: CommandContext, key: str) -> Reply:
        require_admin(ctx)
        spec = spec_for(key)
        await self.channels.set_sampling(ctx.channel, spec.name, None, actor=ctx.actor_id)
        self._changed(ctx.channel)
        default = {**self.defaults.as_dict(), **ChannelOptions().as_dict()}[spec.name]
        return Reply.info(M.t("setting_reset", key=spec.name, value=spec.show(default)))
