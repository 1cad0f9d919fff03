"""The device worker: one thread owns the device and runs all torch work, most urgent
first.

- Interactive generation comes before anything else, then ordinary work (loading a
  model, an evaluation), then training steps. Training runs one step per job, so a
  request that arrives during a nightly run waits at most about one step.
- Generation requests that are waiting together are handed to their batch handler
  as one batch, whichever channels they come from.
- The interactive queue is bounded: past `max_pending` a request is refused at once
  (BusyError) instead of waiting without end.
- A request whose caller gave up (cancelled, timed out) is dropped before it uses
  the device.

Torch calls block for milliseconds to minutes; running them on the asyncio event loop
would freeze every platform connection, so the loop only awaits futures.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bot import messages as M
from bot.device import Priority
from bot.engine.metrics import EngineMetrics
from bot.errors import BusyError
from bot.generation.libraries import import_libraries

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


def configure_torch(threads: int) -> None:
    """Thread settings for the device thread (see bot/__init__.py for the wait policy)."""
    import torch

    torch.set_num_threads(max(1, threads))
    log.debug("torch uses %d threads", torch.get_num_threads())


@dataclass(eq=False)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    call: Callable[[], Any] | None = None  # a plain job
    item: Any = None  # a batchable job: the item its handler receives
    handler: Callable[[Sequence[Any]], Sequence[Any]] | None = None
    enqueued: float = field(default_factory=time.perf_counter)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        def apply() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(apply)

    @property
    def abandoned(self) -> bool:
        return self.future.done()


@dataclass(frozen=True)
class BatchOutcome(Generic[R]):
    """What a batch handler returns for one item: a result or the item's own error."""

    result: R | None = None
    error: BaseException | None = None


class DeviceWorker:
    def __init__(
        self,
        threads: int,
        *,
        max_pending: int = 64,
        max_batch: int = 16,
        batch_window_s: float = 0.005,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.metrics = metrics or EngineMetrics()
        self.max_pending = max_pending  # interactive requests waiting at most
        self.max_batch = max_batch  # rows of one generation batch at most
        self.batch_window_s = batch_window_s  # wait this long for more requests to batch
        self._queue: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._pending_interactive = 0
        self._lock = threading.Lock()
        self._held: list[tuple[int, int, _Job | None]] = []  # popped, not batchable now
        self._thread = threading.Thread(
            target=self._loop, args=(threads,), name="tsuzuki-device", daemon=True
        )
        self._thread.start()
        self.batch_sizes: list[int] = []  # observed, for metrics and benchmarks

    # --- the asyncio side --------------------------------------------------------------

    async def run(
        self, fn: Callable[..., T], /, *args: Any, priority: Priority = Priority.NORMAL
    ) -> T:
        """Runs fn(*args) on the device thread and waits for it without blocking."""
        job = self._job(priority, call=lambda: fn(*args))
        result: T = await self._await(job, priority)
        return result

    async def submit(
        self,
        item: Any,
        handler: Callable[[Sequence[Any]], Sequence[BatchOutcome[Any]]],
        priority: Priority = Priority.INTERACTIVE,
    ) -> Any:
        """Queues `item` for `handler`, which gets it in a batch with whatever else is
        waiting for the same handler; raises BusyError when the queue is full."""
        job = self._job(priority, item=item, handler=handler)
        return await self._await(job, priority)

    def record_training_step(self, seconds: float) -> None:
        self.metrics.train_step.observe(seconds)

    def _job(self, priority: Priority, **kw: Any) -> _Job:
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), **kw)
        if priority == Priority.INTERACTIVE:
            with self._lock:
                if self._pending_interactive >= self.max_pending:
                    self.metrics.refused.inc()
                    raise BusyError(M.t("busy"))
                self._pending_interactive += 1
                self.metrics.queue_depth.set(self._pending_interactive)
        self._queue.put((int(priority), next(self._seq), job))
        return job

    async def _await(self, job: _Job, priority: Priority) -> Any:
        try:
            return await job.future
        finally:
            if priority == Priority.INTERACTIVE:
                with self._lock:
                    self._pending_interactive -= 1
                    self.metrics.queue_depth.set(self._pending_interactive)

    def close(self) -> None:
        self._queue.put((-1, next(self._seq), None))  # before anything else
        self._thread.join()

    # --- the device thread ---------------------------------------------------------------

    def _loop(self, threads: int) -> None:
        configured = False
        while True:
            priority, seq, job = self._next()
            if job is None:
                break
            if job.abandoned:
                continue
            if not configured:
                # Before the first job, not at start: a command that never uses the
                # device (settings, import) does not wait for the ML libraries.
                import_libraries()
                configure_torch(threads)
                configured = True
            if job.handler is None:
                self._run_call(job)
            else:
                self._run_batch(self._gather(priority, seq, job))

    def _next(self) -> tuple[int, int, _Job | None]:
        if self._held:
            self._held.sort(key=lambda entry: entry[:2])
            head = self._held[0]
            try:
                newer = self._queue.get_nowait()
            except queue.Empty:
                self._held.pop(0)
                return head
            if newer[:2] < head[:2]:
                return newer
            self._held.append(newer)
            return self._held.pop(0)
        return self._queue.get()

    def _run_call(self, job: _Job) -> None:
        assert job.call is not None
        try:
            job.settle(job.call())
        except BaseException as e:
            job.settle(error=e)

    def _gather(self, priority: int, seq: int, first: _Job) -> list[_Job]:
        """The first job plus what waits (or arrives within the window) for the same
        handler at the same priority, up to max_batch."""
        batch = [first]
        deadline = time.perf_counter() + self.batch_window_s
        while len(batch) < self.max_batch:
            timeout = deadline - time.perf_counter()
            try:
                entry = (
                    self._queue.get(timeout=max(0.0, timeout))
                    if timeout > 0
                    else (self._queue.get_nowait())
                )
            except queue.Empty:
                break
            job = entry[2]
            if job is None or job.handler != first.handler or entry[0] != priority:
                self._held.append(entry)
                if job is None:
                    break
                continue
            if not job.abandoned:
                batch.append(job)
        return batch

    def _run_batch(self, jobs: list[_Job]) -> None:
        handler = jobs[0].handler
        assert handler is not None
        self.batch_sizes.append(len(jobs))
        if len(self.batch_sizes) > 1000:
            del self.batch_sizes[:500]  # recent sizes only: the bot runs for months
        try:
            outcomes = handler([job.item for job in jobs])
        except BaseException as e:
            for job in jobs:
                job.settle(error=e)
            return
        for job, outcome in zip(jobs, outcomes, strict=True):
            job.settle(outcome.result, outcome.error)
