"""What a training run is asked and what it returns: its options (a job's payload),
its outcome, and the progress callback it reports each step to. Plain values, shared by
the model code, the engine and the core."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from bot.domain import ModelVersionInfo
from bot.errors import UserError
from bot.training.dataset import DatasetInfo
from bot.training.evaluation import EvalResult
from bot.training.run_config import StepResult, TrainConfig

ProgressFn = Callable[[StepResult, int], None]


@dataclass(frozen=True)
class TrainOptions:
    """One run's choices: its base, whether it may resume, and the TrainConfig fields
    it changes (by name; finetune.py's TrainConfig is the one definition of what a run
    can be told, with its defaults). A job's payload is this, flattened."""

    base: str | None = None  # base model spec; None: TSUZUKI_BASE_MODEL
    resume: bool = True  # continue an interrupted run of the same settings
    changes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.changes) - _CONFIG_FIELDS
        if unknown:
            raise ValueError(f"not a training setting: {', '.join(sorted(unknown))}")

    @classmethod
    def of(cls, base: str | None = None, resume: bool = True, **changes: Any) -> TrainOptions:
        return cls(base, resume, changes)

    def but(self, **changes: Any) -> TrainOptions:
        """These options with some settings changed."""
        return replace(self, changes={**self.changes, **changes})

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TrainOptions:
        """A job's payload: `base`, `resume` and TrainConfig fields; anything else
        (a backfill's cursor, a field of an older version) is ignored."""
        changes = {k: v for k, v in payload.items() if k in _CONFIG_FIELDS and v is not None}
        return cls(payload.get("base"), bool(payload.get("resume", True)), changes)

    def to_payload(self) -> dict[str, Any]:
        return {"base": self.base, "resume": self.resume, **self.changes}


_CONFIG_FIELDS = {f.name for f in fields(TrainConfig)}


class DataForgotten(UserError):
    """A member's messages were forgotten (opt-out) while this run read or trained on
    them: the version it made is void, and the run starts over on the data as it is."""


@dataclass(frozen=True)
class TrainOutcome:
    version: ModelVersionInfo
    promoted: bool
    reason: str
    eval: EvalResult  # the new version on the held-out messages
    start_eval: EvalResult  # the model training started from, on the same messages
    dataset: DatasetInfo
    resumed_at_step: int  # 0 for a fresh run
    tokens_per_second: float
    # The version that answered before this run, on the same held-out messages (what
    # the new one had to beat); None for a channel's first version.
    previous_version: int | None = None
    previous_bits_per_char: float | None = None
