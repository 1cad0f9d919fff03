"""The device port: how model code (generation/, training/) gets time on the one device.

The engine implements it (bot/engine/worker.py's DeviceWorker, one thread that owns the
device); model code only sees this Protocol, so it never imports the engine.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Priority(enum.IntEnum):
    INTERACTIVE = 0  # someone is waiting in a chat
    NORMAL = 1  # loading, evaluation, building a scratch model
    TRAINING = 2  # one training step


class Device(Protocol):
    async def run(
        self, fn: Callable[..., T], /, *args: Any, priority: Priority = Priority.NORMAL
    ) -> T:
        """Runs fn(*args) on the device, after more urgent work, without blocking the
        event loop."""
        ...

    def serve_waiting(self) -> None:
        """From inside a long job, on the device: runs the chat requests waiting now,
        then returns (a training slice calls it between layers, so nobody waits for a
        whole slice). Does nothing when none wait."""
        ...

    def record_training_step(self, seconds: float) -> None:
        """How long one training step held the device (for metrics)."""
        ...
