"""One decoding loop for a batch of rows that share a model (and maybe not an adapter).

Rows are left-padded so every row's last prompt token sits at the same position; the
attention mask hides the padding and position ids restart at each row's first real
token, so a row computes what it would alone. The KV cache keeps each step to one
token per row, and a row that ends its message leaves the batch (its cache rows are
dropped), so finished rows stop costing compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.domain import SamplingSettings
from bot.generation.sampling import pick_next


@dataclass
class Row:
    prompt_ids: list[int]
    settings: SamplingSettings
    seed: int
    max_new_tokens: int
    eos_id: int | None
    adapter: str | None = None  # LoRA adapter name; None: the base model itself


BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in mixed-adapter batches


def decode_rows(model: Any, rows: list[Row], pad_id: int, *, mixed: bool) -> list[list[int]]:
    """New tokens of each row, up to (not including) its end-of-message token. `mixed`:
    the model is a peft model with adapters, and each row names its own (or the base)."""
    import torch
    from transformers import DynamicCache

    device = model.device
    # 1. Left-pad the prompts into one tensor, with the mask and position ids.
    width = max(len(r.prompt_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, width - len(row.prompt_ids) :] = torch.tensor(row.prompt_ids, device=device)
        mask[i, width - len(row.prompt_ids) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)

    generators = [torch.Generator(device=device).manual_seed(r.seed) for r in rows]
    outputs: list[list[int]] = [[] for _ in rows]
    live = list(range(len(rows)))  # which rows are still in the batch, in batch order
    adapters = [r.adapter or BASE_ADAPTER for r in rows]
    cache = DynamicCache()
    step_ids, step_positions = ids, positions

    with torch.inference_mode():
        for step in range(max(r.max_new_tokens for r in rows)):
            # 2. One forward pass for all live rows (the whole prompt on the first step).
            kwargs: dict[str, Any] = {}
            if mixed:
                kwargs["adapter_names"] = [adapters[i] for i in live]
            logits = model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=step_positions,
                past_key_values=cache,
                use_cache=True,
                **kwargs,
            ).logits[:, -1, :]

            # 3. Each row picks its token with its own settings and random generator.
            chosen: list[int] = []
            keep: list[int] = []
            for slot, i in enumerate(live):
                row = rows[i]
                forbid = row.eos_id if step == 0 else None  # a message is never empty
                token = pick_next(
                    logits[slot],
                    row.settings,
                    row.prompt_ids + outputs[i],
                    generators[i],
                    forbid=forbid,
                )
                ended = token == row.eos_id
                if not ended:
                    outputs[i].append(token)
                if not ended and len(outputs[i]) < row.max_new_tokens:
                    keep.append(slot)
                    chosen.append(token)

            # 4. Rows that ended leave the batch, with their cache rows.
            if not keep:
                break
            if len(keep) < len(live):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask = mask[index]
                step_positions = step_positions[index]
                live = [live[slot] for slot in keep]
            step_ids = torch.tensor(chosen, device=device).unsqueeze(1)
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=device)], 1)
            step_positions = step_positions[:, -1:] + 1
    return outputs
