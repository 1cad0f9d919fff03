"""The live counts: each channel's serving state (bot/generation/live_channel.py: the live
n-gram and the leak guard's index) kept in step with the database.

The database is the one source: before a request is served, its channel's state is
brought up to date from a fingerprint of the channel's trainable messages (count,
newest id, sum of ids, newest edit), one small query. New messages are read and counted
in, edited ones replaced; when the count or the sum still disagree (a delete, an
opt-out, a forget-me), the ids are compared and what went is taken out. So every
process (the bot, each Ray replica) that serves a channel reaches the same counts from
the same rows, a restart comes back to them, and ingest does no extra work at all.

Consent: new messages are learnt only while the channel's training is on; with it off,
the counts hold what the active version was trained on (less what was deleted since).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.domain import ChannelRef, voice_tag
from bot.generation.chat_text import clean_message, model_text
from bot.generation.live_channel import LIVE_MESSAGES, LiveChannel, LiveMessage
from bot.generation.loading import load_tokenizer
from bot.generation.ngram import saved_order
from bot.generation.source import ModelSource
from bot.generation.verbatim import GuardLimits
from bot.ports import ChannelStore, MessageStore, ModelRegistry
from bot.records import LiveFingerprint, LiveRow

# Channels whose live state a process keeps at once (least recently used go first).
LIVE_CHANNELS = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class _State:
    channel: LiveChannel
    fingerprint: LiveFingerprint
    upto: int | None  # the newest message learnt from: None while training is on
    limits: GuardLimits
    # Trainable messages older than the newest LIVE_MESSAGES: in the database, not held.
    evicted_count: int = 0
    evicted_sum: int = 0


class LiveCounts:
    def __init__(
        self,
        messages: MessageStore,
        channels: ChannelStore,
        registry: ModelRegistry,
        *,
        author_prefix: bool = False,
        limit: int = LIVE_MESSAGES,
    ) -> None:
        self.messages, self.channels, self.registry = messages, channels, registry
        self.author_prefix = author_prefix
        self.limit = limit
        self._states: OrderedDict[tuple[str, str], _State] = OrderedDict()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tokenizers: dict[str, Any] = {}
        self._orders: dict[str, int | None] = {}
        # Tokenizing and counting run in threads; one at a time (a tokenizer is not
        # safe to share between threads at once).
        self._work = threading.Lock()

    async def view(
        self, ref: ChannelRef, source: ModelSource, limits: GuardLimits
    ) -> LiveChannel | None:
        """The channel's live state for `source` as of now, or None when `source` has
        no n-gram of its own (a base that never learnt the channel)."""
        # A version's files never change: its n-gram's order is read once.
        if source.location not in self._orders:
            order = await asyncio.to_thread(saved_order, Path(source.location))
            self._orders[source.location] = order
        order = self._orders[source.location]
        if order is None:
            return None
        key = (str(ref), source.location)
        async with self._locks.setdefault(key, asyncio.Lock()):
            upto = await self._upto(ref)
            fingerprint = await self.messages.live_fingerprint(ref, upto)
            state = self._states.get(key)
            if state is None or state.upto != upto or state.limits != limits:
                state = await self._build(ref, source, order, upto, limits, fingerprint)
            elif fingerprint != state.fingerprint:
                await self._catch_up(ref, state, fingerprint)
            self._states[key] = state
            self._states.move_to_end(key)
            while len(self._states) > LIVE_CHANNELS:
                self._states.popitem(last=False)
            return state.channel

    async def _upto(self, ref: ChannelRef) -> int | None:
        info = await self.channels.get(ref)
        if info is not None and info.training_enabled:
            return None
        active = await self.registry.active(ref)
        return active.last_message_id or 0 if active is not None else 0

    async def _build(
        self,
        ref: ChannelRef,
        source: ModelSource,
        order: int,
        upto: int | None,
        limits: GuardLimits,
        fingerprint: LiveFingerprint,
    ) -> _State:
        rows = await self.messages.live_rows(ref, upto=upto, newest=self.limit)
        tokenizer = await asyncio.to_thread(self._tokenizer, source)
        live = await self._live(ref, rows)

        def build() -> LiveChannel:
            with self._work:
                return LiveChannel(tokenizer, live, order, limits, self.limit)

        channel = await asyncio.to_thread(build)
        state = _State(channel, fingerprint, upto, limits)
        state.evicted_count = fingerprint.count - len(channel.held)
        state.evicted_sum = fingerprint.id_sum - channel.id_sum
        return state

    async def _catch_up(self, ref: ChannelRef, state: _State, now: LiveFingerprint) -> None:
        before, channel, upto = state.fingerprint, state.channel, state.upto
        changed: list[LiveRow] = []
        # 1. Messages stored since, and messages edited since.
        if now.newest > before.newest:
            changed += await self.messages.live_rows(
                ref, upto=upto, newest=self.limit, after_id=before.newest
            )
        if now.edited is not None and (before.edited is None or now.edited > before.edited):
            edited = await self.messages.live_rows(
                ref, upto=upto, newest=self.limit, edited_after=before.edited or _EPOCH
            )
            changed += [r for r in edited if r.id <= before.newest]
        await self._apply(state, put=await self._live(ref, changed))
        # 2. Whatever the count and the sum still disagree on went (a delete, an
        #    opt-out) or came back (an opt-in): compare the ids.
        if (len(channel.held) + state.evicted_count, channel.id_sum + state.evicted_sum) != (
            now.count,
            now.id_sum,
        ):
            stored = set(await self.messages.live_ids(ref, upto))
            held = channel.ids()
            oldest = min(held, default=0)
            back = sorted(i for i in stored - held if i > oldest)
            rows = await self.messages.live_rows(ref, upto=upto, newest=self.limit, ids=back)
            await self._apply(state, drop=sorted(held - stored), put=await self._live(ref, rows))
            state.evicted_count = len(stored) - len(channel.held)
            state.evicted_sum = sum(stored) - channel.id_sum
        state.fingerprint = now

    async def _apply(
        self, state: _State, *, drop: list[int] | None = None, put: list[LiveMessage] | None = None
    ) -> None:
        if not drop and not put:
            return
        channel = state.channel

        def apply() -> list[int]:
            with self._work:
                channel.drop(drop or [])
                return channel.put(put or [])

        evicted = await asyncio.to_thread(apply)
        state.evicted_count += len(evicted)
        state.evicted_sum += sum(evicted)

    async def _live(self, ref: ChannelRef, rows: list[LiveRow]) -> list[LiveMessage]:
        key = await self.messages.voice_key()
        return [
            LiveMessage(
                row.id,
                model_text(
                    clean_message(row.text),
                    row.author,
                    voice_tag(ref, row.voice, key) if row.voice else "",
                    self.author_prefix,
                ),
                row.text,
            )
            for row in rows
        ]

    def _tokenizer(self, source: ModelSource) -> Any:
        """The tokenizer of the model that serves `source` (a LoRA version's base)."""
        directory = source.base or source.location
        tokenizer = self._tokenizers.get(directory)
        if tokenizer is None:
            tokenizer = load_tokenizer(Path(directory))
            self._tokenizers[directory] = tokenizer
            while len(self._tokenizers) > LIVE_CHANNELS:
                self._tokenizers.pop(next(iter(self._tokenizers)))
        return tokenizer
