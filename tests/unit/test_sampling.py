"""Choosing the next token of a whole batch at once, each row by its own settings."""

from __future__ import annotations

import torch

from bot.generation.sampling import Pick, pick_batch, pick_next
from bot.setting_specs import SamplingSettings

VOCAB = 1000
DEFAULTS = SamplingSettings()
# What channels sharing one batch might have set, each row its own.
ROWS = [
    DEFAULTS,  # temperature 0.9, top-k 50, top-p 0.95, repetition penalty 1.1
    DEFAULTS.merged({"temperature": 0}),  # greedy
    DEFAULTS.merged({"top_k": 0, "top_p": 0.8}),  # top-k off: the whole vocabulary
    DEFAULTS.merged({"top_k": 5, "top_p": 1.0, "repetition_penalty": 1.0}),
    DEFAULTS.merged({"top_k": 200, "temperature": 1.7, "no_repeat_ngram_size": 2}),
    DEFAULTS.merged({"top_k": 0, "top_p": 1.0, "temperature": 0.3}),
]


def histories(step: int) -> list[list[int]]:
    return [[(7 * i + 3 * j + step) % VOCAB for j in range(20 + i)] for i in range(len(ROWS))]


def test_rows_picked_together_get_what_each_would_alone() -> None:
    """A seeded request writes the same text whoever else's rows share its batch."""
    torch.manual_seed(0)
    together = [torch.Generator().manual_seed(100 + i) for i in range(len(ROWS))]
    alone = [torch.Generator().manual_seed(100 + i) for i in range(len(ROWS))]
    for step in range(30):
        logits = torch.randn(len(ROWS), VOCAB) * 4
        history = histories(step)
        forbid = [{history[i][-1]} if i % 2 else set() for i in range(len(ROWS))]
        allowed = [list(range(10, 60)) if i == 4 and step < 3 else None for i in range(len(ROWS))]
        picks = [
            Pick(s, history[i], together[i], forbid[i], allowed=allowed[i])
            for i, s in enumerate(ROWS)
        ]
        batch = pick_batch(logits.clone(), picks)
        single = [
            pick_next(logits[i], s, history[i], alone[i], forbid=forbid[i], allowed=allowed[i])
            for i, s in enumerate(ROWS)
        ]
        assert batch == single, f"step {step}"


def test_each_row_keeps_to_its_own_settings() -> None:
    torch.manual_seed(1)
    generators = [torch.Generator().manual_seed(i) for i in range(len(ROWS))]
    for step in range(40):
        logits = torch.randn(len(ROWS), VOCAB) * 4
        history = histories(step)
        forbid = [set(range(0, VOCAB, 3)) if i == 0 else set() for i in range(len(ROWS))]
        picks = [Pick(s, history[i], generators[i], forbid[i]) for i, s in enumerate(ROWS)]
        tokens = pick_batch(logits.clone(), picks)
        assert tokens[0] % 3 != 0  # its forbidden tokens never come
        # Greedy: the likeliest token once the repetition penalty is applied.
        penalized = logits[1].clone()
        seen = torch.tensor(sorted(set(history[1])))
        penalized[seen] = torch.where(
            penalized[seen] > 0, penalized[seen] / 1.1, penalized[seen] * 1.1
        )
        assert tokens[1] == int(penalized.argmax())
        # Top-k 5 without a penalty: one of the row's five likeliest.
        assert tokens[3] in set(logits[3].topk(5).indices.tolist())
        # No repeated bigram: the token after the last one is never what followed it.
        last = history[4][-1]
        followers = {b for a, b in zip(history[4], history[4][1:], strict=False) if a == last}
        assert tokens[4] not in followers


def test_draws_follow_the_softmax_at_the_rows_temperature() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0] + [-1e9] * 6)
    for temperature in (1.0, 0.5):
        settings = DEFAULTS.merged(
            {"temperature": temperature, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}
        )
        generator = torch.Generator().manual_seed(5)
        picks = [Pick(settings, [], generator) for _ in range(4000)]
        tokens = pick_batch(logits.repeat(4000, 1), picks)
        seen = torch.bincount(torch.tensor(tokens), minlength=10).float() / 4000
        expected = torch.softmax(logits / temperature, -1)
        assert torch.allclose(seen, expected, atol=0.03), (seen, expected)


def test_top_p_keeps_the_smallest_prefix_that_reaches_it() -> None:
    # Probabilities 0.5, 0.3, 0.2 (and nothing else): p = 0.7 keeps the first two.
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2] + [1e-12] * 7))
    settings = DEFAULTS.merged(
        {"temperature": 1.0, "top_k": 0, "top_p": 0.7, "repetition_penalty": 1.0}
    )
    generator = torch.Generator().manual_seed(6)
    tokens = pick_batch(logits.repeat(3000, 1), [Pick(settings, [], generator)] * 3000)
    assert set(tokens) == {0, 1}
    assert abs(tokens.count(0) / 3000 - 0.5 / 0.8) < 0.03
