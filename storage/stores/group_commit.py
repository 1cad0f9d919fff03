"""Group commit: writes from many coroutines, committed together.

Each caller puts its write on a bounded queue and waits for the transaction that holds
it (milliseconds); one writer task takes whatever has queued up while the previous
batch committed and applies it in one transaction. There is no waiting to fill a
batch: a lone write goes at once, and under load batches grow by themselves. A caller
is answered only after its write committed, so neither a stop nor a crash loses a write
its caller was told about; a full queue makes callers wait (backpressure), it never
drops a write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

W = TypeVar("W")
R = TypeVar("R")

# Writes one transaction takes at most: large enough that a burst costs few commits,
# small enough that one transaction never holds SQLite's write lock for long.
MAX_BATCH = 2000


@dataclass
class _Queued(Generic[W, R]):
    write: W
    done: asyncio.Future[R] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit(Generic[W, R]):
    """`apply(writes)` applies a batch in one transaction, all or nothing, returning a
    result per write. A batch that fails is applied again write by write (a lone write
    once more), so one bad write fails alone and the others still commit."""

    def __init__(
        self,
        apply: Callable[[Sequence[W]], Awaitable[list[R]]],
        *,
        max_queued: int = 10_000,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._apply = apply
        self._max_queued = max_queued
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Queued[W, R] | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0  # transactions committed, for benchmarks and tests
        self.written = 0

    async def write(self, write: W) -> R:
        """Applies `write` with whatever else is queued; returns once it committed."""
        if self._closed:
            # After close (a stopping bot's last events): alone, but still written.
            (result,) = await self._apply([write])
            return result
        queue = self._started()
        queued: _Queued[W, R] = _Queued(write)
        await queue.put(queued)
        # Shielded: a caller that is cancelled (its event handler, a stopping bot) does
        # not take its write out of a batch that may be committing.
        return await asyncio.shield(queued.done)

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def _started(self) -> asyncio.Queue[_Queued[W, R] | None]:
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer.get_loop() is not loop or self._writer.done():
            # The first write in this event loop (tests and `tsuzuki` commands each run
            # their own) starts the writer there.
            self._queue = asyncio.Queue(self._max_queued)
            self._writer = loop.create_task(self._drain(self._queue), name="group-commit")
        assert self._queue is not None
        return self._queue

    async def close(self) -> None:
        """Commits everything queued, then stops the writer."""
        self._closed = True
        writer, queue = self._writer, self._queue
        if writer is None or queue is None or writer.done():
            return
        if writer.get_loop() is not asyncio.get_running_loop():
            return  # its loop is gone, and with it whatever it held
        await queue.put(None)
        await writer

    async def _drain(self, queue: asyncio.Queue[_Queued[W, R] | None]) -> None:
        while True:
            first = await queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            await self._commit(batch)
            if stop:
                return

    async def _commit(self, batch: list[_Queued[W, R]], *, again: bool = True) -> None:
        try:
            results = await self._apply([q.write for q in batch])
        except Exception as e:
            if not again:
                for queued in batch:
                    if not queued.done.done():
                        queued.done.set_exception(e)
                return
            # Each write once more, alone: one bad write fails by itself, and a write
            # that failed on something the failure cleared (ids of rows deleted by hand,
            # storage/stores/live_writes.py) goes in.
            if len(batch) > 1:
                log.warning("a batch of %d writes failed; writing them one by one", len(batch))
            for queued in batch:
                await self._commit([queued], again=False)
            return
        self.batches += 1
        self.written += len(batch)
        for queued, result in zip(batch, results, strict=True):
            if not queued.done.done():
                queued.done.set_result(result)
