"""The one parser of typed commands: `/continue …`, `/settings set …`, `/models …`.

The console, Slack's `/tsuzuki` and `/continue` and the CLI all read a user's words
through here, so a command means the same wherever it is typed.
"""

from __future__ import annotations

import re
import shlex

from bot import messages as M
from bot.core import command_values as cmd
from bot.errors import UserError
from bot.setting_specs import SETTING_ALIASES, SETTING_SPECS

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


def parse_command(line: str) -> cmd.Command:
    """A typed line ('/settings set temperature 0.7') as a command value; UserError
    with the usage when it is not one."""
    name, _, rest = line.strip().lstrip("/").partition(" ")
    return parse_named(name, rest)


def parse_named(name: str, rest: str) -> cmd.Command:
    """A command whose name the platform already split off (Slack's `/continue` carries
    only the text after it)."""
    name = name.lower()
    if name == "continue":
        prompt, overrides, voice = split_options(rest)
        return cmd.Continue(prompt, overrides, voice)
    if name == "voice":
        match rest.strip().lower():
            case "":
                return cmd.SetVoice()
            case "on" | "off" as word:
                return cmd.SetVoice(word == "on")
        raise UserError(M.t("voice_usage"))
    if name == "settings":
        return _settings(rest)
    if name == "models":
        return parse_models(rest.split())
    if name == "training":
        return parse_training(rest.split())
    if name == "train":
        return cmd.QueueTraining()
    if name in ("optout", "optin"):
        return cmd.SetOptOut(name == "optout")
    if name == "help":
        return cmd.Help()
    raise UserError(M.t("unknown_command", name="/" + name))


def parse_training(args: list[str]) -> cmd.Command:
    """`training on|off`, as words."""
    match args:
        case ["on" | "off" as word]:
            return cmd.SetTraining(word == "on")
    raise UserError(M.t("unknown_command", name="/training"))


def parse_models(args: list[str]) -> cmd.Command:
    """`models [list | activate N | rollback | reset [confirm]]`, as words."""
    match args:
        case [] | ["list"]:
            return cmd.ListModels()
        case ["activate", version]:
            return cmd.ActivateModel(version)
        case ["rollback"]:
            return cmd.RollbackModel()
        case ["reset"]:
            return cmd.ResetModels()
        case ["reset", "confirm"]:
            return cmd.ResetModels(confirmed=True)
    raise UserError(M.t("models_usage"))


def _settings(rest: str) -> cmd.Command:
    try:
        args = shlex.split(rest)
    except ValueError:
        raise UserError(M.t("settings_usage")) from None
    return parse_settings(args)


def parse_settings(args: list[str]) -> cmd.Command:
    """`settings [show | set KEY VALUE | reset KEY]`, as words."""
    match args:
        case [] | ["show"]:
            return cmd.ShowSettings()
        case ["set", key, *words] if words:
            # A word list may be typed with spaces: `set banned_words foo, bar`.
            return cmd.SetSetting(key, " ".join(words))
        case ["reset", key]:
            return cmd.ResetSetting(key)
    raise UserError(M.t("settings_usage"))
