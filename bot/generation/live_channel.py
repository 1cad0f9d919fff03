"""One channel's live state on a serving model: the live n-gram and the leak guard's index,
over the same messages, kept in step message by message.

Each message held is kept as its token ids (for the n-gram) and its shown text (for
the index), so an edit or a delete takes away exactly what it added, without the
database having to remember the old text. At most `limit` messages are held (the
newest): the state's memory is bounded whatever the channel's size.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bot.generation.chat_text import clean_message
from bot.generation.live_ngram import LiveNgram
from bot.generation.verbatim import DEFAULT_LIMITS, GuardLimits, VerbatimIndex

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Messages one channel's live state holds at most (the newest).
LIVE_MESSAGES = 100_000


@dataclass(frozen=True)
class LiveMessage:
    id: int  # the database's message id: newer messages have larger ones
    model_text: str  # as training reads it (voice tag, author prefix, clean-up)
    raw_text: str  # as stored


@dataclass
class _Held:
    tokens: np.ndarray  # int32 token ids, no end-of-text
    shown: str  # the cleaned text, as a reply would show it


class LiveChannel:
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        messages: Sequence[LiveMessage],
        order: int,
        limits: GuardLimits = DEFAULT_LIMITS,
        limit: int = LIVE_MESSAGES,
    ) -> None:
        self.tokenizer = tokenizer
        self.limit = limit
        newest = sorted(messages, key=lambda m: m.id)[-limit:] if limit else []
        token_lists = self._tokens([m.model_text for m in newest])
        self.held: dict[int, _Held] = {
            m.id: _Held(ids, clean_message(m.raw_text))
            for m, ids in zip(newest, token_lists, strict=True)
        }
        self.id_sum = sum(self.held)
        eos = tokenizer.eos_token_id
        assert eos is not None
        self.ngram = LiveNgram(len(tokenizer), eos, token_lists, order=order)
        self.index = VerbatimIndex((h.shown for h in self.held.values()), limits)

    def _tokens(self, texts: list[str]) -> list[np.ndarray]:
        if not texts:
            return []
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [np.asarray(ids, dtype=np.int32) for ids in encoded]

    @property
    def newest_id(self) -> int:
        return max(self.held, default=0)

    def ids(self) -> set[int]:
        return set(self.held)

    def put(self, messages: Sequence[LiveMessage]) -> list[int]:
        """Counts these messages in (an id held already: its old text is replaced);
        returns the ids of the oldest that went to stay within the limit."""
        self.drop([m.id for m in messages if m.id in self.held])
        for m, ids in zip(messages, self._tokens([m.model_text for m in messages]), strict=True):
            held = _Held(ids, clean_message(m.raw_text))
            self.held[m.id] = held
            self.id_sum += m.id
            self.ngram.add(ids.tolist())
            self.index.add(held.shown)
        if len(self.held) <= self.limit:
            return []
        evicted = heapq.nsmallest(len(self.held) - self.limit, self.held)
        self.drop(evicted)
        return evicted

    def drop(self, ids: Sequence[int]) -> None:
        """Takes these messages out (ids not held are ignored)."""
        for message_id in ids:
            held = self.held.pop(message_id, None)
            if held is not None:
                self.id_sum -= message_id
                self.ngram.remove(held.tokens.tolist())
                self.index.remove(held.shown)
