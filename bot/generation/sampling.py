"""Sampling: prepared prompt + SamplingSettings → new token ids, on the device thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.domain import SamplingSettings
from bot.generation.prompt import PreparedPrompt

if TYPE_CHECKING:
    from bot.generation.loading import LoadedModel


def sample(
    loaded: LoadedModel, prompt: PreparedPrompt, settings: SamplingSettings, seed: int
) -> list[list[int]]:
    """Generates up to settings.num_return_sequences continuations and returns each one's
    new tokens, cut at the end-of-message token (which is not included)."""
    import torch
    from transformers import GenerationConfig

    # 1. Seed the global RNG: only the device thread samples, so this is race-free and
    #    the same seed with the same settings gives the same text.
    torch.manual_seed(seed)

    # 2. temperature 0 means greedy decoding; greedy variants would all be identical.
    do_sample = settings.temperature > 0
    n = settings.num_return_sequences if do_sample else 1
    eos = loaded.eos_id
    pad = loaded.tokenizer.pad_token_id
    config = GenerationConfig(
        do_sample=do_sample,
        temperature=settings.temperature if do_sample else None,
        top_k=settings.top_k if do_sample else None,
        top_p=settings.top_p if do_sample else None,
        repetition_penalty=settings.repetition_penalty,
        no_repeat_ngram_size=settings.no_repeat_ngram_size,
        num_return_sequences=n,
        max_new_tokens=prompt.max_new_tokens,
        # A message has at least one token: an end-of-message straight away would be an
        # empty answer, never what the person asked for.
        min_new_tokens=1,
        eos_token_id=eos,
        pad_token_id=pad if pad is not None else (eos if eos is not None else 0),
    )

    # 3. Generate from the prompt (batch of one, repeated n times by generate()).
    input_ids = torch.tensor([prompt.input_ids], dtype=torch.long, device=loaded.model.device)
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
        )

    # 4. Keep only the new tokens of each row, up to the first end-of-message.
    rows: list[list[int]] = []
    for row in output[:, input_ids.shape[1] :].tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        rows.append(row)
    return rows
