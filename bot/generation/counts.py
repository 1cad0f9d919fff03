"""Counts of int64 keys that change one by one: a frozen sorted numpy part, built in one
pass, and a dict of the changes since, folded in when it grows. Lookups read both, so a
channel of millions of n-grams costs numpy's memory, not a dict entry each."""

from __future__ import annotations

import numpy as np


class Counts:
    """Counts of int64 keys: a sorted frozen part and the changes since."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray) -> None:
        self.keys = keys
        self.counts = counts.astype(np.int64)
        self.delta: dict[int, int] = {}

    def base(self, key: int) -> int:
        at = int(np.searchsorted(self.keys, key))
        return int(self.counts[at]) if at < len(self.keys) and self.keys[at] == key else 0

    def get(self, key: int) -> int:
        return self.base(key) + self.delta.get(key, 0)

    def add(self, key: int, by: int) -> int:
        """Changes the count by `by`; returns the count before."""
        before = self.get(key)
        change = self.delta.get(key, 0) + by
        if change:
            self.delta[key] = change
        else:
            self.delta.pop(key, None)
        return before

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """Keys and counts with the changes applied, zeros dropped."""
        if not self.delta:
            return self.keys, self.counts
        extra_keys = np.fromiter(self.delta.keys(), np.int64, len(self.delta))
        extra = np.fromiter(self.delta.values(), np.int64, len(self.delta))
        keys, inverse = np.unique(np.concatenate([self.keys, extra_keys]), return_inverse=True)
        counts = np.bincount(inverse, np.concatenate([self.counts, extra]).astype(np.float64))
        counts = np.rint(counts).astype(np.int64)
        keep = counts > 0
        return keys[keep], counts[keep]

    def compacted(self) -> Counts:
        """The same counts with every change folded into the numpy part."""
        return Counts(*self.folded())
