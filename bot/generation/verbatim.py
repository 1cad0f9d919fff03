"""The leak guard: a reply never hands back a member's stored message whole, nor copies a
long run of one.

A model that learnt a channel (and the channel's n-gram, by design) can reproduce its
messages word for word: out of its context, that is a member's message reposted by the
bot. So every row's text is checked as it grows, against an index of the channel's
stored messages kept beside the live counts:

- whole messages of at least `whole_chars` characters, by a hash of their text (and the
  set of their lengths, so a check hashes only substrings of lengths that exist);
- every run of `run_chars` characters of every message, by a hash of the run.

A reply may hold what the user typed: a whole message counts only if it reaches past
the prompt, a run only if it lies wholly in the new text. Shorter phrases are the
channel's voice and pass. Hashes are Python's (salted per process): the index lives in
memory only and is rebuilt from the database when a process loads the channel.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bot.generation.counts import Counts
from bot.generation.row_check import RowCheck

WHOLE_CHARS = 20  # defaults of the channel settings verbatim_whole / verbatim_run
RUN_CHARS = 32


@dataclass(frozen=True)
class GuardLimits:
    whole_chars: int = WHOLE_CHARS  # a stored message this long never comes back whole
    run_chars: int = RUN_CHARS  # nor does a run of this many characters of one


DEFAULT_LIMITS = GuardLimits()


class VerbatimIndex:
    """Hashes of the channel's whole messages and of their runs of `run_chars`."""

    def __init__(self, texts: Iterable[str] = (), limits: GuardLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.lock = threading.Lock()
        texts = list(texts)
        runs = [h for text in texts for h in self._runs(text)]
        keys, counts = np.unique(np.asarray(runs, dtype=np.int64), return_counts=True)
        self.runs = Counts(keys, counts)
        self.wholes: Counter[int] = Counter()
        self.lengths: Counter[int] = Counter()
        for text in texts:
            self._whole(text, +1)

    def _runs(self, text: str) -> list[int]:
        n = self.limits.run_chars
        return [hash(text[i : i + n]) for i in range(len(text) - n + 1)]

    def _whole(self, text: str, by: int) -> None:
        if len(text) < self.limits.whole_chars:
            return
        self.wholes[hash(text)] += by
        self.lengths[len(text)] += by
        if self.wholes[hash(text)] <= 0:
            del self.wholes[hash(text)]
        if self.lengths[len(text)] <= 0:
            del self.lengths[len(text)]

    def add(self, text: str) -> None:
        with self.lock:
            for h in self._runs(text):
                self.runs.add(h, +1)
            self._whole(text, +1)

    def remove(self, text: str) -> None:
        with self.lock:
            for h in self._runs(text):
                self.runs.add(h, -1)
            self._whole(text, -1)
            if len(self.runs.delta) > 100_000:
                self.runs = self.runs.compacted()

    def copied(self, text: str, prompt_chars: int, since: int = 0) -> bool:
        """Whether `text` (the prompt's `prompt_chars` characters, then new text) hands
        back a stored message, looking only at substrings that end after `since`."""
        run = self.limits.run_chars
        with self.lock:
            for end in range(max(since, prompt_chars) + 1, len(text) + 1):
                # A run wholly in the new text.
                if end - run >= prompt_chars and self.runs.get(hash(text[end - run : end])) > 0:
                    return True
                # A whole message that reaches past the prompt.
                for length in self.lengths:
                    if length <= end and hash(text[end - length : end]) in self.wholes:
                        return True
        return False


class VerbatimGuard(RowCheck):
    """One row's leak guard (row_check.py): no stored message whole, nor a long run of one,
    beyond what the member typed."""

    def __init__(self, index: VerbatimIndex, prompt: str) -> None:
        super().__init__(prompt)
        self.index = index

    def refuses(self, text: str, since: int) -> bool:
        return self.index.copied(text, len(self.prompt), since)
