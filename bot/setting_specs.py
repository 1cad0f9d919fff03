"""Per-channel settings, one table: SETTING_SPECS drives validation, help and display.

"sampling" settings shape one generation (SamplingSettings, also per request);
"channel" settings shape how the bot behaves in a channel (ChannelOptions).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from bot import messages as M
from bot.errors import UserError

# The longest word a word list (banned_words) takes.
WORD_CHARS = 50
# A typed number: plain decimal or exponent notation. Python's float() also takes digit
# separators ("0_5" is 5.0) and words ("infinity"), which no user means.
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
# How much of a refused value an error message repeats.
ECHO_CHARS = 40


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
    # int, float, bool (a switch: on/off), or list (of words; `maximum` of them at most)
    kind: type
    minimum: float
    maximum: float
    help: str
    nullable: bool = False
    scope: Scope = "sampling"

    def describe_range(self) -> str:
        if self.kind is bool:
            return "on|off"
        if self.kind is list:
            return f"words separated by commas (at most {_fmt(self.maximum)}), or 'none'"
        rng = f"{_fmt(self.minimum)}–{_fmt(self.maximum)}"
        return f"{rng} or 'none'" if self.nullable else rng

    def show(self, value: object) -> str:
        """A value as `/settings` shows it."""
        if value is None:
            return "none"
        if self.kind is bool:
            return "on" if value else "off"
        if self.kind is list:
            return ", ".join(str(w) for w in value) if value else "none"  # type: ignore[attr-defined]
        return str(value)

    def coerce(self, raw: object) -> int | float | bool | tuple[str, ...] | None:
        """Turns `raw` (a string typed by a user, or a number) into a valid value, or
        raises UserError naming the setting and its range."""
        if self.kind is list:
            return self._words(raw)
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

    def _words(self, raw: object) -> tuple[str, ...]:
        """A list of words: typed with commas between them (Japanese ones too), or as
        stored; NFKC-normalised, each once, in the order given. 'none' is no words."""
        if raw is None:
            return ()
        if isinstance(raw, str):
            typed = unicodedata.normalize("NFKC", raw).strip()
            items: list[object] = [] if typed.lower() in {"none", ""} else re.split(r"[,、]", typed)
        elif isinstance(raw, list | tuple):
            items = list(raw)
        else:
            raise self._invalid(raw)
        words: list[str] = []
        for item in items:
            if not isinstance(item, str):
                raise self._invalid(raw)
            word = unicodedata.normalize("NFKC", item).strip()
            if len(word) > WORD_CHARS:
                raise self._invalid(raw)
            if word and word.casefold() not in {w.casefold() for w in words}:
                words.append(word)
        if len(words) > self.maximum:
            raise self._invalid(raw)
        return tuple(words)

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
        kind = {
            int: "an integer",
            bool: "on or off",
            list: f"words of at most {WORD_CHARS} characters",
        }.get(self.kind, "a number")
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
        # Words never posted (bot/generation/banned.py): resampled, else the text cut.
        SettingSpec(
            "banned_words",
            list,
            0,
            200,
            "words a reply never contains (resampled, else cut there), case aside",
            scope="channel",
        ),
        SettingSpec(
            "banned_words_train",
            bool,
            0,
            1,
            "training leaves out the messages that contain a banned word",
            scope="channel",
        ),
        SettingSpec(
            "reply_to_replies",
            bool,
            0,
            1,
            "a reply to one of the bot's messages is answered, the conversation ahead of"
            " the channel's recent history",
            scope="channel",
        ),
        # The leak guard (bot/generation/verbatim.py). Channel scope: nobody can turn it
        # off for one request by typing `verbatim_run=1000`.
        SettingSpec(
            "verbatim_whole",
            int,
            8,
            100_000,
            "a member's stored message this long or longer never comes back whole",
            scope="channel",
        ),
        SettingSpec(
            "verbatim_run",
            int,
            16,
            100_000,
            "a reply never copies this many characters of one stored message",
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
    reply_to_replies: bool = True  # a reply to the bot's message is answered in context
    banned_words: tuple[str, ...] = ()  # never in a reply
    banned_words_train: bool = False  # messages with a banned word are not trained on
    verbatim_whole: int = 20  # stored messages this long never come back whole
    verbatim_run: int = 32  # nor does a run this long of one

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
