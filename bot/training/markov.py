"""The channel's own character Markov chain: the yardstick every model version is
measured against.

The bots Tsuzuki replaces generate text from a Markov chain over the channel's history.
Their quality, as a number, is the held-out bits per character of such a chain: an
n-gram model over characters, smoothed by Witten-Bell interpolation (each order falls
back to the one below it in proportion to how many different characters followed the
context), with the order chosen on the training messages themselves (the last tenth of
them held out). Characters never seen at all get a share of a uniform distribution over
Unicode's basic plane, so every text has a finite cost. Its live figure scores each
held-out message after learning the ones before it, as such a bot would have.

A message is scored as the model versions are scored: every character, plus one symbol
for the end of the message (see evaluation.py: a message of n characters counts n + 1).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

BOUNDARY = "\x02"  # what the first character of a message follows
END = "\x03"  # the symbol that closes a message
MAX_ORDER = 6  # longest context tried when the order is chosen
UNSEEN_ALPHABET = 1 << 16  # how many characters an unseen one is drawn from
# The newest characters of training text the chain is fitted to: bounds memory and
# time on a channel with years of history (about 5 s and a few hundred MB at order 6).
MAX_TRAIN_CHARS = 1_000_000
SELECTION_SPLIT = 0.9  # the order is chosen on the last 10% of the training messages


def _clean(text: str) -> str:
    return text.replace(BOUNDARY, "").replace(END, "")


class CharMarkov:
    """An interpolated (Witten-Bell) character n-gram model; `order` is the context
    length in characters (1: each character depends on the one before it)."""

    def __init__(self, order: int) -> None:
        self.order = order
        # counts[k][context][char]: how often `char` followed the k-character context.
        self.counts: list[dict[str, dict[str, int]]] = [defaultdict(dict) for _ in range(order + 1)]
        self._totals: list[dict[str, int]] = [{} for _ in range(order + 1)]

    @classmethod
    def fit(cls, texts: Sequence[str], order: int) -> CharMarkov:
        chain = cls(order)
        for text in _newest(texts, MAX_TRAIN_CHARS):
            chain.add(text)
        return chain

    def add(self, text: str) -> None:
        """Counts one more message in: a Markov bot learns every message as it comes."""
        order = self.order
        padded = BOUNDARY * order + _clean(text) + END
        for i in range(order, len(padded)):
            char = padded[i]
            for k in range(order + 1):
                ctx = padded[i - k : i]
                following = self.counts[k][ctx]
                following[char] = following.get(char, 0) + 1
                self._totals[k][ctx] = self._totals[k].get(ctx, 0) + 1

    def prob(self, context: str, char: str, order: int | None = None) -> float:
        """P(char | the last `order` characters of context), interpolated down to a
        uniform guess over unseen characters."""
        order = self.order if order is None else order
        p = 1.0 / UNSEEN_ALPHABET
        for k in range(order + 1):
            ctx = context[len(context) - k :] if k else ""
            following = self.counts[k].get(ctx)
            if not following:
                break  # a longer context than this one was never seen either
            total, types = self._totals[k][ctx], len(following)
            p = (following.get(char, 0) + types * p) / (total + types)
        return p

    def bits(self, texts: Sequence[str], order: int | None = None) -> tuple[float, int]:
        """(total bits, characters scored) over the messages, ends included."""
        order = self.order if order is None else order
        total_bits, chars = 0.0, 0
        for text in texts:
            padded = BOUNDARY * self.order + _clean(text) + END
            for i in range(self.order, len(padded)):
                total_bits -= math.log2(self.prob(padded[i - order : i], padded[i], order))
            chars += len(padded) - self.order
        return total_bits, chars


@dataclass(frozen=True)
class MarkovScore:
    order: int  # context length chosen on the training messages
    bits_per_char: float  # on the held-out messages
    # The same messages as a Markov bot meets them: each scored by the chain that has
    # learnt every message before it (the held-out ones before it included).
    live_bits_per_char: float | None = None


def choose_order(train_texts: Sequence[str]) -> int:
    """The context length that predicts the last tenth of the training messages best,
    fitted on the rest (a chain of every order comes from one fit at the longest)."""
    texts = list(train_texts)
    cut = max(1, int(len(texts) * SELECTION_SPLIT))
    fitted, held = texts[:cut], texts[cut:]
    if not held:
        return 1
    chain = CharMarkov.fit(fitted, MAX_ORDER)
    scores = {}
    for order in range(1, MAX_ORDER + 1):
        total, chars = chain.bits(held, order)
        scores[order] = total / max(chars, 1)
    return min(scores, key=lambda order: scores[order])


def markov_baseline(train_texts: Sequence[str], eval_texts: Sequence[str]) -> MarkovScore:
    """The channel's Markov chain, fitted on the training messages, on the held-out ones."""
    order = choose_order(train_texts)
    chain = CharMarkov.fit(train_texts, order)
    total, chars = chain.bits(eval_texts)
    live_total = 0.0
    for text in eval_texts:
        live_total += chain.bits([text])[0]
        chain.add(text)
    return MarkovScore(order, total / max(chars, 1), live_total / max(chars, 1))


def _newest(texts: Sequence[str], max_chars: int) -> Sequence[str]:
    size = 0
    for i in range(len(texts) - 1, -1, -1):
        size += len(texts[i]) + 1
        if size > max_chars:
            return texts[i + 1 :]
    return texts
