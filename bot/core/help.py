"""`/help`: the commands the caller may use here, in their language.

One table: each line's usage as typed on Discord and the console (Slack's commands
live under `/tsuzuki`, all but `/continue`), what it does (bot/messages.py), and who
may use it. Admin commands are listed for admins only; on Discord the channel settings
and models are admins' commands altogether (their default permissions hide them from
everyone else)."""

from __future__ import annotations

from dataclasses import dataclass

from bot import messages as M
from bot.core.context import CommandContext
from bot.domain import Platform


@dataclass(frozen=True)
class HelpLine:
    usage: str
    key: str  # what it does: a bot/messages.py key
    admin: bool = False  # for channel admins only
    admin_on_discord: bool = False  # Discord hides it from members (default permissions)
    platforms: tuple[Platform, ...] = ("console", "discord", "slack")


LINES = (
    HelpLine("/continue TEXT [temperature=0.8 n=3 seed=1] [as:@member]", "help_continue"),
    HelpLine("@tsuzuki …", "help_mention"),
    HelpLine("↩", "help_reply", platforms=("discord", "slack")),
    HelpLine(
        "⋯ → Continue this message · Don't learn from this",
        "help_actions",
        platforms=("discord", "slack"),
    ),
    HelpLine("/settings show", "help_settings_show", admin_on_discord=True),
    HelpLine("/settings set KEY VALUE · /settings reset KEY", "help_settings_set", admin=True),
    HelpLine("/models", "help_models", admin_on_discord=True),
    HelpLine("/models activate N · rollback · reset", "help_models_admin", admin=True),
    HelpLine("/training on|off · /train", "help_training", admin=True),
    HelpLine("/voice on|off · /voice", "help_voice"),
    HelpLine("/optout · /optin", "help_optout"),
    HelpLine("/help", "help_help"),
)


def help_text(ctx: CommandContext) -> str:
    """The lines `ctx`'s caller may use on their platform."""
    platform = ctx.channel.platform
    admin = ctx.actor.is_admin
    lines = [M.t("help_header")]
    for line in LINES:
        if platform not in line.platforms or (line.admin and not admin):
            continue
        if line.admin_on_discord and platform == "discord" and not admin:
            continue
        usage = line.usage
        if platform == "slack" and usage.startswith("/") and not usage.startswith("/continue"):
            usage = "/tsuzuki " + usage[1:].replace(" · /", " · /tsuzuki ")
        lines.append(f"{usage} — {M.t(line.key)}")
    if platform == "console":
        lines.append(M.t("help_history"))
    return "\n".join(lines)
