"""Discord's slash commands: each turns its options into a command value
(bot/core/command_values.py) and hands it to the adapter's `respond`, which defers,
runs it through the core and answers. Kept apart from the gateway side of the adapter,
as discord.py's ext/commands keeps commands apart from the client."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

import discord
from discord import app_commands

from bot import messages as M
from bot.core import command_values as cmd

# Who sees admin commands by default; the core checks admin rights again whatever a
# guild overrides.
ADMIN = discord.Permissions(manage_channels=True)


class JapaneseCommands(app_commands.Translator):
    """The commands' names, descriptions and option names for Japanese Discord clients
    (bot/messages.py COMMAND_TEXTS_JA), sent with the commands when they sync."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        if locale is not discord.Locale.japanese:
            return None
        return M.COMMAND_TEXTS_JA.get(string.message)


class Respond(Protocol):
    def __call__(
        self, interaction: discord.Interaction[Any], command: cmd.Command, *, ephemeral: bool
    ) -> Awaitable[None]: ...


class ContinueMessage(Protocol):
    def __call__(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> Awaitable[None]: ...


def register_commands(
    tree: app_commands.CommandTree[Any], respond: Respond, continue_message: ContinueMessage
) -> None:
    """Adds every slash command to `tree`, and the message actions (right-click a
    message, Apps)."""

    @tree.context_menu(name="Continue this message")
    async def continue_this(
        interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        await continue_message(interaction, message)

    @tree.context_menu(name="Don't learn from this")
    async def unlearn(interaction: discord.Interaction[Any], message: discord.Message) -> None:
        await respond(interaction, cmd.Unlearn(str(message.id)), ephemeral=True)

    @tree.command(name="continue", description="Continue your text in this channel's voice")
    @app_commands.describe(
        prompt="The start of the text",
        temperature="0–5",
        n="How many variants (1–5)",
        as_="Write like this member (only if they turned /voice on here)",
    )
    @app_commands.rename(as_="as")
    async def continue_(
        interaction: discord.Interaction[Any],
        prompt: str,
        temperature: float | None = None,
        n: int | None = None,
        as_: discord.User | None = None,
    ) -> None:
        overrides: dict[str, object] = {}
        if temperature is not None:
            overrides["temperature"] = temperature
        if n is not None:
            overrides["num_return_sequences"] = n
        voice = str(as_.id) if as_ is not None else None
        await respond(interaction, cmd.Continue(prompt, overrides, voice), ephemeral=False)

    settings = app_commands.Group(
        name="settings",
        description="This channel's sampling settings",
        default_permissions=ADMIN,
    )

    @settings.command(name="show", description="Show the settings")
    async def settings_show(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.ShowSettings(), ephemeral=True)

    @settings.command(name="set", description="Change a setting")
    async def settings_set(interaction: discord.Interaction[Any], key: str, value: str) -> None:
        await respond(interaction, cmd.SetSetting(key, value), ephemeral=True)

    @settings.command(name="reset", description="Back to the default")
    async def settings_reset(interaction: discord.Interaction[Any], key: str) -> None:
        await respond(interaction, cmd.ResetSetting(key), ephemeral=True)

    tree.add_command(settings)

    training = app_commands.Group(
        name="training",
        description="Whether this channel's history may train its model",
        default_permissions=ADMIN,
    )

    @training.command(name="on", description="Allow training on this channel's history")
    async def training_on(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.SetTraining(True), ephemeral=True)

    @training.command(name="off", description="Stop training on this channel's history")
    async def training_off(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.SetTraining(False), ephemeral=True)

    tree.add_command(training)

    @tree.command(name="train", description="Queue a training run for this channel now")
    @app_commands.default_permissions(manage_channels=True)
    async def train(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.QueueTraining(), ephemeral=True)

    models = app_commands.Group(
        name="models", description="This channel's model versions", default_permissions=ADMIN
    )

    @models.command(name="list", description="List the versions")
    async def models_list(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.ListModels(), ephemeral=True)

    @models.command(name="activate", description="Make a version answer")
    async def models_activate(interaction: discord.Interaction[Any], version: str) -> None:
        await respond(interaction, cmd.ActivateModel(version), ephemeral=True)

    @models.command(name="rollback", description="Back to the previous version")
    async def models_rollback(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.RollbackModel(), ephemeral=True)

    @models.command(name="reset", description="Retire every version; start again from the base")
    @app_commands.describe(confirm="True to do it (without: what it would do)")
    async def models_reset(interaction: discord.Interaction[Any], confirm: bool = False) -> None:
        await respond(interaction, cmd.ResetModels(confirm), ephemeral=True)

    tree.add_command(models)

    voice = app_commands.Group(
        name="voice", description="Whether /continue … as:@you may write like you here"
    )

    @voice.command(name="on", description="Let this channel's model write like me, here only")
    async def voice_on(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.SetVoice(True), ephemeral=True)

    @voice.command(name="off", description="Nobody may write like me here any more")
    async def voice_off(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.SetVoice(False), ephemeral=True)

    @voice.command(name="status", description="Where I stand, and how well it writes like me")
    async def voice_status(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.SetVoice(), ephemeral=True)

    tree.add_command(voice)

    @tree.command(name="optout", description="Forget my messages and stop storing them")
    async def optout(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.SetOptOut(True), ephemeral=True)

    @tree.command(name="optin", description="Store my messages again")
    async def optin(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.SetOptOut(False), ephemeral=True)

    # Every error that names a command ends "Try /help": it must exist here too.
    @tree.command(name="help", description="What I can do here, and how")
    async def help_(interaction: discord.Interaction[Any]) -> None:
        await respond(interaction, cmd.Help(), ephemeral=True)
