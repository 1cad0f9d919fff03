"""The one parser every text surface shares (console, Slack, CLI)."""

from __future__ import annotations

import pytest

from bot.core.command_values import (
    ActivateModel,
    Continue,
    Help,
    ListModels,
    ResetModels,
    SetOptOut,
    SetSetting,
    SetTraining,
    ShowSettings,
)
from bot.core.text_commands import parse_command, parse_named
from bot.errors import UserError


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("/continue 織田信長は、 temp=0.7", Continue("織田信長は、", {"temperature": "0.7"})),
        ("/continue a=b is a prompt", Continue("a=b is a prompt", {})),
        ("/settings", ShowSettings()),
        ("/settings set temperature '0.5'", SetSetting("temperature", "0.5")),
        ("/models activate v3", ActivateModel("v3")),
        ("/models", ListModels()),
        ("/models reset", ResetModels()),
        ("/models reset confirm", ResetModels(confirmed=True)),
        ("/training on", SetTraining(True)),
        ("/optout", SetOptOut(True)),
        ("help", Help()),
    ],
)
def test_a_typed_line_is_one_command_value(line: str, value: object) -> None:
    assert parse_command(line) == value


def test_slack_continue_carries_only_the_text_after_the_command() -> None:
    assert parse_named("continue", "hi seed=3") == Continue("hi", {"seed": "3"})


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("/dance", "/dance"),
        ("/settings set temperature", "Usage: /settings"),
        ("/settings set 'unclosed", "Usage: /settings"),
        ("/models activate", "Usage: /models"),
        ("/models reset now", "Usage: /models"),
        ("/training maybe", "/training"),
    ],
)
def test_a_line_that_is_no_command_says_how_to_write_one(line: str, says: str) -> None:
    with pytest.raises(UserError, match=says):
        parse_command(line)
