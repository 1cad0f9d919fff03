"""The token n-gram a version mixes into its network's predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bot.generation.ngram import Mixture, TokenNgram
from bot.generation.sampling import pick_next
from bot.setting_specs import SamplingSettings
from bot.training.mixture import best_weight

VOCAB = 12
# Two "messages" separated by 0 (end-of-text): 1 2 3 always, then 4 5 or 4 6.
STREAM = np.array([0, 1, 2, 3, 0, 4, 5, 0, 1, 2, 3, 0, 4, 6, 0, 1, 2, 3, 0], dtype=np.uint32)


@pytest.fixture
def ngram() -> TokenNgram:
    return TokenNgram.fit(STREAM, VOCAB, order=3)


def test_distributions_are_proper_and_match_single_probabilities(ngram: TokenNgram) -> None:
    for context in ([], [0], [0, 1], [1, 2], [9, 9], [0, 4]):
        p = ngram.distribution(context)
        assert p.shape == (VOCAB,)
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        assert (p > 0).all()  # never impossible: unseen tokens get the uniform share
        for token in range(VOCAB):
            assert ngram.prob(context, token) == pytest.approx(float(p[token]), rel=1e-5)


def test_it_learns_the_channels_sequences(ngram: TokenNgram) -> None:
    assert ngram.prob([0, 1], 2) > 0.5  # "1 2" always follows
    assert int(np.argmax(ngram.distribution([1, 2]))) == 3
    assert ngram.prob([0, 4], 5) == pytest.approx(ngram.prob([0, 4], 6))
    assert ngram.prob([0, 4], 5) > 5 * ngram.prob([0, 4], 7)


def test_saved_and_loaded_with_its_weight(ngram: TokenNgram, tmp_path: Path) -> None:
    Mixture(ngram, 0.3).save(tmp_path)
    loaded = Mixture.load(tmp_path)
    assert loaded is not None and loaded.weight == pytest.approx(0.3)
    for context in ([], [0, 1], [0, 4]):
        assert np.allclose(loaded.ngram.distribution(context), ngram.distribution(context))
    assert Mixture.load(tmp_path / "elsewhere") is None


def test_mixture_weight_follows_the_better_predictor() -> None:
    rng = np.random.default_rng(0)
    good = rng.uniform(0.5, 0.9, 500)
    poor = rng.uniform(0.01, 0.1, 500)
    assert best_weight(good, poor) > 0.9  # the network predicts better
    assert best_weight(poor, good) < 0.1  # the n-gram does
    mixed = best_weight(
        np.where(np.arange(500) % 2, good, poor), np.where(np.arange(500) % 2, poor, good)
    )
    assert 0.3 < mixed < 0.7  # each is better half the time


def test_sampling_uses_the_mixture(ngram: TokenNgram) -> None:
    greedy = SamplingSettings(temperature=0.0)
    logits = torch.zeros(VOCAB)
    logits[7] = 10.0  # the network alone would say 7
    generator = torch.Generator().manual_seed(0)
    assert pick_next(logits, greedy, [0, 1, 2], generator) == 7
    # Mostly the n-gram: after "1 2" comes 3.
    mixture = Mixture(ngram, 0.001)
    assert pick_next(logits, greedy, [0, 1, 2], generator, mixture=mixture) == 3
