"""Who asks, where: what every command is run for."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain import Author, ChannelRef
from bot.messages import Locale
from bot.ports import TextListener


@dataclass(frozen=True)
class CommandContext:
    channel: ChannelRef
    actor: Author
    channel_name: str = ""
    # Who the audit log names; by default the platform user. The CLI says "cli:<user>",
    # since an operator at the terminal is not a user of the channel's platform.
    audit_actor: str = ""
    # Where the platform shows a generation as it is written (bot/ports.py TextListener);
    # None: the reply alone. Only a request for one text streams.
    stream: TextListener | None = None
    # The asker's language when their platform says (bot/messages.py `speaking`);
    # None: TSUZUKI_LOCALE.
    locale: Locale | None = None

    @property
    def actor_id(self) -> str:
        return self.audit_actor or f"{self.channel.platform}:{self.actor.id}"
