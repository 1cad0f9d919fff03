"""What a user asked for, as values: every adapter and the CLI turn a platform event or
an argument list into one of these, and the core runs it (`Core.on_command`).

A value carries the user's input as the platform gave it (a setting's value as typed, a
Discord option as its number): checking it is the command's job, so every platform
refuses the same input the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Continue:
    """Continue `prompt` in the channel's voice, with per-request setting overrides."""

    prompt: str
    overrides: Mapping[str, object] = field(default_factory=dict)
    # Write as this member (their user id on the platform): only when they lent the
    # channel their voice (`/voice on`).
    voice: str | None = None


@dataclass(frozen=True)
class ShowSettings:
    pass


@dataclass(frozen=True)
class SetSetting:
    key: str
    value: str


@dataclass(frozen=True)
class ResetSetting:
    key: str


@dataclass(frozen=True)
class ListModels:
    pass


@dataclass(frozen=True)
class ActivateModel:
    version: str  # "3" or "v3"


@dataclass(frozen=True)
class RollbackModel:
    pass


@dataclass(frozen=True)
class ResetModels:
    """Retire every version: the channel starts again from its base at the next
    training. Without `confirmed`, only says what it would do."""

    confirmed: bool = False


@dataclass(frozen=True)
class SetTraining:
    """An admin's consent for the channel's history to be trained on."""

    enabled: bool


@dataclass(frozen=True)
class QueueTraining:
    pass


@dataclass(frozen=True)
class SetOptOut:
    """A member's own consent: opting out forgets their messages in the workspace."""

    out: bool


@dataclass(frozen=True)
class SetVoice:
    """A member's own consent to `/continue … as:@them` in this channel; None: only
    says where they stand."""

    on: bool | None = None


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class ContinueMessage:
    """A message's action "Continue this message": its text (as the platform shows it)
    is the prompt, and only the new text is posted, in reply to it."""

    external_id: str
    text: str
    author_id: str


@dataclass(frozen=True)
class Unlearn:
    """A message's action "Don't learn from this": its author's, or an admin's."""

    external_id: str


Command = (
    Continue
    | ShowSettings
    | SetSetting
    | ResetSetting
    | ListModels
    | ActivateModel
    | RollbackModel
    | ResetModels
    | SetTraining
    | QueueTraining
    | SetOptOut
    | SetVoice
    | Help
    | ContinueMessage
    | Unlearn
)
