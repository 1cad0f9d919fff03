"""Which model answers for a channel: its active trained version, else the configured
base (a hub id, a directory, or a scratch model built once for the channel)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot.domain import ChannelRef
from bot.engine.worker import DeviceWorker
from bot.generation.scratch import create_scratch
from bot.generation.spec import ModelSpec
from bot.ports import MessageStore, ModelRegistry
from bot.training.dataset import clean_message

# How much history a scratch tokenizer is fitted to when a channel first needs one.
SCRATCH_TOKENIZER_MESSAGES = 50_000


@dataclass(frozen=True)
class ModelSource:
    name: str  # shown to users: "v3", "scratch:tiny", "rinna/japanese-gpt2-xsmall"
    kind: Literal["directory", "hub"]
    location: str  # a directory, or a hub id


class ModelResolver:
    def __init__(
        self,
        base: ModelSpec,
        models_dir: Path,
        registry: ModelRegistry,
        messages: MessageStore,
        worker: DeviceWorker,
    ) -> None:
        self.base = base
        self.models_dir = models_dir
        self.registry = registry
        self.messages = messages
        self.worker = worker
        self._creating: dict[Path, asyncio.Lock] = {}

    async def resolve(self, ref: ChannelRef) -> ModelSource:
        # Asked every time, so a newly promoted version answers the next request.
        active = await self.registry.active(ref)
        if active is not None:
            return ModelSource(f"v{active.version}", "directory", active.path)
        if self.base.kind == "hub":
            return ModelSource(str(self.base), "hub", self.base.value)
        if self.base.kind == "local":
            return ModelSource(str(self.base), "directory", self.base.value)
        return ModelSource(str(self.base), "directory", str(await self.scratch_base(ref)))

    async def scratch_base(self, ref: ChannelRef, spec: ModelSpec | None = None) -> Path:
        """The channel's scratch model of `spec`'s size (default: the configured base),
        built on first use with a tokenizer fitted to the channel's history. Built
        once: every later version of the channel shares this tokenizer."""
        spec = spec or self.base
        directory = self.models_dir / ref.slug / f"scratch-{spec.value}"
        lock = self._creating.setdefault(directory, asyncio.Lock())
        async with lock:
            if not directory.is_dir():
                history = await self.messages.recent(ref, SCRATCH_TOKENIZER_MESSAGES)
                texts = [clean_message(m.text) for m in history]
                await self.worker.run(create_scratch, directory, spec.scratch_size, texts)
        return directory
