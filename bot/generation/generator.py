"""LocalGenerator: the TextGenerator port on this process's device worker."""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from pathlib import Path

from bot.domain import GenerationRequest, GenerationResult
from bot.engine.worker import DeviceWorker
from bot.generation.cleaning import clean, decode_new_text
from bot.generation.loading import LoadedModel, load_directory, load_hub
from bot.generation.prompt import continue_prompt, reply_prompt
from bot.generation.resolver import ModelResolver, ModelSource
from bot.generation.sampling import sample

log = logging.getLogger(__name__)


class LocalGenerator:
    def __init__(self, resolver: ModelResolver, worker: DeviceWorker, cache_size: int = 4) -> None:
        self.resolver = resolver
        self.worker = worker
        self.cache_size = cache_size
        # Touched only on the device thread, so it needs no lock.
        self._cache: OrderedDict[ModelSource, LoadedModel] = OrderedDict()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        source = await self.resolver.resolve(request.channel)
        seed = request.settings.seed
        if seed is None:
            seed = secrets.randbelow(2**32)
        return await self.worker.run(self._generate, source, request, seed)

    def _model(self, source: ModelSource) -> LoadedModel:
        loaded = self._cache.get(source)
        if loaded is not None:
            self._cache.move_to_end(source)
            return loaded
        if source.kind == "hub":
            loaded = load_hub(source.location)
        else:
            loaded = load_directory(Path(source.location), source.name)
        loaded.name = source.name
        self._cache[source] = loaded
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return loaded

    def _generate(
        self, source: ModelSource, request: GenerationRequest, seed: int
    ) -> GenerationResult:
        started = time.perf_counter()
        loaded = self._model(source)
        settings = request.settings
        if request.mode == "continue":
            prompt = continue_prompt(
                loaded.tokenizer,
                request.prompt,
                loaded.eos_id,
                loaded.context_length,
                settings.max_new_tokens,
            )
        else:
            prompt = reply_prompt(
                loaded.tokenizer,
                request.context,
                loaded.eos_id,
                loaded.context_length,
                settings.max_new_tokens,
            )
        rows = sample(loaded, prompt, settings, seed)
        texts = []
        for new_ids in rows:
            new_text = clean(decode_new_text(loaded.tokenizer, prompt.input_ids, new_ids))
            # /continue answers like pipeline("text-generation"): the prompt as the
            # user wrote it (even if cut for the model), then the continuation.
            texts.append(
                request.prompt + new_text if request.mode == "continue" else new_text.strip()
            )
        return GenerationResult(
            texts=tuple(texts),
            model=loaded.name,
            seed=seed,
            new_tokens=sum(len(r) for r in rows),
            seconds=time.perf_counter() - started,
            prompt_truncated=prompt.truncated,
        )
