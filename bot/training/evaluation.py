"""Held-out evaluation: how well a model predicts the channel's newest messages.

Loss is reported per token (and as perplexity), the way training logs it. Versions are
compared per character instead: two versions can have different tokenizers (a new
base), and nats per character means the same thing for both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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


def evaluate_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    block_size: int,
    batch_size: int = 8,
) -> EvalResult:
    """Packs the texts into one token stream (message, end-of-text, message, …) and
    scores it in blocks, like training sees it."""
    import torch

    if not texts:
        return EvalResult(0.0, 0, 0)
    eos = tokenizer.eos_token_id
    stream = [
        token
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]
        for token in (*ids, eos)
    ]
    # The first token of the stream follows an end-of-text, as every message does.
    stream = [eos, *stream]
    blocks = [stream[i : i + block_size + 1] for i in range(0, len(stream) - 1, block_size)]
    nats, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        full = [b for b in blocks if len(b) == block_size + 1]
        ragged = [b for b in blocks if len(b) != block_size + 1 and len(b) > 1]
        batches = [full[i : i + batch_size] for i in range(0, len(full), batch_size)]
        batches += [[b] for b in ragged]
        for batch in batches:
            ids = torch.tensor(batch, dtype=torch.long, device=model.device)
            logits = model(input_ids=ids[:, :-1]).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="sum"
            )
            nats += float(loss)
            tokens += ids[:, 1:].numel()
    model.train(was_training)
    chars = sum(len(t) + 1 for t in texts)
    return EvalResult(nats, tokens, chars)
