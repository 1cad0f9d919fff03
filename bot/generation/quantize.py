"""A serving base in low precision: int8 weights on the CPU, bf16 on a GPU.

Decoding one token at a time is bound by reading the weights from memory; int8 weights
are a quarter of fp32's. Every channel is served from one such base, each row's LoRA
adapter added on top in float (bot/generation/lora.py), so the base's cost is shared.

On the CPU each linear layer becomes an `Int8Linear`: weights int8 with one scale per
output feature, activations quantized per token (each token's own scale) on the fly by
fbgemm's dynamic int8 matmul. Per token, not per call as torch's `quantize_dynamic`
does: a token's result in a batch or a prompt then depends on that token alone, and
the quantization error is smaller. (A lone token, a lone request's decode step, is
quantized over its own range directly, which is cheaper; so a request may read
differently alone than in a batch: README "The engine" says exactly when.)
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn


class Int8Linear(nn.Module):  # type: ignore[misc]
    """y = x Wᵀ + b with W in int8 (a scale per output feature), x per token in int8.

    fbgemm quantizes its input with one range per call; each token is first scaled to
    an absolute maximum of 1, and an extra "anchor" row (+1, -1) pins that range to
    exactly [-1, 1], so no token's rounding depends on the others in the call. The
    scale is undone on the output (the matmul is linear per row), then the bias added.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """`weight` is (out, in), as nn.Linear stores it."""
        super().__init__()
        weight = weight.detach().float()
        self.out_features, self.in_features = weight.shape
        scales = weight.abs().amax(1).clamp_min(1e-12) / 127
        with warnings.catch_warnings():
            # torch steers new quantization work to torchao; these fbgemm kernels are
            # still the fastest int8 matmul torch ships for the CPU.
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(
                weight, scales.double(), torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8
            )
            self._packed = torch.ops.quantized.linear_prepack(qweight, None)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        anchor = torch.zeros((1, self.in_features))
        anchor[0, 0], anchor[0, 1] = 1.0, -1.0
        self.register_buffer("anchor", anchor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] == 1:
            # One token (a lone request's decode step): fbgemm's range is already this
            # token's own, and the scaling's half-dozen small ops would cost more than
            # the matmul itself.
            y = torch.ops.quantized.linear_dynamic(rows, self._packed, True)
            if self.bias is not None:
                y.add_(self.bias)
            return y.view(*shape[:-1], self.out_features)
        scale = rows.abs().amax(1, keepdim=True).clamp_min_(1e-12)
        y = torch.ops.quantized.linear_dynamic(
            torch.cat([rows / scale, self.anchor]), self._packed, True
        )[:-1]
        y = y * scale if self.bias is None else torch.addcmul(self.bias, y, scale)
        return y.view(*shape[:-1], self.out_features)


def _weight_out_in(module: nn.Module) -> torch.Tensor:
    """(out, in) weight of an nn.Linear or of GPT-2's Conv1D, which stores (in, out)."""
    if isinstance(module, nn.Linear):
        return module.weight
    return module.weight.t()


def quantize_int8(model: Any) -> Any:
    """The model with every linear layer (GPT-2's Conv1D projections and the output
    layer) in int8, in place; embeddings and layer norms stay in float. CPU only."""
    from transformers.pytorch_utils import Conv1D

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear | Conv1D):
                setattr(module, name, Int8Linear(_weight_out_in(child), child.bias))
    return model


def serving_precision(model: Any) -> Any:
    """The model as a shared serving base: int8 on the CPU, bf16 on a GPU (where the
    matmuls are fast in half precision and memory is the limit)."""
    if model.device.type == "cpu":
        return quantize_int8(model)
    return model.to(torch.bfloat16)
