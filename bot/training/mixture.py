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
from bot.training.evaluation import token_probs

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Token 4-grams: on held-out chat as good as trigrams or up to 1% better (Kneser-Ney
# backs off where they are sparse); 4 is ngram.py's MAX_ORDER.
NGRAM_ORDER = 4
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
    train_tokens: np.ndarray,
    valid_stream: np.ndarray,
    block_size: int,
) -> Mixture:
    """The n-gram of the training tokens, weighted against the network on the
    validation stream (evaluation.eval_stream); then counted again with the validation
    messages included."""
    vocab = int(model.config.vocab_size)
    ngram = TokenNgram.fit(train_tokens, vocab, NGRAM_ORDER)
    if len(valid_stream) < 2:
        return Mixture(ngram, 0.5)
    p_network = token_probs(model, valid_stream, block_size)
    weight = best_weight(p_network, ngram.stream_probs(valid_stream))
    everything = np.concatenate([np.asarray(train_tokens), valid_stream[1:]])
    return Mixture(TokenNgram.fit(everything, vocab, NGRAM_ORDER), weight)
