"""Held-out evaluation: how well a model predicts the channel's newest messages.

Loss is reported per token (and as perplexity), the way training logs it. Versions are
compared per character instead: two versions can have different tokenizers (a new
base), and bits per character mean the same thing for both, and for the channel's
character Markov chain (markov.py), which scores every character and one end symbol
per message, as here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from bot.generation.ngram import Mixture


@dataclass(frozen=True)
class EvalResult:
    nats: float  # total negative log-likelihood of the eval tokens
    tokens: int  # tokens predicted
    chars: int  # characters of eval text (each message boundary counts as one)

    @property
    def loss(self) -> float:
        return self.nats / self.tokens if self.tokens else math.nan

    @property
    def perplexity(self) -> float:
        if not self.tokens:
            return math.nan
        # A diverged run can score far beyond what exp() can represent.
        return math.exp(self.loss) if self.loss < 700 else math.inf

    @property
    def nats_per_char(self) -> float:
        return self.nats / self.chars if self.chars else math.nan

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2)


def eval_stream(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> np.ndarray:
    """The texts as one token stream: end-of-text, message, end-of-text, message, …, so
    the first token follows an end-of-text, as every message does."""
    eos = tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return np.asarray([eos, *(t for row in ids for t in (*row, eos))], dtype=np.int64)


def token_probs(
    model: PreTrainedModel, stream: np.ndarray, block_size: int, batch_size: int = 8
) -> np.ndarray:
    """The network's probability of each next token of the stream (stream[i + 1] for i
    in 0..len - 2), scored in blocks of `block_size`, like training sees it."""
    import torch

    starts = list(range(0, len(stream) - 1, block_size))
    probs = np.zeros(max(len(stream) - 1, 0), dtype=np.float64)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        # Full blocks go in batches; the last, shorter one alone.
        full = [s for s in starts if s + block_size + 1 <= len(stream)]
        groups = [full[i : i + batch_size] for i in range(0, len(full), batch_size)]
        groups += [[s] for s in starts if s + block_size + 1 > len(stream)]
        for group in groups:
            rows = [stream[s : s + block_size + 1] for s in group]
            ids = torch.tensor(np.stack(rows), dtype=torch.long, device=model.device)
            logits = model(input_ids=ids[:, :-1]).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp.gather(-1, ids[:, 1:, None])[..., 0].double().exp().cpu().numpy()
            for s, row in zip(group, picked, strict=True):
                probs[s : s + len(row)] = row
    model.train(was_training)
    return probs


def evaluate_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    block_size: int,
    batch_size: int = 8,
    mixture: Mixture | None = None,
) -> EvalResult:
    """Held-out figures of the model (mixed with its n-gram, when it has one)."""
    if not texts:
        return EvalResult(0.0, 0, 0)
    stream = eval_stream(tokenizer, texts)
    probs = token_probs(model, stream, block_size, batch_size)
    if mixture is not None:
        probs = mixture.mix(probs, mixture.ngram.stream_probs(stream))
    # A probability that underflowed to 0 costs as much as float64 can say, not inf.
    nats = float(-np.log(np.maximum(probs, 1e-300)).sum())
    chars = sum(len(t) + 1 for t in texts)
    return EvalResult(nats, len(probs), chars)
