"""The one parser of typed commands: `/continue …`, `/settings set …`, `/models …`.

The console, Slack's `/tsuzuki` and `/continue` and the CLI all read a user's words
through here, so a command means the same wherever it is typed.
"""

from __future__ import annotations

import re
import shlex

from bot import messages as M
from bot.command_values import (
    ActivateModel,
    Command,
    Continue,
    Help,
    ListModels,
    QueueTraining,
    ResetModels,
    ResetSetting,
    RollbackModel,
    SetOptOut,
    SetSetting,
    SetTraining,
    SetVoice,
    ShowSettings,
)
from bot.domain import SETTING_ALIASES, SETTING_SPECS
from bot.errors import UserError

_OVERRIDE = re.compile(r"^([a-z_]+)=(\S+)$")
# `as:` and a mention: Slack's <@U123> or <@U123|name>, Discord's <@123> or <@!123>, or a
# plain @name or name (the console's user names).
_AS = re.compile(r"^as:(?:<@!?([A-Za-z0-9]+)(?:\|[^>]*)?>|@?([^\s<>@]+))$")


def split_overrides(text: str) -> tuple[str, dict[str, str]]:
    """'織田信長は、 temperature=0.7 seed=1' → ('織田信長は、', {...}). Only trailing
    key=value words whose key is a setting count, so prompts may contain '='."""
    prompt, overrides, _ = split_options(text)
    return prompt, overrides


def split_options(text: str) -> tuple[str, dict[str, str], str | None]:
    """The prompt, its trailing key=value overrides and its `as:@member` (the member's
    user id, as a platform writes a mention: '<@U123|taro>', '<@123>', '@taro')."""
    words = text.split(" ")
    overrides: dict[str, str] = {}
    voice: str | None = None
    while words:
        last = words[-1]
        if voice is None and (as_match := _AS.match(last)) is not None:
            voice = as_match.group(1) or as_match.group(2)
            words.pop()
            continue
        match = _OVERRIDE.match(last)
        if match is None:
            break
        key = SETTING_ALIASES.get(match.group(1), match.group(1))
        if key not in SETTING_SPECS:
            break
        overrides.setdefault(key, match.group(2))
        words.pop()
    return " ".join(words).strip(), overrides, voice


def parse_command(line: str) -> Command:
    """A typed line ('/settings set temperature 0.7') as a command value; UserError
    with the usage when it is not one."""
    name, _, rest = line.strip().lstrip("/").partition(" ")
    return parse_named(name, rest)


def parse_named(name: str, rest: str) -> Command:
    """A command whose name the platform already split off (Slack's `/continue` carries
    only the text after it)."""
    name = name.lower()
    if name == "continue":
        prompt, overrides, voice = split_options(rest)
        return Continue(prompt, overrides, voice)
    if name == "voice":
        match rest.strip().lower():
            case "":
                return SetVoice()
            case "on" | "off" as word:
                return SetVoice(word == "on")
        raise UserError(M.t("voice_usage"))
    if name == "settings":
        return _settings(rest)
    if name == "models":
        return _models(rest.split())
    if name == "training" and rest.strip() in ("on", "off"):
        return SetTraining(rest.strip() == "on")
    if name == "train":
        return QueueTraining()
    if name in ("optout", "optin"):
        return SetOptOut(name == "optout")
    if name == "help":
        return Help()
    raise UserError(M.t("unknown_command", name="/" + name))


def _models(args: list[str]) -> Command:
    match args:
        case [] | ["list"]:
            return ListModels()
        case ["activate", version]:
            return ActivateModel(version)
        case ["rollback"]:
            return RollbackModel()
        case ["reset"]:
            return ResetModels()
        case ["reset", "confirm"]:
            return ResetModels(confirmed=True)
    raise UserError(M.t("models_usage"))


def _settings(rest: str) -> Command:
    try:
        args = shlex.split(rest)
    except ValueError:
        raise UserError(M.t("settings_usage")) from None
    match args:
        case [] | ["show"]:
            return ShowSettings()
        case ["set", key, value]:
            return SetSetting(key, value)
        case ["reset", key]:
            return ResetSetting(key)
    raise UserError(M.t("settings_usage"))
