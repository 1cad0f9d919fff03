"""The device worker: one thread owns the device and runs all torch work, most urgent
first.

- Interactive generation comes before anything else, then ordinary work (loading a
  model, an evaluation), then training steps. Training runs one step per job, so a
  request that arrives during a nightly run waits at most about one step.
- Generation requests go to their batch handler through a Feed: those waiting
  together at first, then any that arrive while it runs (continuous batching),
  whichever channels they come from.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bot import messages as M
from bot.device import Priority
from bot.engine.metrics import EngineMetrics
from bot.errors import BusyError
from bot.generation.libraries import import_libraries

T = TypeVar("T")
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
    handler: Callable[[Feed], None] | None = None
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


class Feed:
    """What a batch handler works from: the requests waiting for it, more as they
    arrive (continuous batching), and where each one's answer goes.

    The handler takes items with `take()` (never blocks), answers each with
    `settle()`, and returns when it has nothing left; anything it took and did not
    settle is answered with an error then, so no caller waits for ever.
    """

    def __init__(self, worker: DeviceWorker, priority: int, jobs: list[_Job]) -> None:
        self._worker = worker
        self._priority = priority
        self._handler = jobs[0].handler
        self._ready = list(jobs)  # gathered, not yet taken
        self._taken: dict[int, _Job] = {}  # id(item) → job

    def take(self, limit: int) -> list[Any]:
        """Up to `limit` waiting items: the gathered ones first, then any that arrived
        since for the same handler."""
        if len(self._ready) < limit:
            self._ready += self._worker._more(
                self._priority, self._handler, limit - len(self._ready)
            )
        jobs, self._ready = self._ready[:limit], self._ready[limit:]
        for job in jobs:
            self._taken[id(job.item)] = job
        self._worker.batch_sizes[-1] += len(jobs)  # this session's entry
        return [job.item for job in jobs]

    def abandoned(self, item: Any) -> bool:
        """Whether the caller gave up on the item (its row can stop now)."""
        return self._taken[id(item)].abandoned

    def settle(self, item: Any, result: Any = None, error: BaseException | None = None) -> None:
        self._taken.pop(id(item)).settle(result, error)

    def _close(self, error: BaseException) -> None:
        for job in (*self._taken.values(), *self._ready):
            job.settle(error=error)
        self._taken.clear()
        self._ready.clear()


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
        handler: Callable[[Feed], None],
        priority: Priority = Priority.INTERACTIVE,
    ) -> Any:
        """Queues `item` for `handler`, which gets it through a Feed together with
        whatever else waits (or arrives while it runs) for the same handler; raises
        BusyError when the queue is full."""
        job = self._job(priority, item=item, handler=handler)
        return await self._await(job, priority)

    @property
    def interactive_waiting(self) -> int:
        """Interactive requests queued or running now (people waiting for an answer)."""
        return self._pending_interactive

    def serve_waiting(self) -> None:
        """Runs the interactive jobs waiting now, from inside a long job on the device
        thread (training's yield points between layers); returns when none wait."""
        if self._pending_interactive == 0 or threading.current_thread() is not self._thread:
            return
        while (entry := self._next_interactive()) is not None:
            priority, seq, job = entry
            assert job is not None
            if job.abandoned:
                continue
            if job.handler is None:
                self._run_call(job)
            else:
                self._run_batch(priority, self._gather(priority, seq, job))

    def _next_interactive(self) -> tuple[int, int, _Job | None] | None:
        for entry in sorted(self._held, key=lambda e: e[:2]):
            if entry[0] == Priority.INTERACTIVE and entry[2] is not None:
                self._held.remove(entry)
                return entry
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return None
            if entry[0] == Priority.INTERACTIVE and entry[2] is not None:
                return entry
            self._held.append(entry)
            if entry[2] is None:
                return None  # closing

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

    @property
    def alive(self) -> bool:
        """The device thread still runs (a Ray replica's health check asks)."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Stops the device thread (again: nothing)."""
        if self._thread.is_alive():
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
                self._run_batch(priority, self._gather(priority, seq, job))

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

    def _run_batch(self, priority: int, jobs: list[_Job]) -> None:
        handler = jobs[0].handler
        assert handler is not None
        if len(self.batch_sizes) > 1000:
            del self.batch_sizes[:500]  # recent sizes only: the bot runs for months
        # Requests this session serves, counted as it takes them (before any answer, so
        # whoever got an answer sees its session counted).
        self.batch_sizes.append(0)
        feed = Feed(self, priority, jobs)
        try:
            handler(feed)
        except BaseException as e:
            feed._close(e)
            return
        feed._close(RuntimeError("the batch handler left a request unanswered"))

    def _more(self, priority: int, handler: Any, limit: int) -> list[_Job]:
        """Jobs for `handler` at `priority` that are waiting now, up to `limit`; other
        jobs popped on the way are held for later. Never blocks."""
        found: list[_Job] = []
        kept: list[tuple[int, int, _Job | None]] = []
        for entry in sorted(self._held, key=lambda e: e[:2]):
            job = entry[2]
            if len(found) < limit and _matches(entry, priority, handler):
                assert job is not None
                if not job.abandoned:
                    found.append(job)
            else:
                kept.append(entry)
        self._held = kept
        while len(found) < limit:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if not _matches(entry, priority, handler):
                self._held.append(entry)
                if entry[2] is None:
                    break  # closing: take nothing newer
                continue
            job = entry[2]
            assert job is not None
            if not job.abandoned:
                found.append(job)
        return found


def _matches(entry: tuple[int, int, _Job | None], priority: int, handler: Any) -> bool:
    job = entry[2]
    return job is not None and entry[0] == priority and job.handler == handler
