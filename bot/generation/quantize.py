"""int8 weights for CPU serving: dynamic quantization of the linear layers.

Decoding one token at a time on a CPU is bound by reading the weights from memory;
int8 weights are a quarter of fp32's, which made a 124M GPT-2 decode about 3x faster
on the 2-core development machine. Activations stay in float (dynamic quantization),
and the eval-loss change is measured before this is trusted (see `tsuzuki bench
latency`). LoRA adapters need float base layers, so only models served without
adapters are quantized.
"""

from __future__ import annotations

import warnings
from typing import Any


def _conv1d_to_linear(model: Any) -> None:
    """GPT-2 keeps its projections in Conv1D (transposed Linear) modules, which the
    quantizer does not know; swap them for equivalent nn.Linear layers."""
    import torch
    from transformers.pytorch_utils import Conv1D

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Conv1D):
                linear = torch.nn.Linear(child.weight.shape[0], child.weight.shape[1])
                linear.weight.data = child.weight.data.t().contiguous()
                linear.bias.data = child.bias.data
                setattr(module, name, linear)


def quantize_int8(model: Any) -> Any:
    """The model with int8 linear layers (in place where possible); CPU only."""
    import torch

    _conv1d_to_linear(model)
    with warnings.catch_warnings():
        # torch points at torchao for new quantization work; the dynamic API still
        # serves this use as documented.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
