"""The Protocols the core needs, and nothing else: storage/, the engine and the adapters
implement them; the values they pass are in bot/records.py and bot/domain.py. Tests may
pass fakes only where a real part cannot run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from bot.domain import (
    ChannelRef,
    ChatMessage,
    GenerationRequest,
    GenerationResult,
    ModelVersionInfo,
    Notice,
)
from bot.processes import JobOwner
from bot.records import (
    BotPost,
    ChannelInfo,
    ImportBatch,
    ImportCounts,
    JobInfo,
    LiveFingerprint,
    LiveRow,
    TrainingText,
)
from bot.statuses import JobStatus

if TYPE_CHECKING:
    from bot.training.outcome import ProgressFn, TrainOptions, TrainOutcome


class ChannelStore(Protocol):
    async def ensure(self, ref: ChannelRef, name: str = "") -> ChannelInfo: ...

    async def get(self, ref: ChannelRef) -> ChannelInfo | None: ...

    async def set_training(self, ref: ChannelRef, enabled: bool, *, actor: str) -> bool: ...

    async def training_channels(self) -> list[ChannelRef]: ...

    async def known(self) -> list[ChannelRef]: ...

    async def set_sampling(
        self, ref: ChannelRef, key: str, value: Any, *, actor: str
    ) -> tuple[Any, Any]:
        """Sets (value) or removes (None) one channel setting and writes the audit log in
        the same transaction; returns (old, new) channel-level values."""
        ...


class MessageStore(Protocol):
    async def add(self, message: ChatMessage) -> bool:
        """Stores a message; False when the same (channel, external id) was stored."""
        ...

    async def add_batch(self, batch: ImportBatch) -> dict[ChannelRef, ImportCounts]: ...

    async def edit(self, ref: ChannelRef, external_id: str, text: str, at: datetime) -> bool: ...

    async def delete(self, ref: ChannelRef, external_ids: Sequence[str]) -> int: ...

    async def recent(self, ref: ChannelRef, limit: int) -> list[ChatMessage]:
        """The newest `limit` messages, oldest first."""
        ...

    async def texts(self, ref: ChannelRef, external_ids: Sequence[str]) -> dict[str, str]:
        """Stored texts by external id (gone and opted-out members' ones left out)."""
        ...

    async def author_of(self, ref: ChannelRef, external_id: str) -> str | None:
        """The stored message's author's platform id; None: not stored."""
        ...

    async def unlearn(self, ref: ChannelRef, external_id: str, *, actor: str) -> bool:
        """Takes the message out of the history (audited); False: it was not there."""
        ...

    async def count(self, ref: ChannelRef) -> int: ...

    async def training_snapshot(self, ref: ChannelRef) -> tuple[int, int]:
        """(trainable messages, newest message id) at this moment."""
        ...

    async def count_trainable_after(self, ref: ChannelRef, after_id: int) -> int: ...

    def iter_training_texts(
        self, ref: ChannelRef, max_id: int, page_size: int = 5000
    ) -> AsyncIterator[list[TrainingText]]:
        """Pages of (author, text, voice) a model may learn from, oldest first; voice is
        the author's user id when they turned `/voice on` in the channel, else ""."""
        ...

    async def live_fingerprint(self, ref: ChannelRef, upto: int | None) -> LiveFingerprint:
        """Count, newest id, sum of ids, newest edit of the trainable messages."""
        ...

    async def live_rows(
        self,
        ref: ChannelRef,
        *,
        upto: int | None,
        newest: int,
        after_id: int = 0,
        edited_after: datetime | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[LiveRow]: ...

    async def live_ids(self, ref: ChannelRef, upto: int | None) -> list[int]: ...

    async def voice_key(self) -> bytes:
        """The installation's key of voice tags (bot/domain.py voice_tag)."""
        ...


class UserStore(Protocol):
    async def set_opted_out(
        self, platform: str, workspace: str, user_id: str, opted_out: bool, *, actor: str
    ) -> int: ...

    async def is_opted_out(self, platform: str, workspace: str, user_id: str) -> bool: ...

    async def set_voice(self, ref: ChannelRef, user_id: str, on: bool, *, actor: str) -> None:
        """A member's consent to `/continue … as:@them` in this channel (`/voice on`)."""
        ...

    async def has_voice(self, ref: ChannelRef, user_id: str) -> bool: ...


class ModelRegistry(Protocol):
    async def active(self, ref: ChannelRef) -> ModelVersionInfo | None: ...

    async def versions(self, ref: ChannelRef) -> list[ModelVersionInfo]: ...

    async def activate(
        self, ref: ChannelRef, version: int, *, actor: str, note: str | None = None
    ) -> ModelVersionInfo | None: ...

    async def previous_active(self, ref: ChannelRef) -> ModelVersionInfo | None: ...

    async def reset(self, ref: ChannelRef, *, actor: str) -> int:
        """Every version retired for good (`/models reset`); how many."""
        ...

    async def next_version(self, ref: ChannelRef) -> int: ...

    async def add(self, info: ModelVersionInfo, *, forget_epoch: int | None = None) -> bool: ...

    async def forget_epoch(self, ref: ChannelRef) -> int: ...

    async def forget_epochs(self) -> list[tuple[ChannelRef, int]]: ...

    async def forgotten_paths(self) -> list[str]: ...

    async def set_note(self, ref: ChannelRef, version: int, note: str) -> None: ...

    async def set_quality(
        self,
        ref: ChannelRef,
        version: int,
        bits_per_char: float | None,
        markov: float | None,
        live: tuple[float | None, float | None] = (None, None),
    ) -> None: ...

    async def remove(self, ref: ChannelRef, version: int) -> None: ...

    async def move_paths(self, ref: ChannelRef, old: str, new: str) -> int: ...

    async def lose_under(self, ref: ChannelRef, folder: str, note: str) -> list[int]: ...


class JobStore(Protocol):
    @property
    def owner(self) -> JobOwner:
        """The process this store claims jobs for."""
        ...

    async def enqueue(
        self, kind: str, ref: ChannelRef | None, payload: dict[str, Any], priority: int = 0
    ) -> JobInfo:
        """A new queued job, or the one already queued or running for the same kind and
        channel (asking twice does not train twice)."""
        ...

    async def claim_next(self) -> JobInfo | None:
        """The most urgent queued job, marked running (attempts + 1) and owned by this
        process, its heartbeat set."""
        ...

    async def claim(self, job_id: int) -> JobInfo | None:
        """That job, if it is still queued, marked running and owned by this process."""
        ...

    async def heartbeat(self, job_id: int) -> bool:
        """This process still runs the job: its heartbeat is now. False when the job is
        no longer this process's (finished, or taken over as orphaned)."""
        ...

    async def release(self, job_id: int) -> None:
        """This process stops running the job before its end (Ctrl-C, shutdown): it goes
        back to the queue, ownerless, and resumes from its checkpoint on the next run."""
        ...

    async def set_progress(self, job_id: int, progress: float) -> None: ...

    async def set_payload(self, job_id: int, payload: dict[str, Any]) -> None:
        """Where a resumable job got to (a cursor), saved as it goes."""
        ...

    async def finish(self, job_id: int, status: JobStatus, error: str | None = None) -> None: ...

    async def requeue_orphaned(self, stale_after_s: float) -> list[JobInfo]:
        """Running jobs whose owner is gone go back to the queue: an owner on this host
        whose process has ended, or any owner whose heartbeat is older than
        `stale_after_s`. Each is taken with a conditional update (its owner and heartbeat
        as they were read), so of two processes doing this at once only one takes a job,
        and a job whose owner is alive is never taken."""
        ...

    async def recent(self, limit: int = 50) -> list[JobInfo]: ...


class HistorySource(Protocol):
    """A platform's past messages, for backfill: up to `limit` messages older than
    `before` (an external id; None: the newest), newest first."""

    async def __call__(
        self, ref: ChannelRef, before: str | None, limit: int
    ) -> list[ChatMessage]: ...


class TextListener(Protocol):
    """Receives a generation's text so far, each time it has grown (on the event loop, a
    few times a second at most): the whole text as the result will carry it, not a
    delta, unrendered (adapters render and throttle it to their platform's rate limits).
    The result that follows always carries the complete text."""

    def __call__(self, text: str, /) -> None: ...


class TextGenerator(Protocol):
    """Runs generation on the device; never blocks the event loop."""

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        """`on_text` hears the first text as it grows (streaming)."""
        ...


class Trainer(Protocol):
    """Runs one training run of a channel wherever the engine trains (this process's
    device, or a Ray worker with a GPU); the job table stays with the caller."""

    async def train(
        self, ref: ChannelRef, options: TrainOptions, progress: ProgressFn | None = None
    ) -> TrainOutcome:
        """Raises WorkerLost when the process running it died half-way."""
        ...


class Engine(TextGenerator, Trainer, Protocol):
    """Where the models run: `local` (bot/engine/local.py) or `ray`
    (bot/engine/ray_engine.py). The core and the job runner see only this."""

    def close(self) -> None:
        """Lets go of the device or the cluster."""
        ...


class PlatformAdapter(Protocol):
    """A chat platform (Discord, Slack) as its supervisor runs it (bot/core/supervisor.py):
    connects and serves until closed, reads a channel's past for backfill, delivers a
    training notice. The console is run by the app directly."""

    ready: asyncio.Event  # set once connected and serving

    async def run(self) -> None: ...

    async def close(self) -> None: ...

    async def fetch_history(
        self, ref: ChannelRef, before: str | None, limit: int
    ) -> list[ChatMessage]: ...

    async def post_notice(self, notice: Notice) -> None: ...


class BotPostStore(Protocol):
    """The bot's own posts, for reply chains (never trained on)."""

    async def add(
        self,
        ref: ChannelRef,
        posts: Sequence[tuple[str, str]],
        chain: Sequence[str],
        thread: str | None = None,
    ) -> None: ...

    async def find(self, ref: ChannelRef, external_id: str) -> BotPost | None: ...

    async def newest_in_thread(self, ref: ChannelRef, thread: str) -> BotPost | None: ...

    async def texts(self, ref: ChannelRef, external_ids: Sequence[str]) -> dict[str, str]: ...

    async def delete(self, ref: ChannelRef, external_ids: Sequence[str]) -> int: ...


class Stores(Protocol):
    """Every store, as the core and the engine get them (bot/engine/parts.py SqlStores)."""

    @property
    def channels(self) -> ChannelStore: ...

    @property
    def messages(self) -> MessageStore: ...

    @property
    def registry(self) -> ModelRegistry: ...

    @property
    def users(self) -> UserStore: ...

    @property
    def jobs(self) -> JobStore: ...

    @property
    def posts(self) -> BotPostStore: ...
