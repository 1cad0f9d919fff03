"""Fitting a version's n-gram mixture (see bot/generation/ngram.py).

The n-gram's counts come from the training tokens; the network's share of the mixture
is the one that predicts the validation messages best. The validation messages are
neither trained on by the network nor counted while the share is chosen, so it is the
share that works on messages neither part has seen: the held-out eval messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bot.generation.ngram import Mixture, TokenNgram
from bot.training.evaluation import eval_stream, token_probs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

NGRAM_ORDER = 3  # token trigrams: longer ones are too sparse on a channel's history
EM_ROUNDS = 100


def best_weight(p_network: np.ndarray, p_ngram: np.ndarray) -> float:
    """The mixture weight of the network that maximises the likelihood of the data
    (expectation-maximisation for a two-part mixture; the likelihood is concave in the
    weight, so it converges to the best one)."""
    if len(p_network) == 0:
        return 0.5
    w = 0.5
    for _ in range(EM_ROUNDS):
        mixed = np.maximum(w * p_network + (1 - w) * p_ngram, 1e-300)
        w = float(np.mean(w * p_network / mixed))
    return min(max(w, 0.0), 1.0)


def fit_mixture(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_tokens: np.ndarray,
    valid_texts: list[str],
    block_size: int,
) -> Mixture:
    """The n-gram of the training tokens, weighted against the network on the
    validation messages; then counted again with the validation messages included."""
    vocab = int(model.config.vocab_size)
    ngram = TokenNgram.fit(train_tokens, vocab, NGRAM_ORDER)
    if not valid_texts:
        return Mixture(ngram, 0.5)
    stream = eval_stream(tokenizer, valid_texts)
    weight = best_weight(token_probs(model, stream, block_size), ngram.stream_probs(stream))
    full = TokenNgram.fit(
        np.concatenate([np.asarray(train_tokens), stream[1:]]), vocab, NGRAM_ORDER
    )
    return Mixture(full, weight)
