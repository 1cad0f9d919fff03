"""One decode step of a GPT-2, written out: one new token for every row of a batch.

transformers' GPT-2 forward is general (training, masks of every shape, hooks, output
dataclasses); for one token per row that generality costs about a third of a decode
step on the CPU, more than the int8 matmuls it wraps. This is the same computation on
the same modules (so the int8 layers and the per-row LoRA wrappers apply as they do
there), with only what a decode step needs: the rows' cached keys and values, a
padding mask, and each row's own position. Prompts still go through transformers'
forward (bot/generation/batching.py's Prefill), which builds the causal mask.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F


def supports(model: Any) -> bool:
    """Whether `model` is a GPT-2 this step computes exactly (not, say, one with the
    attention reordering option, which only transformers' eager path has)."""
    if type(model).__name__ != "GPT2LMHeadModel":
        return False
    attn = model.transformer.h[0].attn
    return not getattr(attn, "reorder_and_upcast_attn", False) and not attn.is_cross_attention


def decode_step(
    model: Any, ids: torch.Tensor, cache: Any, mask: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Next-token logits [rows, vocab] for `ids` [rows, 1] at `positions` [rows, 1];
    `mask` [rows, columns] covers the cached columns and this token's (1: attend)."""
    gpt = model.transformer
    rows = ids.shape[0]
    # 1. Token and position embeddings.
    h = gpt.wte(ids) + gpt.wpe(positions)
    # 2. Padding mask, broadcast over heads and the one query position.
    attend = mask.bool()[:, None, None, :]
    for index, block in enumerate(gpt.h):
        attn = block.attn
        # 3. Attention: project, split into heads, append this token to the cache,
        #    attend over the row's own columns, merge heads, project back.
        q, k, v = attn.c_attn(block.ln_1(h)).split(attn.split_size, dim=2)
        q, k, v = (t.view(rows, 1, -1, attn.head_dim).transpose(1, 2) for t in (q, k, v))
        k, v = cache.layers[index].update(k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, scale=attn.scaling)
        h = h + attn.c_proj(y.transpose(1, 2).reshape(rows, 1, -1))
        # 4. The MLP.
        mlp = block.mlp
        h = h + mlp.c_proj(mlp.act(mlp.c_fc(block.ln_2(h))))
    # 5. Final norm and the output layer, for the one position.
    logits: torch.Tensor = model.lm_head(gpt.ln_f(h))[:, -1, :]
    return logits
