"""The live n-gram: messages counted in and taken out one by one give exactly the
probabilities of counting the messages held now from scratch."""

from __future__ import annotations

import numpy as np
import pytest

from bot.generation import live_ngram
from bot.generation.live_ngram import LiveNgram

VOCAB, EOS = 12, 0


def _messages(seed: int, n: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    # A small vocabulary so that n-grams repeat, appear and vanish as messages change.
    return [list(rng.integers(1, 6, size=rng.integers(1, 8))) for _ in range(n)]


def _same(a: LiveNgram, b: LiveNgram) -> None:
    for context in ([], [0], [3], [0, 1], [2, 3], [5, 5], [4, 0], [1, 2, 3]):
        np.testing.assert_allclose(a.distribution(context), b.distribution(context), rtol=1e-5)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_adding_and_removing_matches_counting_from_scratch(order: int) -> None:
    held = _messages(1, 40)
    live = LiveNgram(VOCAB, EOS, held[:25], order=order)
    for m in held[25:]:
        live.add(m)
    for m in held[5:15]:
        live.remove(m)
    now = held[:5] + held[15:]
    _same(live, LiveNgram(VOCAB, EOS, now, order=order))


def test_distributions_are_proper_and_match_single_probabilities() -> None:
    live = LiveNgram(VOCAB, EOS, _messages(2, 30))
    live.add([1, 2, 3, 9])
    for context in ([], [0], [1, 2], [3, 9], [11, 11]):
        p = live.distribution(context)
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
        for token in range(VOCAB):
            assert live.prob(context, token) == pytest.approx(float(p[token]), rel=1e-5)


def test_a_message_said_once_is_learnt_at_once_and_forgotten_exactly() -> None:
    live = LiveNgram(VOCAB, EOS, _messages(3, 30))
    before = live.prob([0, 10], 11)
    live.add([10, 11, 7])
    assert live.prob([0, 10], 11) > 0.3 > 20 * before
    live.remove([10, 11, 7])
    assert live.prob([0, 10], 11) == pytest.approx(before, rel=1e-9)


def test_folding_the_changes_in_keeps_the_probabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_ngram, "COMPACT_AFTER", 10)
    held = _messages(4, 60)
    live = LiveNgram(VOCAB, EOS, held[:10])
    for m in held[10:]:
        live.add(m)
    for m in held[:20]:
        live.remove(m)
    _same(live, LiveNgram(VOCAB, EOS, held[20:]))


def test_an_empty_channel_is_uniform_until_its_first_message() -> None:
    live = LiveNgram(VOCAB, EOS)
    np.testing.assert_allclose(live.distribution([0]), np.full(VOCAB, 1 / VOCAB), rtol=1e-6)
    live.add([4, 5])
    assert live.prob([0, 4], 5) > 0.3
