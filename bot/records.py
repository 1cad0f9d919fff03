"""Plain values the stores hand out and take (bot/ports.py's Protocols pass them), and
the types of the policies storage applies but may not define (storage may not import
bot.training). A leaf module: it imports only the domain, statuses and processes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.domain import ChannelRef, ChatMessage
from bot.processes import JobOwner
from bot.statuses import JobStatus, VersionStatus

# One message a model may learn from: (author's name, text, voice), voice being the
# author's user id when they lent the channel their voice (`/voice on`), else "".
TrainingText = tuple[str, str, str]


@dataclass(frozen=True)
class LiveRow:
    """One trainable message as the live counts read it."""

    id: int
    author: str  # display name
    text: str
    voice: str  # the author's user id when they lent the channel their voice, else ""


@dataclass(frozen=True)
class LiveFingerprint:
    """What the live counts compare to know whether a channel's trainable messages
    changed: a new message raises `newest`, a delete or an opt-out changes `count`
    and `id_sum`, an edit raises `edited`."""

    count: int
    newest: int
    id_sum: int
    edited: datetime | None


@dataclass(frozen=True)
class ChannelInfo:
    id: int
    ref: ChannelRef
    name: str
    training_enabled: bool
    sampling: dict[str, Any]
    # When a stored message was last deleted or edited: versions trained before then
    # still hold what it said, so the next nightly run is due.
    history_changed_at: datetime | None = None


@dataclass
class ImportBatch:
    """Everything one import file holds, parsed and validated before anything is stored."""

    messages: list[ChatMessage] = field(default_factory=list)
    channel_names: dict[ChannelRef, str] = field(default_factory=dict)
    # why → how many records were left out (bot author, system message, empty…)
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class ImportCounts:
    imported: int
    duplicates: int
    # Messages of members who opted out: never stored again, whoever brings them.
    opted_out: int = 0
    # Messages taken out of the history ("Don't learn from this"): likewise.
    unlearned: int = 0


@dataclass(frozen=True)
class JobInfo:
    id: int
    kind: str  # train | backfill | …
    channel: ChannelRef | None
    status: JobStatus
    priority: int
    attempts: int
    progress: float  # 0..1
    payload: dict[str, Any]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # The process that runs (or last ran) the job, and when it last said it is alive.
    owner: JobOwner | None = None
    heartbeat_at: datetime | None = None


@dataclass(frozen=True)
class VersionRecord:
    """One stored model version of a channel, as far as forgetting needs it."""

    version: int
    status: VersionStatus
    method: str  # lora | full
    base_model: str
    last_message_id: int | None  # the newest message it was trained on (None: unknown)
    activated_at: datetime | None  # UTC; when it last became active, if ever


@dataclass(frozen=True)
class ForgetPlan:
    """What forgetting a member's messages does to a channel's versions: which are
    marked forgotten, and which earlier version answers instead of the withdrawn active
    one (`replaces`); `reactivate` None leaves the channel to its base (or to the
    active version, where that one stays)."""

    forgotten: frozenset[int]
    reactivate: int | None = None
    replaces: int | None = None


# (the channel's versions in version order, the id of the first forgotten message)
# → the plan. bot.training.lineage.plan_forget is the one the bot runs.
ForgetPolicy = Callable[[Sequence[VersionRecord], int], ForgetPlan]


@dataclass(frozen=True)
class BotPost:
    """A message the bot posted, as kept for reply chains (storage: bot_posts)."""

    external_id: str
    text: str
    # The conversation it was written after: external ids, oldest first.
    chain: tuple[str, ...] = ()
    thread: str | None = None  # Slack: the thread it is in (its root's ts)
