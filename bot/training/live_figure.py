"""The live figure: held-out bits per character as users meet the model, which learns
every message as it arrives.

Each held-out message is scored by the version's network (frozen, as served) mixed with
the channel's live counts (bot/generation/live_ngram.py) that have absorbed every
training message and every held-out message before this one; then it is counted in.
The channel's Markov chain gets the same treatment (markov.py's live figure), so the
two figures compare like the held-out ones: below the chain's, the bot beats a Markov
bot at its own game of learning at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bot.generation.live_ngram import LiveNgram
from bot.training.evaluation import EvalResult, eval_stream, token_probs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def live_counts(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], order: int
) -> tuple[LiveNgram, int]:
    """The live counts of these messages, as serving builds them; and the eos id."""
    eos = tokenizer.eos_token_id
    assert eos is not None
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return LiveNgram(len(tokenizer), eos, ids, order=order), eos


def live_evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_texts: list[str],
    eval_texts: list[str],
    block_size: int,
    weight: float,
    order: int,
) -> EvalResult:
    """The held-out messages, each scored by weight · network + (1 − weight) · counts
    that learnt everything before it."""
    if not eval_texts:
        return EvalResult(0.0, 0, 0)
    stream = eval_stream(tokenizer, eval_texts)
    p_network = token_probs(model, stream, block_size)
    counts, eos = live_counts(tokenizer, train_texts, order)
    p_counts = []
    for ids in tokenizer(eval_texts, add_special_tokens=False)["input_ids"]:
        # 1. This message, scored by the counts as they are now...
        p_counts.append(counts.stream_probs(np.asarray([eos, *ids, eos], dtype=np.int64)))
        # 2. ...then learnt, as serving learns a message the moment it is stored.
        counts.add(ids)
    probs = weight * p_network + (1.0 - weight) * np.concatenate(p_counts)
    nats = float(-np.log(np.maximum(probs, 1e-300)).sum())
    return EvalResult(nats, len(probs), sum(len(t) + 1 for t in eval_texts))
