"""The channel's character Markov chain: the yardstick every version is shown against."""

from __future__ import annotations

import math
import random

import pytest

from bot.training.markov import UNSEEN_ALPHABET, CharMarkov, choose_order, markov_baseline


def test_witten_bell_by_hand() -> None:
    # "ab" twice: after "a" always "b"; after "b" always the end of the message.
    chain = CharMarkov.fit(["ab", "ab"], order=1)
    uniform = 1 / UNSEEN_ALPHABET
    # Unigram: a, b and the end seen twice each (6 tokens, 3 types).
    p_b_unigram = (2 + 3 * uniform) / (6 + 3)
    # After "a": "b" twice, one type.
    p_b_after_a = (2 + 1 * p_b_unigram) / (2 + 1)
    assert chain.prob("a", "b") == pytest.approx(p_b_after_a)
    # A character never seen costs a share of the uniform guess, never infinity.
    assert 0 < chain.prob("a", "z") < uniform


def test_every_character_and_the_end_are_scored() -> None:
    chain = CharMarkov.fit(["hello", "help"], order=2)
    total, chars = chain.bits(["hello", "hi"])
    assert chars == len("hello") + 1 + len("hi") + 1
    assert math.isfinite(total) and total > 0


def test_order_is_chosen_from_the_training_messages() -> None:
    rng = random.Random(0)
    # Words of a small vocabulary: characters depend on several before them.
    words = ["織田信長", "豊臣秀吉", "徳川家康", "curry", "ramen"]
    texts = [" ".join(rng.choice(words) for _ in range(4)) for _ in range(400)]
    assert choose_order(texts) >= 3
    # Characters drawn independently: a longer context only adds noise.
    noise = ["".join(rng.choice("abcdefgh") for _ in range(30)) for _ in range(200)]
    assert choose_order(noise) <= 2


def test_baseline_is_lower_on_text_like_its_history() -> None:
    rng = random.Random(1)
    words = ["おはよう", "こんにちは", "ラーメン", "カレー"]
    train = [" ".join(rng.choice(words) for _ in range(3)) for _ in range(300)]
    alike = [" ".join(rng.choice(words) for _ in range(3)) for _ in range(30)]
    unlike = ["".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(10)) for _ in range(30)]
    assert markov_baseline(train, alike).bits_per_char < 2
    assert markov_baseline(train, unlike).bits_per_char > 10
