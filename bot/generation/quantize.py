"""A serving base in low precision: int8 weights on the CPU, bf16 on a GPU.

Decoding one token at a time is bound by reading the weights from memory; int8 weights
are a quarter of fp32's. Every channel is served from one such base, each row's LoRA
adapter added on top in float (bot/generation/lora.py), so the base's cost is shared.

On the CPU each linear layer becomes an `Int8Linear`: weights int8 with one scale per
output feature, activations quantized on the fly by fbgemm's dynamic int8 matmul (one
range per call). A call's range spans every token in it, so a request may read
differently alone than in a batch (README "The engine" says exactly when).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


class Int8Linear(nn.Module):  # type: ignore[misc]
    """y = x Wᵀ + b with W in int8 (one scale per output feature) and x quantized to
    int8 on the fly by fbgemm, one range per call; the bias is added inside fbgemm's
    kernel.

    Per call, not per token: scaling each token first (its own range) measured no
    better held-out loss on our models and cost 11% of a 16-row decode step, its
    elementwise ops each waking the second thread on a 2-core CPU.
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
            # A copy: the loaded bias may be a view of the weights file's memory map,
            # which a reference kept here would hold mapped (every weight page read while
            # quantizing stays resident with it: ~0.4 GiB for a 124M GPT-2).
            packed_bias = None if bias is None else bias.detach().float().clone()
            self._packed = torch.ops.quantized.linear_prepack(qweight, packed_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, self.in_features), self._packed, True)
        return y.view(*x.shape[:-1], self.out_features)


class Int8Embedding(nn.Module):  # type: ignore[misc]
    """A token embedding in int8, one scale per token: the same rounding the tied
    output layer's int8 weights have (one scale per output feature is one per token).
    A lookup reads a few rows a step, so dequantizing them costs nothing; the float
    table it replaces was the largest tensor of a served GPT-2 (150 MiB of 124M)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        weight = weight.detach().float()
        scales = weight.abs().amax(1).clamp_min(1e-12) / 127
        self.register_buffer(
            "q", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
        )
        self.register_buffer("scales", scales)
        self.num_embeddings, self.embedding_dim = weight.shape

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.q[ids].float() * self.scales[ids].unsqueeze(-1)


def _weight_out_in(module: nn.Module) -> torch.Tensor:
    """(out, in) weight of an nn.Linear or of GPT-2's Conv1D, which stores (in, out)."""
    if isinstance(module, nn.Linear):
        return module.weight
    return module.weight.t()


def quantize_int8(model: Any) -> Any:
    """The model with every linear layer (GPT-2's Conv1D projections and the output
    layer) in int8, in place, and the token embedding too where it is the output
    layer's (tied, as in GPT-2); position embeddings and layer norms stay in float.
    CPU only."""
    from transformers.pytorch_utils import Conv1D

    embeddings, output = model.get_input_embeddings(), model.get_output_embeddings()
    tied = (
        isinstance(embeddings, nn.Embedding)
        and output is not None
        and output.weight.data_ptr() == embeddings.weight.data_ptr()
    )
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear | Conv1D):
                setattr(module, name, Int8Linear(_weight_out_in(child), child.bias))
    if tied:
        # The output layer is int8 now; the input side gets the same int8 table.
        model.set_input_embeddings(Int8Embedding(embeddings.weight))
    _own_memory(model)
    return model


def _own_memory(model: Any) -> None:
    """Moves what stays in float (embeddings, layer norms) out of the weights file's
    memory map into the process's own memory, so that the map, and the float weights
    quantizing read through it, can go."""
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.data = tensor.data.clone()


def serving_precision(model: Any, dtype: str = "low") -> Any:
    """The model as a shared serving base. `low`: int8 on the CPU, bf16 on a GPU (where
    the matmuls are fast in half precision and memory is the limit); `int8` or `bf16`
    as named (int8 layers run on the CPU only: a GPU serves bf16 instead); `float32`:
    as it is."""
    on_cpu = model.device.type == "cpu"
    if dtype == "float32":
        return model
    if dtype == "int8" or (dtype == "low" and on_cpu):
        if on_cpu:
            return quantize_int8(model)
        log.warning("int8 serving runs on the CPU only: serving bf16 on %s", model.device)
    return model.to(torch.bfloat16)
