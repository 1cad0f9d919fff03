"""The two kinds of failure the bot knows.

`UserError(reason)`: the user did something we can explain (a bad setting, an empty
prompt, an unknown channel). The reason is shown to them as written and nothing changed.

Anything else is a bug or an outage: it is logged with its traceback and the user gets
`messages.t("internal_error")`, never the exception text (it may hold secrets or data).
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose `reason` is safe and meant to be shown to the user as written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(UserError):
    """A setting (environment variable, .env) has a bad value; raised at start."""


class BusyError(UserError):
    """The device queue is full: the user should try again shortly."""
