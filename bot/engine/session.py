"""A serving session on the device thread: continuous batching over every model asked for.

The session takes requests from its Feed as long as any are running or waiting: each
is resolved to its serving model (one shared base per model; a LoRA channel's adapter
rides on it, per row), its prompt built and prefilled, and it joins that model's
running batch at the next step. A finished request is answered at once, not when the
batch ends; a request whose caller gave up leaves at the next step. Models take turns,
one step each, so a second model's requests are not held up behind the first's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.domain import GenerationRequest, GenerationResult, disarm_tags
from bot.engine.metrics import EngineMetrics
from bot.errors import UserError
from bot.generation.banned import BannedGuard, BannedWords
from bot.generation.batching import (
    PREFILL_CHUNK,
    DecodeBatch,
    Live,
    Prefill,
    Row,
    prefill_together,
    together_groups,
)
from bot.generation.cleaning import clean, decode_new_text
from bot.generation.healing import token_bytes
from bot.generation.live_channel import LiveChannel
from bot.generation.model_cache import ModelCache, ServingModel
from bot.generation.ngram import Mixture
from bot.generation.prompt import PreparedPrompt, continue_prompt, reply_prompt
from bot.generation.row_check import RowCheck
from bot.generation.sampling import variant_seed
from bot.generation.source import ModelSource
from bot.generation.verbatim import VerbatimGuard
from bot.ports import TextListener

if TYPE_CHECKING:
    import asyncio

    from bot.engine.worker import Feed

log = logging.getLogger(__name__)

# Prompt tokens prefilled between two decode steps while rows are decoding: running rows
# wait this long at most for newcomers' prompts (a few decode steps' worth).
PREFILL_BUDGET = 2 * PREFILL_CHUNK
# New text is decoded after this many of the prompt's last tokens, not all of them: the
# same text (decode_new_text takes the difference), at a cost that does not grow with
# a long reply context, for every step the leak guard looks.
DECODE_HEAD = 16


@dataclass(frozen=True)
class Item:
    """One generation request as it crosses to the device thread."""

    source: ModelSource
    request: GenerationRequest
    seed: int
    enqueued: float
    on_text: TextListener | None = None
    loop: asyncio.AbstractEventLoop | None = None
    live: LiveChannel | None = None  # the channel's live counts and leak-guard index


@dataclass
class _Request:
    item: Item
    prompt: PreparedPrompt
    tokenizer: Any
    admitted: float
    outputs: list[list[int] | None]  # per variant, once it finished
    rows_seen: int = 1  # the most rows its batch held while it ran
    tail_text: str = ""  # token healing: the prompt's end as the new tokens spell it again
    guards: list[VerbatimGuard] = field(default_factory=list)


@dataclass
class _Group:
    """One serving model's rows: those still prefilling, and the decoding batch."""

    serving: ServingModel
    batch: DecodeBatch
    prefilling: list[Prefill] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.prefilling) + len(self.batch)


class Session:
    def __init__(
        self, cache: ModelCache, metrics: EngineMetrics, max_rows: int, stream_interval_s: float
    ) -> None:
        self.cache = cache
        self.metrics = metrics
        self.max_rows = max_rows
        self.stream_interval_s = stream_interval_s
        self.groups: dict[int, _Group] = {}  # id(serving) → its group
        self.requests: dict[int, _Request] = {}  # id(item) → its state

    def run(self, feed: Feed) -> None:
        """Serves until nothing is running and nothing waits."""
        while True:
            room = self.max_rows - sum(g.rows for g in self.groups.values())
            if room > 0:
                for item in feed.take(room):
                    self._admit(item, feed)
            self._drop_abandoned(feed)
            if not self.groups:
                return
            for key, group in list(self.groups.items()):
                try:
                    self._advance(group, feed)
                except Exception as e:
                    log.exception("generation failed for a batch of %d rows", group.rows)
                    self._fail(group, feed, e)
                if not group.rows:
                    del self.groups[key]

    # --- admission -------------------------------------------------------------------

    def _admit(self, item: Item, feed: Feed) -> None:
        try:
            serving, adapter = self.cache.get(item.source)
            mixture = self.cache.mixture(item.source)
        except UserError as e:
            feed.settle(item, error=e)
            return
        live = item.live
        if live is not None and mixture is not None:
            # The version's network share, over the channel's counts as of now.
            mixture = Mixture(live.ngram, mixture.weight)
        loaded = serving.loaded
        request, settings = item.request, item.request.settings
        shape = (loaded.eos_id, loaded.context_length, settings.max_new_tokens)
        healing = None
        if request.mode == "continue":
            healing = token_bytes(loaded.tokenizer)
            # People's text is disarmed (no typed tag stands for a voice); the tag, if
            # any, is the one Replies checked against the member's consent.
            text = request.voice + disarm_tags(request.prompt)
            prompt = continue_prompt(loaded.tokenizer, text, *shape, healing=healing)
        else:
            context = tuple(disarm_tags(message) for message in request.context)
            prompt = reply_prompt(loaded.tokenizer, context, *shape)
        # Temperature 0 is greedy: n variants would all be the same text.
        variants = settings.num_return_sequences if settings.temperature > 0 else 1
        if request.mode == "reply":
            variants = 1
        state = _Request(item, prompt, loaded.tokenizer, time.perf_counter(), [None] * variants)
        if prompt.tail:
            state.tail_text = _decoded(state, list(prompt.tail_ids))
        self.requests[id(item)] = state
        group = self.groups.get(id(serving))
        if group is None:
            group = _Group(serving, DecodeBatch(loaded.model, serving.lora))
            self.groups[id(serving)] = group
        typed = request.prompt if request.mode == "continue" else ""
        banned = BannedWords(request.banned_words)
        for v in range(variants):
            checks: list[RowCheck] = []
            if live is not None:
                state.guards.append(VerbatimGuard(live.index, typed))
                checks.append(state.guards[-1])
            if banned:
                checks.append(BannedGuard(banned, typed))
            guard = _guarding(state, checks) if checks else None
            row = Row(
                prompt.input_ids,
                settings,
                variant_seed(item.seed, v),
                prompt.max_new_tokens,
                loaded.eos_id,
                adapter,
                mixture,
                tail=prompt.tail,
                healing=healing,
                guard=guard,
                listener=_streamer(state, self.stream_interval_s) if v == 0 else None,
                owner=(id(item), v),
            )
            group.prefilling.append(Prefill(loaded.model, serving.lora, row))

    # --- one turn of one model ---------------------------------------------------------

    def _advance(self, group: _Group, feed: Feed) -> None:
        started = time.perf_counter()
        # 1. Newcomers' prompts: all of them when nothing decodes (nobody waits), else
        #    a budget of chunks, so running rows are not stalled by a long prompt.
        budget = PREFILL_BUDGET if len(group.batch) else None
        ready: list[Prefill] = []
        spent = 0
        # Short prompts that arrived together: one forward pass for each group of
        # similar length, not one (or more) per prompt.
        for together in together_groups(group.prefilling, budget):
            spent += len(together) * together[0].remaining  # its cells, padding too
            prefill_together(together)
            for prefill in together:
                ready.append(prefill)
                group.prefilling.remove(prefill)
        for prefill in list(group.prefilling):
            while budget is None or spent < budget:
                spent += min(PREFILL_CHUNK, prefill.remaining)
                if prefill.advance():
                    ready.append(prefill)
                    group.prefilling.remove(prefill)
                    break
        if ready:
            group.batch.join(ready)
        # 2. One decode step for every running row.
        if not len(group.batch):
            return
        rows = len(group.batch)
        written = sum(len(lv.outputs) for lv in group.batch.live)
        finished = group.batch.step()
        now = time.perf_counter()
        self.metrics.batch_rows.observe(rows)
        self.metrics.generation_seconds.inc(now - started)
        for lv in group.batch.live + finished:
            written -= len(lv.outputs)
            state = self.requests[lv.row.owner[0]]
            state.rows_seen = max(state.rows_seen, rows)
            if len(lv.outputs) == 1 and lv.row.owner[1] == 0:
                self.metrics.first_token.observe(now - state.item.enqueued)
        self.metrics.tokens.inc(-written)
        for lv in finished:
            self._finish_row(lv, feed)

    def _finish_row(self, lv: Live, feed: Feed) -> None:
        item_id, variant = lv.row.owner
        state = self.requests.get(item_id)
        if state is None:
            return  # its request was already answered (abandoned or failed)
        state.outputs[variant] = lv.outputs
        if any(o is None for o in state.outputs):
            return
        del self.requests[item_id]
        self.metrics.verbatim_blocked.inc(sum(g.blocked for g in state.guards))
        outputs = [o for o in state.outputs if o is not None]
        now = time.perf_counter()
        result = GenerationResult(
            texts=tuple(_text(state, ids) for ids in outputs),
            model=state.item.source.name,
            seed=state.item.seed,
            # What token healing wrote again of the prompt is not new.
            new_tokens=sum(max(0, len(ids) - len(state.prompt.tail_ids)) for ids in outputs),
            seconds=now - state.admitted,
            prompt_truncated=state.prompt.truncated,
            queued_seconds=state.admitted - state.item.enqueued,
            batch_rows=state.rows_seen,
        )
        feed.settle(state.item, result)

    # --- requests that end early ------------------------------------------------------

    def _drop_abandoned(self, feed: Feed) -> None:
        gone = {key for key, s in self.requests.items() if feed.abandoned(s.item)}
        if not gone:
            return
        for group in self.groups.values():
            group.prefilling = [p for p in group.prefilling if p.row.owner[0] not in gone]
            keep = [i for i, lv in enumerate(group.batch.live) if lv.row.owner[0] not in gone]
            if len(keep) < len(group.batch):
                group.batch.drop(keep)
        for key in gone:
            feed.settle(self.requests.pop(key).item, error=TimeoutError("abandoned"))
        for key, group in list(self.groups.items()):
            if not group.rows:
                del self.groups[key]

    def _fail(self, group: _Group, feed: Feed, error: BaseException) -> None:
        owners = {p.row.owner[0] for p in group.prefilling}
        owners |= {lv.row.owner[0] for lv in group.batch.live}
        for key in owners:
            state = self.requests.pop(key, None)
            if state is not None:
                feed.settle(state.item, error=error)
        group.prefilling = []
        group.batch.drop([])


def _decoded(state: _Request, new_ids: list[int]) -> str:
    """The text new tokens add after the prompt (what token healing took off the
    prompt's end not included: the user typed it)."""
    text = decode_new_text(state.tokenizer, state.prompt.input_ids[-DECODE_HEAD:], new_ids)
    tail = state.tail_text
    if tail and text.startswith(tail):
        return text[len(tail) :]
    if tail and tail.startswith(text.rstrip("\ufffd")):
        return ""  # still spelling what the user typed: nothing new yet
    return text


def _guarding(state: _Request, checks: list[RowCheck]) -> Callable[[list[int]], bool]:
    """A row's guard: its new tokens, as text, pass every check (the leak guard, the
    channel's banned words); only then does each check move past them."""

    def allows(new_ids: list[int]) -> bool:
        text = _decoded(state, new_ids)
        if not all(check.allows(text) for check in checks):
            return False
        for check in checks:
            check.passed(text)
        return True

    return allows


def _text(state: _Request, new_ids: list[int]) -> str:
    text = clean(_decoded(state, new_ids))
    request = state.item.request
    # /continue answers like pipeline("text-generation"): the prompt as the user wrote
    # it (even if cut for the model), then the continuation.
    return request.prompt + text if request.mode == "continue" else text.strip()


def _streamer(state: _Request, interval_s: float) -> Callable[[list[int]], None] | None:
    """A row listener that hands the request's text so far to its TextListener on the
    event loop, at most every `interval_s` (decoding costs the device thread)."""
    on_text, loop = state.item.on_text, state.item.loop
    if on_text is None or loop is None:
        return None
    last_at, last_text = 0.0, ""

    def deliver(text: str) -> None:
        try:
            on_text(text)
        except Exception:
            log.exception("a stream listener failed")  # the reply still comes

    def heard(new_ids: list[int]) -> None:
        nonlocal last_at, last_text
        now = time.perf_counter()
        if now - last_at < interval_s:
            return
        text = _text(state, new_ids)
        if text and text != last_text:
            last_at, last_text = now, text
            loop.call_soon_threadsafe(deliver, text)

    return heard
