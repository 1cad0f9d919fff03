"""The channel's token n-gram model, mixed into the network's predictions.

On a channel's few hundred thousand characters a small network trained for minutes on
a CPU and a count-based model know different things: the network generalises across
similar words, the counts remember the channel's exact phrases. Their mixture,
p = w · p_network + (1 − w) · p_ngram, predicts held-out messages better than either
(bot/training/mixture.py fits w on validation messages), so a version keeps both and
serving samples from the same mixture its figure was measured on.

The counts are over the model's own tokens (so both parts share one vocabulary) and are
smoothed by interpolated Kneser-Ney: each order keeps a discounted share of its counts
and gives the rest to the order below, whose counts are "how many different tokens
came before this one" rather than raw frequency. Tables are sorted numpy arrays: an
n-gram is one int64 (base-vocabulary digits), a context a contiguous run of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

FILE = "ngram.npz"
DISCOUNT = 0.75  # Kneser-Ney's absolute discount; 0.75 is the textbook value
MAX_ORDER = 4  # four token ids in base |V| still fit an int64 for any GPT-2 vocabulary


@dataclass(frozen=True)
class _Table:
    """The n-grams of one order: for context row i, next tokens and counts are the
    slice starts[i]:starts[i + 1] of tokens/counts."""

    contexts: np.ndarray  # sorted context keys (int64)
    starts: np.ndarray  # slice starts into tokens/counts, one more than contexts
    tokens: np.ndarray  # next token of each n-gram, sorted within a context
    counts: np.ndarray  # its (continuation) count
    totals: np.ndarray  # per context: sum of counts
    types: np.ndarray  # per context: how many different next tokens


class TokenNgram:
    def __init__(self, vocab_size: int, tables: list[_Table], discount: float = DISCOUNT) -> None:
        self.vocab_size = vocab_size
        self.tables = tables  # tables[k - 1]: n-grams of length k
        self.discount = discount

    @property
    def order(self) -> int:
        return len(self.tables)

    # --- fitting ------------------------------------------------------------------------

    @classmethod
    def fit(cls, stream: np.ndarray, vocab_size: int, order: int = 3) -> TokenNgram:
        """Counts over a token stream (messages separated by end-of-text)."""
        if not 1 <= order <= MAX_ORDER:
            raise ValueError(f"n-gram order must be 1..{MAX_ORDER}")
        ids = np.asarray(stream, dtype=np.int64)
        v = np.int64(vocab_size)
        keys_by_order: list[tuple[np.ndarray, np.ndarray]] = []
        # 1. Every n-gram of every length as one int64 key, with its count.
        for k in range(1, order + 1):
            if len(ids) < k:
                keys_by_order.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
                continue
            key = np.zeros(len(ids) - k + 1, dtype=np.int64)
            for j in range(k):
                key = key * v + ids[j : len(ids) - k + 1 + j]
            keys_by_order.append(np.unique(key, return_counts=True))
        tables = []
        for k in range(1, order + 1):
            keys, counts = keys_by_order[k - 1]
            if k < order:
                # 2. Lower orders count continuations: how many different tokens came
                #    before this k-gram (the suffixes of the distinct (k+1)-grams).
                longer = keys_by_order[k][0]
                suffixes = longer % (v**k)
                keys, counts = np.unique(suffixes, return_counts=True)
            tables.append(_table(keys, counts, v))
        return cls(vocab_size, tables)

    # --- probabilities --------------------------------------------------------------------

    def prob(self, context: list[int] | np.ndarray, token: int) -> float:
        """P(token | context), interpolated from the uniform distribution upwards."""
        p = 1.0 / self.vocab_size
        for k, table in enumerate(self.tables, start=1):
            row = self._row(table, context, k)
            if row < 0:
                break  # a longer context than this one was never seen either
            lo, hi = table.starts[row], table.starts[row + 1]
            total = float(table.totals[row])
            at = lo + int(np.searchsorted(table.tokens[lo:hi], token))
            count = float(table.counts[at]) if at < hi and table.tokens[at] == token else 0.0
            p = (
                max(count - self.discount, 0.0) / total
                + self.discount * table.types[row] / total * p
            )
        return p

    def distribution(self, context: list[int] | np.ndarray) -> np.ndarray:
        """P(· | context) over the whole vocabulary (float32), for sampling."""
        p = np.full(self.vocab_size, 1.0 / self.vocab_size, dtype=np.float32)
        for k, table in enumerate(self.tables, start=1):
            row = self._row(table, context, k)
            if row < 0:
                break
            lo, hi = table.starts[row], table.starts[row + 1]
            total = float(table.totals[row])
            p *= self.discount * table.types[row] / total
            p[table.tokens[lo:hi]] += np.maximum(table.counts[lo:hi] - self.discount, 0) / total
        return p

    def _row(self, table: _Table, context: list[int] | np.ndarray, k: int) -> int:
        """The table row of the last k - 1 tokens of context, or -1 if never seen."""
        if k > 1 and len(context) < k - 1:
            return -1
        key = 0
        for token in list(context[len(context) - (k - 1) :]) if k > 1 else []:
            key = key * self.vocab_size + int(token)
        row = int(np.searchsorted(table.contexts, key))
        if row < len(table.contexts) and table.contexts[row] == key:
            return row
        return -1

    def stream_probs(self, stream: np.ndarray) -> np.ndarray:
        """P(stream[i + 1] | what precedes it) for every position i, as the network's
        held-out figure scores the same stream."""
        ids = np.asarray(stream, dtype=np.int64)
        n = self.order - 1
        return np.array(
            [
                self.prob(ids[max(0, i - n + 1) : i + 1], int(ids[i + 1]))
                for i in range(len(ids) - 1)
            ],
            dtype=np.float64,
        )

    # --- files ----------------------------------------------------------------------------

    def save(self, directory: Path, weight: float) -> None:
        """The tables and the network's share of the mixture, in one file."""
        arrays: dict[str, np.ndarray] = {
            "vocab_size": np.array(self.vocab_size),
            "weight": np.array(weight),
        }
        for k, t in enumerate(self.tables, start=1):
            # Only the n-gram keys and counts: the rest is rebuilt on load.
            v = np.int64(self.vocab_size)
            arrays[f"keys{k}"] = t.contexts.repeat(np.diff(t.starts)) * v + t.tokens
            arrays[f"counts{k}"] = t.counts
        np.savez_compressed(directory / FILE, **arrays)  # type: ignore[arg-type]


class NgramModel(Protocol):
    """What a mixture reads of its n-gram: a version's (TokenNgram, as trained) or the
    channel's live one (bot/generation/live_ngram.py)."""

    @property
    def order(self) -> int: ...

    def distribution(self, context: list[int] | np.ndarray) -> np.ndarray: ...

    def stream_probs(self, stream: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Mixture:
    """What a version predicts with: weight · network + (1 − weight) · n-gram."""

    ngram: NgramModel
    weight: float  # the network's share, 0..1

    def mix(self, p_network: np.ndarray, p_ngram: np.ndarray) -> np.ndarray:
        return self.weight * p_network + (1.0 - self.weight) * p_ngram

    def save(self, directory: Path) -> None:
        assert isinstance(self.ngram, TokenNgram), "only a version's own n-gram is saved"
        self.ngram.save(directory, self.weight)

    @classmethod
    def load(cls, directory: Path) -> Mixture | None:
        """The version's mixture, or None for a version (or base) without one."""
        path = directory / FILE
        if not path.is_file():
            return None
        with np.load(path) as data:
            vocab_size = int(data["vocab_size"])
            order = _order_of(data.files)
            tables = [
                _table(data[f"keys{k}"], data[f"counts{k}"], np.int64(vocab_size))
                for k in range(1, order + 1)
            ]
            weight = float(data["weight"])
        return cls(TokenNgram(vocab_size, tables), weight)


def saved_order(directory: Path) -> int | None:
    """The order of a version's saved n-gram, without loading its tables (None: none)."""
    path = directory / FILE
    if not path.is_file():
        return None
    with np.load(path) as data:
        return _order_of(data.files)


def _order_of(names: list[str]) -> int:
    return sum(1 for name in names if name.startswith("keys"))


def _table(keys: np.ndarray, counts: np.ndarray, v: np.int64) -> _Table:
    contexts_all, tokens = keys // v, keys % v
    contexts, starts, _ = np.unique(contexts_all, return_index=True, return_counts=True)
    starts = np.append(starts, len(keys))
    counts = counts.astype(np.float32)
    totals = np.add.reduceat(counts, starts[:-1]) if len(keys) else np.zeros(0, np.float32)
    return _Table(
        contexts=contexts,
        starts=starts,
        tokens=tokens,
        counts=counts,
        totals=totals,
        types=np.diff(starts),
    )
