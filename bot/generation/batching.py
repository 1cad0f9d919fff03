"""One decoding loop for a batch of rows that share a model (and maybe not an adapter).

Each prompt is prefilled on its own (no compute spent on padding), then the rows'
key/value caches are left-padded into one, so every row's next token sits at the same
position; the attention mask hides the padding and each row keeps its own position
ids, so a row computes what it would alone. Every later step is one token per live
row, and a row that ends its message leaves the batch (its cache rows are dropped),
so finished rows stop costing compute.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.domain import SamplingSettings
from bot.generation.ngram import Mixture
from bot.generation.sampling import pick_next

if TYPE_CHECKING:
    import torch

    from bot.generation.lora import AdapterSet


# The adapter slot of a row with no adapter: the base model itself (slot 0 of every
# AdapterSet holds zeros). Here, not in lora.py, so that a row can be described
# without importing torch.
BASE_SLOT = 0


@dataclass
class Row:
    prompt_ids: list[int]
    settings: SamplingSettings
    seed: int
    max_new_tokens: int
    eos_id: int | None
    adapter: int = BASE_SLOT  # the row's LoRA adapter slot; 0: the base model itself
    mixture: Mixture | None = None  # the version's n-gram mixture, if it has one


@dataclass
class Decoded:
    tokens: list[list[int]]  # each row's new tokens
    first_token_at: float  # perf_counter() when every row had its first token


def decode_rows(model: Any, rows: list[Row], lora: AdapterSet | None = None) -> Decoded:
    """New tokens of each row, up to (not including) its end-of-message token. With
    `lora`, each row runs with its own adapter slot."""
    import torch
    from transformers import DynamicCache

    device = model.device

    def forward(ids: torch.Tensor, cache: Any, slots: list[int], **kw: Any) -> torch.Tensor:
        if lora is not None:
            lora.select(slots)
        # Only the last position's logits are needed: on a prompt this skips the
        # output layer (vocab x width) for every other token. The cache goes in as
        # `cache=` (transformers' Cache API since 5.x; the old `past_key_values=`
        # name warns on every step and is removed in 5.40).
        out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1, **kw)
        return out.logits[:, -1, :]

    with torch.inference_mode():
        # 1. Prefill each prompt on its own: no compute on padding, and exactly the
        #    numbers the row would get alone.
        caches, first = [], []
        for row in rows:
            cache = DynamicCache()
            ids = torch.tensor([row.prompt_ids], dtype=torch.long, device=device)
            first.append(forward(ids, cache, [row.adapter])[0])
            caches.append(cache)

        # 2. One cache for the batch: each row's keys and values left-padded to the
        #    longest prompt, the padding masked out.
        width = max(len(r.prompt_ids) for r in rows)
        cache = _merge_left_padded(caches, width, width + max(r.max_new_tokens for r in rows))
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        for i, row in enumerate(rows):
            mask[i, width - len(row.prompt_ids) :] = 1
        positions = torch.tensor([[len(r.prompt_ids)] for r in rows], device=device)

        generators = [torch.Generator(device=device).manual_seed(r.seed) for r in rows]
        outputs: list[list[int]] = [[] for _ in rows]
        live = list(range(len(rows)))  # which rows are still in the batch, in batch order
        logits = torch.stack(first)
        first_token_at = time.perf_counter()
        for step in range(max(r.max_new_tokens for r in rows)):
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
                    mixture=row.mixture,
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
                positions = positions[index]
                live = [live[slot] for slot in keep]

            # 5. One forward pass: one new token for every live row.
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=device)], 1)
            step_ids = torch.tensor(chosen, device=device).unsqueeze(1)
            logits = forward(
                step_ids,
                cache,
                [rows[i].adapter for i in live],
                attention_mask=mask,
                position_ids=positions,
            )
            positions = positions + 1
    return Decoded(outputs, first_token_at)


def _merge_left_padded(caches: list[Any], width: int, capacity: int) -> Any:
    import torch
    from transformers import DynamicCache

    merged = DynamicCache()
    merged.layers = [_reserved_layer(capacity) for _ in caches[0].layers]
    for layer in range(len(caches[0].layers)):
        keys, values = [], []
        for cache in caches:
            k, v = cache.layers[layer].keys, cache.layers[layer].values
            pad = width - k.shape[2]
            if pad:
                k = torch.nn.functional.pad(k, (0, 0, pad, 0))
                v = torch.nn.functional.pad(v, (0, 0, pad, 0))
            keys.append(k)
            values.append(v)
        merged.update(torch.cat(keys), torch.cat(values), layer)
    return merged


def _reserved_layer(capacity: int) -> Any:
    """A cache layer with room for the whole generation reserved up front: appending a
    token writes in place instead of copying the whole cache (torch.cat) every step,
    which took about a sixth of decoding time."""
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.length = 0
            self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            new = key_states.shape[-2]
            if self.buffers is None or self.length + new > self.buffers[0].shape[-2]:
                size = max(capacity, 2 * (self.length + new))
                grown = []
                for old, states in zip(
                    self.buffers or (None, None), (key_states, value_states), strict=True
                ):
                    shape = (*states.shape[:-2], size, states.shape[-1])
                    buffer = states.new_zeros(shape)
                    if old is not None:
                        buffer[..., : self.length, :] = old[..., : self.length, :]
                    grown.append(buffer)
                self.buffers = (grown[0], grown[1])
                self.dtype, self.device = key_states.dtype, key_states.device
                self.is_initialized = True
            keys, values = self.buffers
            keys[..., self.length : self.length + new, :] = key_states
            values[..., self.length : self.length + new, :] = value_states
            self.length += new
            self.keys = keys[..., : self.length, :]
            self.values = values[..., : self.length, :]
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.buffers is not None:
                self.buffers = (self.buffers[0][indices], self.buffers[1][indices])
                self.keys = self.buffers[0][..., : self.length, :]
                self.values = self.buffers[1][..., : self.length, :]

    return ReservedLayer()
