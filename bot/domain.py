"""The core's vocabulary: channels, messages, sampling settings, requests and results.

Nothing here imports a platform SDK, torch or the database: adapters translate into
these types and the core works only with them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from bot import messages as M
from bot.errors import UserError
from bot.setting_specs import SamplingSettings
from bot.statuses import VersionStatus

Platform = Literal["console", "discord", "slack"]
PLATFORMS: tuple[Platform, ...] = ("console", "discord", "slack")

# The console has one implicit workspace: the machine the bot runs on.
CONSOLE_WORKSPACE = "local"

# A platform's id of a workspace, channel or user, as a channel ref and import files
# may carry it.
ID_PART = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


@dataclass(frozen=True, order=True)
class ChannelRef:
    """A channel on a platform, written `console:general`, `discord:<guild>/<channel>`
    or `slack:<team>/<channel>`."""

    platform: Platform
    workspace: str
    channel: str

    @classmethod
    def parse(cls, text: str) -> ChannelRef:
        platform, sep, rest = text.strip().partition(":")
        if not sep or platform not in PLATFORMS:
            raise UserError(M.t("channel_bad_ref", ref=text))
        if platform == "console":
            workspace, channel = CONSOLE_WORKSPACE, rest
        else:
            workspace, slash, channel = rest.partition("/")
            if not slash:
                raise UserError(M.t("channel_bad_ref", ref=text))
        if not (ID_PART.match(workspace) and ID_PART.match(channel)):
            raise UserError(M.t("channel_bad_ref", ref=text))
        return cls(platform, workspace, channel)

    def __str__(self) -> str:
        if self.platform == "console":
            return f"console:{self.channel}"
        return f"{self.platform}:{self.workspace}/{self.channel}"

    @property
    def slug(self) -> str:
        """The channel's folder name under the data directory: one per channel. `+`
        never occurs in an id (ID_PART), so the three parts can be read back apart; a
        ref with capitals gets a hash of itself too, so two refs that differ only in
        case stay apart on a case-insensitive disk (macOS, Windows). No part is ever a
        whole path component, so ids like `..` stay inside the folder."""
        name = f"{self.platform}+{self.workspace}+{self.channel}"
        if name != name.lower():
            name += "." + hashlib.sha256(str(self).encode()).hexdigest()[:8]
        return name


@dataclass(frozen=True)
class Author:
    """Who wrote a message or ran a command, as the platform knows them."""

    id: str
    name: str
    is_admin: bool = False
    is_bot: bool = False


@dataclass(frozen=True)
class ChatMessage:
    """One message in a channel, platform-neutral."""

    channel: ChannelRef
    external_id: str
    author: Author
    text: str
    created_at: datetime
    edited_at: datetime | None = None
    # Where it sits in a conversation: the message it replies to (Discord's message
    # reference), or the thread it was written in (Slack: the root's ts).
    reply_to: str | None = None
    thread: str | None = None

    @property
    def is_bot(self) -> bool:
        return self.author.is_bot


# --- Voices ---------------------------------------------------------------------------

# A member's voice tag opens each of their messages in a channel's training text when they
# turned `/voice on` there; `/continue … as:@member` starts the text with it. A keyed hash
# of the channel and the member (the key is the installation's own, kept in its
# database), so it names nobody, means nothing in another channel, and cannot be
# computed by someone who knows the ids. Text people wrote is never read as a tag:
# `disarm_tags` changes anything tag-shaped in it before a model sees it.
VOICE_TAG = re.compile(r"^«[0-9a-f]{6}»")
_TAG_SHAPED = re.compile(r"«(?=[0-9a-f]{6}»)")
# What a tag-shaped run in people's text opens with instead: a look-alike that no tag
# ever starts with.
DISARMED = "‹"


def voice_tag(channel: ChannelRef, user_id: str, key: bytes) -> str:
    digest = hmac.new(key, f"{channel}/{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"«{digest[:6]}»"


def disarm_tags(text: str) -> str:
    """People's text with every tag-shaped run made plain text: a typed or stored
    `«ded930»` can never stand for a member's voice."""
    return _TAG_SHAPED.sub(DISARMED, text)


def strip_voice_tag(text: str) -> str:
    """A text without a voice tag at its start (a model may open a message with one)."""
    return VOICE_TAG.sub("", text, count=1)


# --- Requests and results -----------------------------------------------------------


@dataclass(frozen=True)
class GenerationRequest:
    """Continue `prompt` (mode "continue") or write the channel's next message after
    `context` (mode "reply")."""

    channel: ChannelRef
    settings: SamplingSettings
    mode: Literal["continue", "reply"] = "continue"
    prompt: str = ""  # as the member typed it
    # The voice tag the text opens with (`as:@member`, checked against their consent):
    # never part of `prompt`, which is people's text and is disarmed (disarm_tags).
    voice: str = ""
    context: tuple[str, ...] = ()
    # The leak guard's thresholds, the channel's (ChannelOptions): a stored message of
    # `verbatim_whole` characters never comes back whole, nor `verbatim_run` of one.
    verbatim_whole: int = 20
    verbatim_run: int = 32
    # Words the text never contains (the channel's banned_words): resampled, else cut.
    banned_words: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationResult:
    texts: tuple[str, ...]
    model: str  # which model produced it: "base:<spec>" or "v<N>"
    seed: int
    new_tokens: int
    seconds: float  # on the device, for the whole batch it was part of
    prompt_truncated: bool = False
    queued_seconds: float = 0.0  # waiting for the device before its batch started
    batch_rows: int = 1  # rows decoded together (all requests and variants)


@dataclass(frozen=True)
class ModelVersionInfo:
    channel: ChannelRef
    version: int
    base_model: str
    method: str
    path: str
    status: VersionStatus
    created_at: datetime
    train_loss: float | None = None
    eval_loss: float | None = None
    eval_perplexity: float | None = None
    tokens_seen: int | None = None
    note: str | None = None
    last_message_id: int | None = None  # newest message it was trained on
    eval_bits_per_char: float | None = None  # held out, the channel's newest messages
    markov_bits_per_char: float | None = None  # the channel's Markov chain, same messages
    # The live figures: each held-out message scored after every message before it was
    # learnt (the counts live, the network frozen), the chain's likewise.
    live_bits_per_char: float | None = None
    live_markov_bits_per_char: float | None = None


@dataclass(frozen=True)
class Reply:
    """What the core answers an adapter: one or more texts to post. `ephemeral` asks the
    platform to show it only to the person who asked (errors, settings)."""

    texts: tuple[str, ...]
    ephemeral: bool = False
    is_error: bool = False
    generated: bool = field(default=False)  # True when the texts are model output
    image: str | None = None  # a PNG to show with the texts (a loss curve)
    # Nobody asked: the channel's next message, written after a member's. Posted as a
    # message of its own, not as a reply to anyone.
    unprompted: bool = False
    # The conversation the texts answer (external ids, oldest first, the message
    # answered last): kept with the posts, so that a reply to one continues it.
    chain: tuple[str, ...] = ()
    # Written in this member's voice, with their consent (`as:@member` after their
    # `/voice on`): the platform may post it under their name and face, marked as
    # generated (a Discord webhook, Slack's username and icon_url).
    voice: str | None = None

    @classmethod
    def info(cls, text: str) -> Reply:
        return cls((text,), ephemeral=True)

    @classmethod
    def error(cls, text: str) -> Reply:
        return cls((text,), ephemeral=True, is_error=True)


@dataclass(frozen=True)
class Notice:
    """Something the bot tells a channel by itself (a new version answers), or, with
    `to_user`, only that member of it (an admin: why a run was not used)."""

    channel: ChannelRef
    text: str
    image: str | None = None  # a PNG path: the loss curve
    to_user: str | None = None  # the platform's user id; None: the whole channel
