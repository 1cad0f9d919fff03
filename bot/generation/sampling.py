"""Choosing the next token of every row of a batch from its logits, each by its own
settings.

Every row of a batch may belong to another channel with another temperature, top-k,
top-p, repetition penalty and seed. The tensor work is done for all rows at once (one
top-k, one softmax, one cumulative sum over the batch: per row, these small calls cost
more than the model's step shares them), and only the draw is per row, with the row's
own random generator: a seeded request samples the same tokens alone or in any batch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
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


@dataclass
class Pick:
    """What one row's next token is chosen by, besides its logits."""

    settings: SamplingSettings
    history: list[int]  # the row's prompt and generated tokens so far
    generator: torch.Generator  # the row's own: its draws do not depend on the batch
    # Tokens that may not come now: the end-of-message token on the first step (no
    # empty messages), a token the leak guard turned down.
    forbid: set[int] = field(default_factory=set)
    mixture: Mixture | None = None  # the version's n-gram mixture, if it has one
    allowed: Sequence[int] | None = None  # the only tokens that may come (token healing)


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
    """The next token for one row, whose last-position logits are `logits` (vocab,)."""
    pick = Pick(settings, history, generator, set(forbid), mixture, allowed)
    return pick_batch(logits.float().clone().unsqueeze(0), [pick])[0]


def pick_batch(logits: torch.Tensor, picks: list[Pick]) -> list[int]:
    """The next token of each row: `logits` is [rows, vocab], the rows' last-position
    logits in float32, `picks[i]` what row i's token is chosen by. `logits` is used up:
    it is changed in place (a copy of 50k logits a row costs as much as the choice)."""
    import torch

    device, vocab = logits.device, logits.shape[1]

    # 0. A version's n-gram mixed in, as its held-out figure was measured: the row's
    #    "logits" become the log-probabilities of the mixture.
    for i, pick in enumerate(picks):
        if pick.mixture is not None:
            logits[i] = mix_logits(logits[i], pick.mixture, pick.history)

    # 1. Repetition penalty, as in CTRL: make every token already present less likely.
    #    One gather and one scatter over the (row, token) pairs of every row.
    rows: list[int] = []
    tokens: list[int] = []
    penalties: list[float] = []
    for i, pick in enumerate(picks):
        if pick.settings.repetition_penalty != 1.0 and pick.history:
            seen = set(pick.history)
            rows += [i] * len(seen)
            tokens += seen
            penalties += [pick.settings.repetition_penalty] * len(seen)
    if rows:
        where = (torch.tensor(rows, device=device), torch.tensor(tokens, device=device))
        values = logits[where]
        penalty = torch.tensor(penalties, device=device)
        logits[where] = torch.where(values > 0, values / penalty, values * penalty)

    # 2. Hard bans: repeated n-grams and the forbidden tokens.
    rows, tokens = [], []
    for i, pick in enumerate(picks):
        banned = banned_by_ngrams(pick.history, pick.settings.no_repeat_ngram_size) | pick.forbid
        rows += [i] * len(banned)
        tokens += banned
    if rows:
        where = (torch.tensor(rows, device=device), torch.tensor(tokens, device=device))
        logits[where] = -float("inf")

    # 3. Token healing: only tokens that spell what the prompt's end was cut back to
    #    (unless the bans left none of them).
    for i, pick in enumerate(picks):
        if pick.allowed:
            keep = torch.tensor(pick.allowed, device=device)
            only = torch.full_like(logits[i], -float("inf"))
            only[keep] = logits[i, keep]
            if not torch.isinf(only.max()):
                logits[i] = only

    # 4. Temperature 0 is greedy: the single likeliest token.
    chosen = [0] * len(picks)
    greedy = [i for i, pick in enumerate(picks) if pick.settings.temperature == 0]
    if greedy:
        for i, token in zip(greedy, logits[greedy].argmax(-1).tolist(), strict=True):
            chosen[i] = token

    # 5–7. The others, in two groups: rows with top-k on share one top-k (the largest
    #    k; each row's own beyond it is cut off), rows with it off share one sort.
    topk_on = [
        i
        for i, p in enumerate(picks)
        if p.settings.temperature != 0 and 0 < p.settings.top_k < vocab
    ]
    topk_off = [
        i
        for i, p in enumerate(picks)
        if p.settings.temperature != 0 and not 0 < p.settings.top_k < vocab
    ]
    for group in (topk_on, topk_off):
        if group:
            for i, token in zip(
                group, _sample(logits[group], [picks[i] for i in group]), strict=True
            ):
                chosen[i] = token
    return chosen


def _sample(logits: torch.Tensor, picks: list[Pick]) -> list[int]:
    import torch

    device, vocab = logits.device, logits.shape[1]

    # 5. Candidates, likeliest first: only the top k when top-k is on (sorting 50k
    #    logits per row per step would cost more than the model's own work).
    ks = [p.settings.top_k if 0 < p.settings.top_k < vocab else vocab for p in picks]
    if max(ks) < vocab:
        values, tokens = torch.topk(logits, max(ks))
    else:
        values, tokens = torch.sort(logits, descending=True)
    if min(ks) < values.shape[1]:
        beyond = (
            torch.arange(values.shape[1], device=device) >= torch.tensor(ks, device=device)[:, None]
        )
        values = values.masked_fill(beyond, -float("inf"))
    temperature = torch.tensor([p.settings.temperature for p in picks], device=device)
    values = values / temperature[:, None]

    # The candidates' weights, unnormalised: softmax's sum would be taken over the
    # group's widest row, in an order that depends on that width, so a row's figures
    # (and its draws) would depend on who shares its batch. A running sum along each
    # row sees its own candidates only, and so does every figure made from it.
    weights = torch.exp(values - values[:, :1])  # the first candidate is the likeliest
    cumulative = weights.cumsum(dim=-1)

    # 6. Top-p: keep the smallest prefix whose probability reaches p (at least one).
    top_p = torch.tensor([p.settings.top_p for p in picks], device=device)
    if bool((top_p < 1.0).any()):
        drop = cumulative > top_p[:, None] * cumulative[:, -1:]
        drop[:, 1:] = drop[:, :-1].clone()
        drop[:, 0] = False
        drop &= (top_p < 1.0)[:, None]
        weights = weights.masked_fill(drop, 0.0)
        cumulative = weights.cumsum(dim=-1)

    # 7. Each row draws among its candidates with its own generator: one uniform number
    #    a row and step (torch.multinomial draws one per candidate, so a row's random
    #    stream would depend on the width of its group), placed on the running sum.
    uniform = torch.cat([torch.rand(1, generator=p.generator, device=device) for p in picks])
    total = cumulative[:, -1]
    # Below the total, even where u × total rounds up to it: the draw is then the last
    # candidate kept, never one cut off after it.
    below = torch.nextafter(total, torch.zeros_like(total))
    target = torch.minimum(uniform * total, below)[:, None]
    draws = torch.searchsorted(cumulative, target, right=True)
    return [int(t) for t in tokens.gather(1, draws)[:, 0].tolist()]
