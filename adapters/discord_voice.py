"""A member's voice under their name on Discord: a text written with their consent
(`/continue … as:@member` after their `/voice on`) is posted through the channel's
webhook as "name (Tsuzuki)" with their avatar, and marked as generated in the text
itself. Without Manage Webhooks the caller posts it as the bot instead."""

from __future__ import annotations

import logging

import discord

from adapters.render import DISCORD_LIMIT, neutralise_discord, split_message
from bot import messages as M

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
# The webhook the bot makes in a channel (and finds again there: its own, by name).
WEBHOOK_NAME = "Tsuzuki"
# Discord's longest webhook username.
NAME_LIMIT = 80


class VoicePoster:
    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self._hooks: dict[int, discord.Webhook] = {}

    async def post(
        self,
        channel: discord.abc.GuildChannel,
        member: discord.Member | discord.User,
        texts: tuple[str, ...],
    ) -> list[tuple[str, str]] | None:
        """Posts each text as `member`, each marked as generated: (message id, text) of
        each message; None when the bot may not manage the channel's webhooks."""
        hook = await self._webhook(channel)
        if hook is None:
            return None
        mark = "\n-# " + M.t("voice_generated_mark")
        pieces = []
        for text in texts:
            parts = split_message(neutralise_discord(text), DISCORD_LIMIT - len(mark))
            parts[-1] += mark
            pieces += parts
        suffix = f" ({WEBHOOK_NAME})"
        name = member.display_name[: NAME_LIMIT - len(suffix)] + suffix
        posted = []
        for piece in pieces:
            sent = await hook.send(
                piece,
                username=name,
                avatar_url=member.display_avatar.url,
                allowed_mentions=NO_PINGS,
                wait=True,
            )
            posted.append((str(sent.id), piece))
        return posted

    async def _webhook(self, channel: discord.abc.GuildChannel) -> discord.Webhook | None:
        known = self._hooks.get(channel.id)
        if known is not None:
            return known
        if not isinstance(channel, discord.TextChannel):
            return None  # threads and voice channels post through their parent's: not here
        me = self.client.user
        try:
            hooks = await channel.webhooks()
            own = [h for h in hooks if h.user is not None and me is not None and h.user.id == me.id]
            hook = own[0] if own else await channel.create_webhook(name=WEBHOOK_NAME)
        except discord.Forbidden:
            log.info("discord: no Manage Webhooks in channel %s", channel.id)
            return None
        self._hooks[channel.id] = hook
        return hook
