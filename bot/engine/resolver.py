"""Which model answers for a channel: its active trained version, else the configured
base (a hub id, a directory, or a scratch model built once for the channel).

Every base a channel uses is resolved here, by `base_dir`, the same way for serving,
training and evaluation: a hub id or a directory by bot/generation/bases.py (the local
hub cache first, no network when the model is there), `scratch` by building the
channel's own scratch model once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.device import Device
from bot.domain import ChannelRef
from bot.generation.bases import locate
from bot.generation.chat_text import clean_message
from bot.generation.scratch import create_scratch
from bot.generation.source import ModelSource, scratch_dir
from bot.generation.spec import ModelSpec, ScratchSize
from bot.ports import ChannelStore, MessageStore, ModelRegistry

# How much history a scratch tokenizer is fitted to when a channel first needs one.
SCRATCH_TOKENIZER_MESSAGES = 50_000
# The scratch bases of channels whose admins have not turned training on: fitted to no
# one's messages (bytes only), shared by all of them. No channel's folder is named so
# (ChannelRef.slug always holds a `+`).
UNCONSENTED_DIR = "_no-history"


class ModelResolver:
    def __init__(
        self,
        base: ModelSpec,
        models_dir: Path,
        registry: ModelRegistry,
        messages: MessageStore,
        worker: Device,
        channels: ChannelStore,
    ) -> None:
        self.base = base
        self.models_dir = models_dir
        self.registry = registry
        self.messages = messages
        self.channels = channels
        self.worker = worker
        self._creating: dict[Path, asyncio.Lock] = {}
        self._located: dict[str, Path] = {}  # spec → directory, for hub ids and dirs

    async def resolve(self, ref: ChannelRef) -> ModelSource:
        # Asked every time, so a newly promoted version answers the next request.
        active = await self.registry.active(ref)
        if active is None:
            return ModelSource(str(self.base), str(await self.base_dir(ref)))
        name = f"v{active.version}"
        if active.method != "lora":
            return ModelSource(name, active.path)
        # A LoRA version runs on the base it was trained on, resolved like any base.
        base = await self.base_dir(ref, ModelSpec.parse(active.base_model))
        return ModelSource(name, active.path, base=str(base))

    async def base_dir(self, ref: ChannelRef, spec: ModelSpec | None = None) -> Path:
        """The directory of the base `spec` names (default: the configured base) for
        the channel. A hub id not in the local cache is downloaded only when the hub
        is reachable; otherwise this raises the UserError that says how to get it."""
        spec = spec or self.base
        if spec.kind == "scratch":
            return await self.scratch_base(ref, spec)
        key = str(spec)
        path = self._located.get(key)
        if path is None or not path.is_dir():
            # A thread, not the device worker: a first download may take minutes.
            path = await asyncio.to_thread(locate, spec)
            self._located[key] = path
        return path

    async def scratch_base(self, ref: ChannelRef, spec: ModelSpec | None = None) -> Path:
        """The channel's scratch model of `spec`'s size (default: the configured base),
        built on first use with a tokenizer fitted to the channel's history. Built
        once, and every later version of the channel shares this tokenizer, until a
        member's messages are forgotten (an opt-out): its vocabulary learnt from them
        too, so the next one is fitted to what is left, in a directory of its own (see
        scratch_dir; the old one is deleted, TrainingService.delete_forgotten)."""
        spec = spec or self.base
        channel = await self.channels.get(ref)
        consented = channel is not None and channel.training_enabled
        if consented:
            epoch = await self.registry.forget_epoch(ref)
            directory = scratch_dir(self.models_dir / ref.slug, spec, epoch)
        else:
            # Nothing learns from a channel's messages before an admin turns training
            # on, its tokenizer included: until then it answers from a base fitted to
            # nobody's.
            directory = scratch_dir(self.models_dir / UNCONSENTED_DIR, spec, 0)
        lock = self._creating.setdefault(directory, asyncio.Lock())
        async with lock:
            if not directory.is_dir():
                texts: list[str] = []
                if consented:
                    history = await self.messages.recent(ref, SCRATCH_TOKENIZER_MESSAGES)
                    texts = [m.text for m in history]
                await self.worker.run(_create_scratch, directory, spec.scratch_size, texts)
        return directory


def _create_scratch(directory: Path, size: ScratchSize, texts: list[str]) -> None:
    # Cleaning 50,000 messages takes a while: here on the device worker, not the loop.
    create_scratch(directory, size, [clean_message(t) for t in texts])
