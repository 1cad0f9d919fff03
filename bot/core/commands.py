"""Platform-neutral commands, one entry point: `Commands.execute(ctx, command)`.

Adapters call these with a CommandContext (who, where); every check that matters (admin
rights, valid values, prompt limits, consent) happens in the part that owns it, so all
platforms behave the same: replies.py (continue, mentions, unprompted replies),
settings_commands.py, model_commands.py, consent_commands.py.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.core import command_values as cmd
from bot.core.consent_commands import ConsentCommands
from bot.core.context import CommandContext
from bot.core.help import help_text
from bot.core.message_actions import MessageActions
from bot.core.model_commands import ModelCommands
from bot.core.replies import Replies, ReplyLimits
from bot.core.settings_commands import ChannelSettings
from bot.domain import Reply
from bot.ports import Stores, TextGenerator
from bot.setting_specs import SamplingSettings


@dataclass(frozen=True)
class CommandConfig:
    """What the operator configured (bot/config.py) that the commands apply."""

    defaults: SamplingSettings
    base_model: str  # what answers a channel with no version of its own
    limits: ReplyLimits


@dataclass(frozen=True)
class CommandHooks:
    """How the commands reach the rest of the running bot, and what tests replace."""

    # A job was queued: wake the job runner.
    on_job_queued: Callable[[], None] = lambda: None
    # An opt-out withdrew versions: delete their files.
    on_forgotten: Callable[[], Awaitable[None]] | None = None
    # The device has interactive work waiting: no unprompted reply now.
    busy: Callable[[], bool] = lambda: False
    random_source: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic


class Commands:
    def __init__(
        self,
        stores: Stores,
        generator: TextGenerator,
        config: CommandConfig,
        hooks: CommandHooks = CommandHooks(),
    ) -> None:
        self.settings = ChannelSettings(stores.channels, config.defaults, hooks.clock)
        self.replies = Replies(
            stores,
            self.settings,
            generator,
            config.limits,
            busy=hooks.busy,
            random_source=hooks.random_source,
            clock=hooks.clock,
        )
        self.models = ModelCommands(stores, config.base_model, hooks.on_job_queued)
        self.consent = ConsentCommands(stores, hooks.on_job_queued, hooks.on_forgotten)
        self.actions = MessageActions(stores, self.replies)

    async def execute(self, ctx: CommandContext, command: cmd.Command) -> Reply:
        """Runs one command value (bot/core/command_values.py) for `ctx`."""
        match command:
            case cmd.Continue(prompt, overrides, voice):
                return await self.replies.continue_text(ctx, prompt, overrides, voice)
            case cmd.ShowSettings():
                return await self.settings.show(ctx)
            case cmd.SetSetting(key, value):
                return await self.settings.set(ctx, key, value)
            case cmd.ResetSetting(key):
                return await self.settings.reset(ctx, key)
            case cmd.ListModels():
                return await self.models.show(ctx)
            case cmd.ActivateModel(version):
                return await self.models.activate(ctx, version)
            case cmd.RollbackModel():
                return await self.models.rollback(ctx)
            case cmd.ResetModels(confirmed):
                return await self.models.reset(ctx, confirmed)
            case cmd.SetTraining(enabled):
                return await self.consent.training(ctx, enabled)
            case cmd.QueueTraining():
                return await self.models.queue_training(ctx)
            case cmd.SetOptOut(out):
                return await self.consent.opt(ctx, out)
            case cmd.SetVoice(on):
                return await self.consent.voice(ctx, on)
            case cmd.Help():
                return Reply.info(help_text(ctx))
            case cmd.ContinueMessage(external_id, text, author_id):
                return await self.actions.continue_message(ctx, external_id, text, author_id)
            case cmd.Unlearn(external_id):
                return await self.actions.unlearn(ctx, external_id)
        raise AssertionError(f"unhandled command {command!r}")
