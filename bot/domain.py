"""The core's vocabulary: channels, messages, sampling settings, requests and results.

Nothing here imports a platform SDK, torch or the database: adapters translate into
these types and the core works only with them.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal

from bot import messages as M
from bot.errors import UserError

Platform = Literal["console", "discord", "slack"]
PLATFORMS: tuple[Platform, ...] = ("console", "discord", "slack")

# The console has one implicit workspace: the machine the bot runs on.
CONSOLE_WORKSPACE = "local"

_ID_PART = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
# A typed number: plain decimal or exponent notation. Python's float() also takes digit
# separators ("0_5" is 5.0) and words ("infinity"), which no user means.
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
# How much of a refused value an error message repeats.
ECHO_CHARS = 40


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
        if not (_ID_PART.match(workspace) and _ID_PART.match(channel)):
            raise UserError(M.t("channel_bad_ref", ref=text))
        return cls(platform, workspace, channel)

    def __str__(self) -> str:
        if self.platform == "console":
            return f"console:{self.channel}"
        return f"{self.platform}:{self.workspace}/{self.channel}"

    @property
    def slug(self) -> str:
        """A file-system-safe name, used for per-channel model directories."""
        return f"{self.platform}-{self.workspace}-{self.channel}"


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

    @property
    def is_bot(self) -> bool:
        return self.author.is_bot


# --- Sampling settings -------------------------------------------------------------


# Words a switch setting takes (NFKC-normalised, lower case).
_ON = {"on", "true", "yes", "1", "オン"}
_OFF = {"off", "false", "no", "0", "オフ"}

# What a setting is for: "sampling" settings shape one generation and may be given per
# request (`/continue … temperature=0.5`); "channel" settings shape how the bot behaves
# in the channel (notices, unprompted replies) and are only ever set for the channel.
Scope = Literal["sampling", "channel"]


@dataclass(frozen=True)
class SettingSpec:
    """One per-channel setting: its type, its allowed range and what it means."""

    name: str
    kind: type  # int, float or bool (a switch: on/off)
    minimum: float
    maximum: float
    help: str
    nullable: bool = False
    scope: Scope = "sampling"

    def describe_range(self) -> str:
        if self.kind is bool:
            return "on|off"
        rng = f"{_fmt(self.minimum)}–{_fmt(self.maximum)}"
        return f"{rng} or 'none'" if self.nullable else rng

    def show(self, value: object) -> str:
        """A value as `/settings` shows it."""
        if value is None:
            return "none"
        if self.kind is bool:
            return "on" if value else "off"
        return str(value)

    def coerce(self, raw: object) -> int | float | bool | None:
        """Turns `raw` (a string typed by a user, or a number) into a valid value, or
        raises UserError naming the setting and its range."""
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in {"none", "null", ""}):
            if self.nullable:
                return None
            raise self._invalid(raw)
        if self.kind is bool:
            return self._switch(raw)
        if isinstance(raw, bool):
            raise self._invalid(raw)
        try:
            if isinstance(raw, str):
                # NFKC: a Japanese keyboard's full-width "０．５" is 0.5.
                typed = unicodedata.normalize("NFKC", raw).strip()
                if not _NUMBER.match(typed):
                    raise ValueError(raw)
                value: float = float(typed)
            elif isinstance(raw, int | float):
                value = float(raw)
            else:
                raise ValueError(raw)
        except (ValueError, OverflowError):
            raise self._invalid(raw) from None
        if not math.isfinite(value):
            raise self._invalid(raw)
        if self.kind is int:
            if value != int(value):
                raise self._invalid(raw)
            value = int(value)
        if not (self.minimum <= value <= self.maximum):
            raise self._invalid(raw)
        # "-0" is stored and shown as 0, not -0.0.
        return value + 0

    def _switch(self, raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        word = unicodedata.normalize("NFKC", str(raw)).strip().lower()
        if word in _ON:
            return True
        if word in _OFF:
            return False
        raise self._invalid(raw)

    def _invalid(self, raw: object) -> UserError:
        kind = {int: "an integer", bool: "on or off"}.get(self.kind, "a number")
        shown = str(raw)
        if len(shown) > ECHO_CHARS:
            shown = shown[:ECHO_CHARS] + f"… ({len(shown):,} characters)"
        return UserError(
            M.t(
                "setting_invalid",
                key=self.name,
                value=shown,
                kind=kind,
                range=self.describe_range(),
            )
        )


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


SETTING_SPECS: dict[str, SettingSpec] = {
    s.name: s
    for s in (
        SettingSpec(
            "temperature", float, 0.0, 5.0, "randomness; 0 always picks the likeliest token"
        ),
        SettingSpec(
            "top_k", int, 0, 1000, "sample only from the k likeliest tokens; 0 turns the limit off"
        ),
        SettingSpec(
            "top_p",
            float,
            0.01,
            1.0,
            "sample from the smallest set of tokens whose probability reaches p",
        ),
        SettingSpec("max_new_tokens", int, 1, 1024, "how many tokens to generate at most"),
        SettingSpec(
            "repetition_penalty",
            float,
            1.0,
            5.0,
            "values above 1 make repeating earlier tokens less likely",
        ),
        SettingSpec(
            "no_repeat_ngram_size",
            int,
            0,
            20,
            "forbid repeating any n-gram of this size; 0 turns it off",
        ),
        SettingSpec("num_return_sequences", int, 1, 5, "how many variants to return"),
        SettingSpec(
            "seed",
            int,
            0,
            2**32 - 1,
            "fixes the random choices, so the same prompt gives the same text",
            nullable=True,
        ),
        SettingSpec(
            "notices",
            bool,
            0,
            1,
            "post a short notice with the loss curve when a new version starts answering",
            scope="channel",
        ),
        SettingSpec(
            "reply_chance",
            float,
            0.0,
            1.0,
            "how often the bot writes the next message unprompted after a member's; 0: never",
            scope="channel",
        ),
        SettingSpec(
            "reply_cooldown",
            int,
            0,
            7 * 24 * 3600,
            "seconds at least between two unprompted messages",
            scope="channel",
        ),
    )
}


SAMPLING_KEYS = tuple(k for k, s in SETTING_SPECS.items() if s.scope == "sampling")


def scoped(stored: Mapping[str, object], scope: Scope) -> dict[str, object]:
    """The settings of one scope among a channel's stored ones."""
    return {
        k: v for k, v in stored.items() if k in SETTING_SPECS and SETTING_SPECS[k].scope == scope
    }


@dataclass(frozen=True)
class SamplingSettings:
    """How text is sampled. Every field is validated against SETTING_SPECS on creation,
    so an instance is always usable as it is."""

    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 0.95
    max_new_tokens: int = 64
    repetition_penalty: float = 1.1
    no_repeat_ngram_size: int = 0
    num_return_sequences: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = SETTING_SPECS[f.name].coerce(getattr(self, f.name))
            object.__setattr__(self, f.name, value)

    @staticmethod
    def validate_overrides(raw: Mapping[str, object]) -> dict[str, Any]:
        """Checks a mapping of setting name → raw value; unknown names, a channel
        setting and bad values raise UserError before anything is used or saved."""
        out: dict[str, Any] = {}
        for key, value in raw.items():
            spec = spec_for(key)
            if spec.scope != "sampling":
                raise UserError(M.t("setting_channel_only", key=spec.name))
            out[spec.name] = spec.coerce(value)
        return out

    def merged(self, overrides: Mapping[str, object]) -> SamplingSettings:
        """These settings with `overrides` applied (validated)."""
        return replace(self, **self.validate_overrides(overrides))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ChannelOptions:
    """How the bot behaves in a channel, beyond sampling (the "channel" settings)."""

    notices: bool = False  # post a notice when a new version answers
    reply_chance: float = 0.0  # chance of an unprompted reply after a member's message
    reply_cooldown: int = 600  # seconds at least between two unprompted replies

    @classmethod
    def from_stored(cls, stored: Mapping[str, object]) -> ChannelOptions:
        return cls(
            **{k: SETTING_SPECS[k].coerce(v) for k, v in scoped(stored, "channel").items()}  # type: ignore[arg-type]
        )

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Short names people type in chat: `/continue … n=3`.
SETTING_ALIASES = {"n": "num_return_sequences", "temp": "temperature"}


def spec_for(key: str) -> SettingSpec:
    name = key.strip().lower().replace("-", "_")
    spec = SETTING_SPECS.get(SETTING_ALIASES.get(name, name))
    if spec is None:
        raise UserError(M.t("setting_unknown", key=key, known=", ".join(SETTING_SPECS)))
    return spec


# --- Voices ---------------------------------------------------------------------------

# A member's voice tag opens each of their messages in a channel's training text when they
# turned `/voice on` there; `/continue … as:@member` starts the text with it. A hash of
# the channel and the member, so it names nobody and means nothing in another channel.
VOICE_TAG = re.compile(r"^«[0-9a-f]{6}»")


def voice_tag(channel: ChannelRef, user_id: str) -> str:
    digest = hashlib.sha256(f"{channel}/{user_id}".encode()).hexdigest()
    return f"«{digest[:6]}»"


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
    prompt: str = ""
    context: tuple[str, ...] = ()


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
    status: str
    created_at: datetime
    train_loss: float | None = None
    eval_loss: float | None = None
    eval_perplexity: float | None = None
    tokens_seen: int | None = None
    note: str | None = None
    last_message_id: int | None = None  # newest message it was trained on
    eval_bits_per_char: float | None = None  # held out, the channel's newest messages
    markov_bits_per_char: float | None = None  # the channel's Markov chain, same messages


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
