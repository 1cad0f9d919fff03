"""A member's own view of the bot in a workspace (Slack's App Home): the channels the
bot is in that they can see, with each one's model and consent, and where they stand
themselves. Plain values: the platform draws them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.domain import ChannelRef
from bot.ports import Stores


@dataclass(frozen=True)
class ChannelHome:
    ref: ChannelRef
    name: str
    training: bool  # the channel's admins let its history train its model
    version: int | None  # the version that answers; None: the base
    bits_per_char: float | None  # its held-out bits per character…
    markov_bits_per_char: float | None  # …and the channel's Markov chain's, on the same
    voice_lent: bool  # the viewer lent this channel their voice


@dataclass(frozen=True)
class HomeState:
    channels: tuple[ChannelHome, ...]
    opted_out: bool


class Home:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    async def state(
        self, workspace: tuple[str, str], visible: Sequence[ChannelRef], viewer: str
    ) -> HomeState:
        """`visible`: the channels the viewer can see on the platform (`workspace`:
        platform and its id); those the bot keeps are shown."""
        platform, workspace_id = workspace
        channels = []
        for ref in visible:
            info = await self.stores.channels.get(ref)
            if info is None:
                continue  # the bot was never in it: nothing of it is kept
            active = await self.stores.registry.active(ref)
            channels.append(
                ChannelHome(
                    ref=ref,
                    name=info.name or ref.channel,
                    training=info.training_enabled,
                    version=active.version if active else None,
                    bits_per_char=active.eval_bits_per_char if active else None,
                    markov_bits_per_char=active.markov_bits_per_char if active else None,
                    voice_lent=await self.stores.users.has_voice(ref, viewer),
                )
            )
        opted_out = await self.stores.users.is_opted_out(platform, workspace_id, viewer)
        return HomeState(tuple(channels), opted_out)
