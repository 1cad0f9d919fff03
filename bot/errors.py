"""The two kinds of failure the bot knows.

`UserError(reason)`: the user did something we can explain (a bad setting, an empty
prompt, an unknown channel). The reason is shown to them as written and nothing changed.

Anything else is a bug or an outage: it is logged with its traceback and the user gets
`messages.t("internal_error")`, never the exception text (it may hold secrets or data).

`WorkerLost` is neither: the process running a job died, and the job resumes elsewhere.
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


class WorkerLost(Exception):
    """The process that ran a job's work is gone (a Ray worker killed, its node lost).
    Nothing is wrong with the job: it goes back to the queue and resumes from its last
    checkpoint."""
