"""LocalGenerator: the TextGenerator port on this process's device worker.

Each request is resolved to its model on the event loop, then queued on the device
worker; requests waiting together are generated as batches: one batch per base model,
each row with its channel's adapter, settings and seed.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.device import Priority
from bot.domain import GenerationRequest, GenerationResult
from bot.engine.worker import BatchOutcome, DeviceWorker
from bot.errors import UserError
from bot.generation.batching import Row, decode_rows
from bot.generation.cleaning import clean, decode_new_text
from bot.generation.model_cache import ModelCache, ServingModel
from bot.generation.ngram import Mixture
from bot.generation.prompt import PreparedPrompt, continue_prompt, reply_prompt
from bot.generation.resolver import ModelResolver, ModelSource
from bot.generation.sampling import variant_seed

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 4 * 2**30


@dataclass(frozen=True)
class _Item:
    source: ModelSource
    request: GenerationRequest
    seed: int
    enqueued: float


class LocalGenerator:
    def __init__(
        self,
        resolver: ModelResolver,
        worker: DeviceWorker,
        cache: ModelCache | None = None,
    ) -> None:
        self.resolver = resolver
        self.worker = worker
        self.cache = cache or ModelCache(DEFAULT_CACHE_BYTES)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        source = await self.resolver.resolve(request.channel)
        seed = request.settings.seed
        if seed is None:
            seed = secrets.randbelow(2**32)
        try:
            return await self._generate(source, request, seed)
        except Exception:
            if _on_disk(source):
                raise
            # Its model was withdrawn while the request waited (a member opted out: the
            # files that learnt from their messages are deleted): once more, with the
            # model that answers now.
            source = await self.resolver.resolve(request.channel)
            return await self._generate(source, request, seed)

    async def _generate(
        self, source: ModelSource, request: GenerationRequest, seed: int
    ) -> GenerationResult:
        item = _Item(source, request, seed, time.perf_counter())
        result: GenerationResult = await self.worker.submit(
            item, self._generate_batch, Priority.INTERACTIVE
        )
        self.worker.metrics.latency.observe(time.perf_counter() - item.enqueued)
        return result

    # --- on the device thread ----------------------------------------------------------

    def _generate_batch(self, items: Sequence[_Item]) -> list[BatchOutcome[GenerationResult]]:
        """Generates every item, one decoding loop per base model."""
        outcomes: list[BatchOutcome[GenerationResult]] = [BatchOutcome() for _ in items]
        groups: dict[int, tuple[ServingModel, list[tuple[int, int]]]] = {}
        mixtures: dict[int, Mixture | None] = {}
        for i, item in enumerate(items):
            try:
                serving, adapter = self.cache.get(item.source)
                mixtures[i] = self.cache.mixture(item.source)
            except UserError as e:
                outcomes[i] = BatchOutcome(error=e)
                continue
            groups.setdefault(id(serving), (serving, []))[1].append((i, adapter))
        for serving, members in groups.values():
            try:
                results = self._generate_group(
                    serving, [(items[i], a, mixtures[i]) for i, a in members]
                )
            except Exception as e:
                log.exception("generation failed for a batch of %d", len(members))
                results = [e] * len(members)  # type: ignore[list-item]
            for (i, _), result in zip(members, results, strict=True):
                if isinstance(result, BaseException):
                    outcomes[i] = BatchOutcome(error=result)
                else:
                    outcomes[i] = BatchOutcome(result=result)
        return outcomes

    def _generate_group(
        self, serving: ServingModel, members: list[tuple[_Item, int, Mixture | None]]
    ) -> list[GenerationResult]:
        loaded = serving.loaded
        started = time.perf_counter()
        prompts: list[PreparedPrompt] = []
        rows: list[Row] = []
        owners: list[int] = []  # rows[k] belongs to members[owners[k]]
        for m, (item, adapter, mixture) in enumerate(members):
            settings = item.request.settings
            if item.request.mode == "continue":
                prompt = continue_prompt(
                    loaded.tokenizer,
                    item.request.prompt,
                    loaded.eos_id,
                    loaded.context_length,
                    settings.max_new_tokens,
                )
            else:
                prompt = reply_prompt(
                    loaded.tokenizer,
                    item.request.context,
                    loaded.eos_id,
                    loaded.context_length,
                    settings.max_new_tokens,
                )
            prompts.append(prompt)
            # Temperature 0 is greedy: n variants would all be the same text.
            variants = settings.num_return_sequences if settings.temperature > 0 else 1
            if item.request.mode == "reply":
                variants = 1
            for v in range(variants):
                rows.append(
                    Row(
                        prompt.input_ids,
                        settings,
                        variant_seed(item.seed, v),
                        prompt.max_new_tokens,
                        loaded.eos_id,
                        adapter,
                        mixture,
                    )
                )
                owners.append(m)
        decoded = decode_rows(loaded.model, rows, serving.lora)
        new_tokens = decoded.tokens
        seconds = time.perf_counter() - started
        metrics = self.worker.metrics
        metrics.batch_rows.observe(len(rows))
        metrics.tokens.inc(sum(len(t) for t in new_tokens))
        metrics.generation_seconds.inc(seconds)
        for item, _, _ in members:
            metrics.first_token.observe(decoded.first_token_at - item.enqueued)

        results = []
        for m, (item, _, _) in enumerate(members):
            mine = [new_tokens[k] for k in range(len(rows)) if owners[k] == m]
            texts = []
            for ids in mine:
                text = clean(decode_new_text(loaded.tokenizer, prompts[m].input_ids, ids))
                # /continue answers like pipeline("text-generation"): the prompt as the
                # user wrote it (even if cut for the model), then the continuation.
                texts.append(
                    item.request.prompt + text if item.request.mode == "continue" else text.strip()
                )
            results.append(
                GenerationResult(
                    texts=tuple(texts),
                    model=item.source.name,
                    seed=item.seed,
                    new_tokens=sum(len(ids) for ids in mine),
                    seconds=seconds,
                    prompt_truncated=prompts[m].truncated,
                    queued_seconds=started - item.enqueued,
                    batch_rows=len(rows),
                )
            )
        return results


def _on_disk(source: ModelSource) -> bool:
    return Path(source.location).is_dir() and (source.base is None or Path(source.base).is_dir())
