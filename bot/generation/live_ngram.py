"""The channel's token n-gram kept live: every message stored adds its counts at once, an
edit, a delete or an opt-out takes them away, and the probabilities stay exactly those
of interpolated Kneser-Ney over the messages it holds now.

It counts what bot/generation/ngram.py counts (the same smoothing, the same discount),
with one difference: its unit is a message, "<eos> tokens <eos>", and no n-gram spans
two messages, so a message can be taken away again without knowing its neighbours.

Kneser-Ney's lower orders count continuations (how many different tokens came before
a k-gram; for a k-gram that opens a message, where nothing can come before, its raw
count), so taking a message away is more than subtracting: when a (k+1)-gram's raw
count falls to zero, its suffix loses one continuation, and when it first appears, gains
one. The raw counts of every order ≥ 2 are kept for this.

Each table is a frozen sorted numpy part (built in one pass from the messages held when
the channel loaded) and a small dict of changes since, folded into the numpy part once
it grows (`compact`). Probabilities read both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from bot.generation.counts import Counts
from bot.generation.ngram import DISCOUNT, MAX_ORDER, _table

# Changes kept in dicts before they are folded into the numpy tables.
COMPACT_AFTER = 200_000


class _Order:
    """One order's Kneser-Ney counts (raw at the top order, continuations below), with
    per-context totals and types for the distribution over next tokens."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, vocab: int) -> None:
        self.vocab = vocab
        self.counts = Counts(keys, counts)
        self._rebuild()

    def _rebuild(self) -> None:
        self.table = _table(self.counts.keys, self.counts.counts, np.int64(self.vocab))
        # Per context: [total change, types change, {token: count change}].
        self.changed: dict[int, list] = {}  # type: ignore[type-arg]

    def add(self, key: int, by: int) -> int:
        before = self.counts.add(key, by)
        after = before + by
        context, token = divmod(key, self.vocab)
        entry = self.changed.setdefault(context, [0, 0, {}])
        entry[0] += by
        entry[1] += (after > 0) - (before > 0)
        tokens = entry[2]
        tokens[token] = tokens.get(token, 0) + by
        return before

    def compact(self) -> None:
        self.counts = self.counts.compacted()
        self._rebuild()

    def row(self, context: int) -> int:
        t = self.table
        row = int(np.searchsorted(t.contexts, context))
        return row if row < len(t.contexts) and t.contexts[row] == context else -1

    def stats(self, context: int) -> tuple[int, float, float, dict[int, int]]:
        """(base row or -1, total, types, count changes by token) of a context."""
        row = self.row(context)
        total = float(self.table.totals[row]) if row >= 0 else 0.0
        types = float(self.table.types[row]) if row >= 0 else 0.0
        entry = self.changed.get(context)
        if entry is None:
            return row, total, types, {}
        return row, total + entry[0], types + entry[1], entry[2]

    def base_count(self, row: int, token: int) -> float:
        if row < 0:
            return 0.0
        t = self.table
        lo, hi = t.starts[row], t.starts[row + 1]
        at = lo + int(np.searchsorted(t.tokens[lo:hi], token))
        return float(t.counts[at]) if at < hi and t.tokens[at] == token else 0.0


class LiveNgram:
    """Interpolated Kneser-Ney over a changing set of messages (token ids, no eos)."""

    def __init__(
        self,
        vocab_size: int,
        eos_id: int,
        messages: Iterable[Sequence[int] | np.ndarray] = (),
        order: int = 3,
        discount: float = DISCOUNT,
    ) -> None:
        if not 2 <= order <= MAX_ORDER:
            raise ValueError(f"a live n-gram's order must be 2..{MAX_ORDER}")
        self.vocab_size, self.eos_id, self.discount = vocab_size, eos_id, discount
        self._order = order
        # Probabilities are read on the device thread while messages arrive on another.
        self.lock = threading.Lock()
        raw = _raw_counts([self._unit(m) for m in messages], vocab_size, order)
        v = np.int64(vocab_size)
        # raw[k]: raw counts of k-grams, k = 2..order (the top order's are its KN counts).
        self.raw = {k: Counts(*raw[k]) for k in range(2, order)}
        self.orders: list[_Order] = []
        for k in range(1, order + 1):
            if k == order:
                keys, counts = raw[k]
            else:
                # Continuations: the distinct (k+1)-grams that end in this k-gram...
                keys, counts = np.unique(raw[k + 1][0] % (v**k), return_counts=True)
                if k > 1:
                    # ...but a k-gram that opens a message can have nothing before it:
                    # its raw count stands (as KenLM does for "<s> …").
                    opening = raw[k][0] // (v ** (k - 1)) == eos_id
                    keys = np.concatenate([keys, raw[k][0][opening]])
                    counts = np.concatenate([counts, raw[k][1][opening]])
                    keys, counts = _sorted(keys, counts)
            self.orders.append(_Order(keys, counts, vocab_size))

    @property
    def order(self) -> int:
        return self._order

    def _unit(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.asarray([self.eos_id, *tokens, self.eos_id], dtype=np.int64)

    # --- changes ------------------------------------------------------------------------

    def add(self, tokens: Sequence[int]) -> None:
        """Counts one message in."""
        self._change(tokens, +1)

    def remove(self, tokens: Sequence[int]) -> None:
        """Takes one message (counted in before) out again."""
        self._change(tokens, -1)

    def _change(self, tokens: Sequence[int], by: int) -> None:
        unit = self._unit(tokens).tolist()
        v, top = self.vocab_size, self._order
        with self.lock:
            for k in range(2, top + 1):
                for i in range(len(unit) - k + 1):
                    key = 0
                    for t in unit[i : i + k]:
                        key = key * v + t
                    if k == top:
                        before = self.orders[top - 1].add(key, by)
                    else:
                        before = self.raw[k].add(key, by)
                        if i == 0:
                            self.orders[k - 1].add(key, by)  # it opens the message
                    after = before + by
                    if (before > 0) != (after > 0):
                        # A k-gram appeared or went: its suffix has one continuation
                        # more or fewer.
                        self.orders[k - 2].add(key % v ** (k - 1), 1 if after > 0 else -1)
            if sum(len(o.counts.delta) for o in self.orders) > COMPACT_AFTER:
                self._compact()

    def _compact(self) -> None:
        for order in self.orders:
            order.compact()
        for k, counts in self.raw.items():
            self.raw[k] = counts.compacted()

    # --- probabilities --------------------------------------------------------------------

    def distribution(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
        """P(· | context) over the whole vocabulary (float32), for sampling."""
        d = self.discount
        p = np.full(self.vocab_size, 1.0 / self.vocab_size, dtype=np.float32)
        with self.lock:
            for order, row, total, types, changed in self._contexts(context):
                p *= d * types / total
                if row >= 0:
                    t = order.table
                    lo, hi = t.starts[row], t.starts[row + 1]
                    p[t.tokens[lo:hi]] += np.maximum(t.counts[lo:hi] - d, 0) / total
                for token, change in changed.items():
                    base = order.base_count(row, token)
                    p[token] += (max(base + change - d, 0.0) - max(base - d, 0.0)) / total
        return p

    def prob(self, context: Sequence[int] | np.ndarray, token: int) -> float:
        """P(token | context), interpolated from the uniform distribution upwards."""
        d = self.discount
        p = 1.0 / self.vocab_size
        with self.lock:
            for order, row, total, types, changed in self._contexts(context):
                count = order.base_count(row, token) + changed.get(token, 0)
                p = max(count - d, 0.0) / total + d * types / total * p
        return p

    def _contexts(
        self, context: Sequence[int] | np.ndarray
    ) -> Iterator[tuple[_Order, int, float, float, dict[int, int]]]:
        """Each order's (table, base row, total, types, changes) for the context's last
        tokens, shortest first, up to the longest that was ever seen."""
        for k, order in enumerate(self.orders, start=1):
            key = self._context_key(context, k)
            if key is None:
                return
            row, total, types, changed = order.stats(key)
            if total <= 0:
                return  # never seen: nor is any longer context
            yield order, row, total, types, changed

    def stream_probs(self, stream: np.ndarray) -> np.ndarray:
        """P(stream[i + 1] | what precedes it in its message) for every position i."""
        ids = np.asarray(stream, dtype=np.int64)
        probs = np.zeros(max(len(ids) - 1, 0), dtype=np.float64)
        start = 0  # where the current message's "<eos>" is
        for i in range(len(ids) - 1):
            if ids[i] == self.eos_id:
                start = i
            context = ids[max(start, i - self._order + 2) : i + 1]
            probs[i] = self.prob(context, int(ids[i + 1]))
        return probs

    def _context_key(self, context: Sequence[int] | np.ndarray, k: int) -> int | None:
        """The key of the last k - 1 tokens of context, or None if it is shorter."""
        if k == 1:
            return 0
        if len(context) < k - 1:
            return None
        key = 0
        for token in list(context[len(context) - (k - 1) :]):
            key = key * self.vocab_size + int(token)
        return key


def _sorted(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    return keys[order], counts[order]


def _raw_counts(
    units: list[np.ndarray], vocab: int, order: int
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Raw counts of every k-gram (k = 2..order) inside each unit, none spanning two."""
    v = np.int64(vocab)
    ids = np.concatenate(units) if units else np.zeros(0, np.int64)
    # Which unit each position belongs to: an n-gram counts if it starts and ends in one.
    unit_of = np.repeat(np.arange(len(units)), [len(u) for u in units])
    out = {}
    for k in range(2, order + 1):
        n = max(len(ids) - k + 1, 0)
        key = np.zeros(n, dtype=np.int64)
        for j in range(k):
            key = key * v + ids[j : j + n]
        inside = unit_of[:n] == unit_of[k - 1 : k - 1 + n]
        out[k] = np.unique(key[inside], return_counts=True)
    return out
