"""Choosing the next token of one row from its logits, by that row's own settings.

Every row of a batch may belong to another channel with another temperature, top-k,
top-p, repetition penalty and seed, so the choice is made per row, with the row's own
random generator: a seeded request samples the same tokens alone or in any batch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from bot.setting_specs import SamplingSettings

if TYPE_CHECKING:
    import torch

    from bot.generation.ngram import Mixture

# Rows of one request with n variants get seeds this far apart, so variants differ but
# each is reproducible on its own.
VARIANT_SEED_STRIDE = 1_000_003


def variant_seed(seed: int, index: int) -> int:
    return (seed + index * VARIANT_SEED_STRIDE) % 2**32


def banned_by_ngrams(history: list[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram already in `history` (no_repeat_ngram_size)."""
    if n <= 0 or len(history) < n:
        return set()
    prefix = tuple(history[len(history) - n + 1 :]) if n > 1 else ()
    banned = set()
    for i in range(len(history) - n + 1):
        if tuple(history[i : i + n - 1]) == prefix:
            banned.add(history[i + n - 1])
    return banned


def mix_logits(logits: torch.Tensor, mixture: Mixture, history: list[int]) -> torch.Tensor:
    """log(w · softmax(logits) + (1 − w) · P_ngram(· | the last tokens of history))."""
    import torch

    context = history[len(history) - mixture.ngram.order + 1 :]  # [] for a unigram
    p_ngram = torch.from_numpy(mixture.ngram.distribution(context)).to(logits.device)
    vocab = min(logits.numel(), p_ngram.numel())
    mixed = mixture.weight * torch.softmax(logits, dim=-1)
    mixed[:vocab] += (1.0 - mixture.weight) * p_ngram[:vocab]
    return torch.log(mixed)


def pick_next(
    logits: torch.Tensor,
    settings: SamplingSettings,
    history: list[int],
    generator: torch.Generator,
    *,
    forbid: Collection[int] = (),
    mixture: Mixture | None = None,
    allowed: Sequence[int] | None = None,
) -> int:
    """The next token for one row. `logits` is the row's last-position logits (vocab,),
    `history` the row's prompt and generated tokens so far, `forbid` tokens that may
    not come now (the end-of-message token on the first step: no empty messages; a
    token the leak guard turned down), `mixture` the version's n-gram mixture, if it
    has one, `allowed` the only tokens that may come (token healing), if any."""
    import torch

    logits = logits.float().clone()

    # 0. The version's n-gram mixed in, as its held-out figure was measured: the
    #    "logits" become the log-probabilities of the mixture.
    if mixture is not None:
        logits = mix_logits(logits, mixture, history)

    # 1. Repetition penalty, as in CTRL: make every token already present less likely.
    if settings.repetition_penalty != 1.0 and history:
        seen = torch.tensor(sorted(set(history)), device=logits.device)
        values = logits[seen]
        penalty = settings.repetition_penalty
        logits[seen] = torch.where(values > 0, values / penalty, values * penalty)

    # 2. Hard bans: repeated n-grams and the forbidden tokens.
    banned = banned_by_ngrams(history, settings.no_repeat_ngram_size) | set(forbid)
    if banned:
        logits[torch.tensor(sorted(banned), device=logits.device)] = -float("inf")

    # 3. Token healing: only tokens that spell what the prompt's end was cut back to
    #    (unless the bans left none of them).
    if allowed:
        keep = torch.tensor(allowed, device=logits.device)
        only = torch.full_like(logits, -float("inf"))
        only[keep] = logits[keep]
        if not torch.isinf(only.max()):
            logits = only

    # 4. Temperature 0 is greedy: the single likeliest token.
    if settings.temperature == 0:
        return int(torch.argmax(logits))

    # 5. Candidates, likeliest first: only the top k when top-k is on (sorting 50k
    #    logits per row per step would cost more than the model's own work).
    if 0 < settings.top_k < logits.numel():
        values, tokens = torch.topk(logits, settings.top_k)
    else:
        values, tokens = torch.sort(logits, descending=True)
    values = values / settings.temperature

    # 6. Top-p: keep the smallest prefix whose probability reaches p (at least one).
    if settings.top_p < 1.0:
        cumulative = torch.softmax(values, dim=-1).cumsum(dim=-1)
        drop = cumulative > settings.top_p
        drop[1:] = drop[:-1].clone()
        drop[0] = False
        values[drop] = -float("inf")

    # 7. Sample among the candidates with the row's own generator.
    choice = torch.multinomial(torch.softmax(values, dim=-1), 1, generator=generator)
    return int(tokens[choice])
