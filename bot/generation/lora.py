"""Per-row LoRA over one shared base: every row of a batch gets its own channel's adapter.

peft's mixed-adapter batches loop over the adapters in Python, layer by layer; with
eight channels in a batch that loop took about a quarter of the decoding time. Here
each adapted layer keeps all adapters' matrices stacked (slot 0 is "no adapter", all
zeros), and two batched matmuls apply every row's own adapter at once:

    y = base(x) + (x @ A[slot_of_row]) @ B[slot_of_row]      (B already scaled)

Adapters are read from the files training writes (peft's adapter_config.json and
adapter_model.safetensors), so nothing changes on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


class LoRABank:
    """Which adapter each row of the current forward pass uses (shared by all layers)."""

    def __init__(self) -> None:
        # The slot of each row, or one slot for all rows (no gather needed); None: no
        # adapters at all.
        self.rows: torch.Tensor | int | None = None


class BatchedLoRA(nn.Module):  # type: ignore[misc]
    def __init__(self, base: nn.Module, bank: LoRABank, in_features: int, out_features: int):
        super().__init__()
        self.base = base
        self.bank = bank
        # The base may be int8 (no float parameters) or bf16; the adapters stay in
        # float32 either way: their deltas are small next to the base's output and would
        # drown in its rounding.
        # (An int8 layer has no tensors torch can see: it lives on the CPU.)
        weight = next(iter((*base.parameters(), *base.buffers())), None)
        device = weight.device if weight is not None else torch.device("cpu")
        # A transposed, [slots, rank, in], and B, [slots, rank, out]; slot 0 stays zero.
        # A is kept (rank, in) because a matmul against a contiguous (rank, in) matrix
        # (F.linear) took a seventh of the time of one against (in, rank) for a single
        # token on the CPU.
        self.At = torch.zeros((1, 1, in_features), device=device)
        self.B = torch.zeros((1, 1, out_features), device=device)

    def set_slot(self, slot: int, a: torch.Tensor | None, b: torch.Tensor | None) -> None:
        """Stores an adapter's A (in x r) and scaled B (r x out) at `slot` (None: zero)."""
        rank = max(self.At.shape[1], a.shape[1] if a is not None else 0)
        slots = max(self.At.shape[0], slot + 1)
        if rank != self.At.shape[1] or slots != self.At.shape[0]:
            grown_a = self.At.new_zeros((slots, rank, self.At.shape[2]))
            grown_b = self.B.new_zeros((slots, rank, self.B.shape[2]))
            grown_a[: self.At.shape[0], : self.At.shape[1], :] = self.At
            grown_b[: self.B.shape[0], : self.B.shape[1], :] = self.B
            self.At, self.B = grown_a, grown_b
        self.At[slot].zero_()
        self.B[slot].zero_()
        if a is not None and b is not None:
            self.At[slot, : a.shape[1], :] = a.t().to(self.At.dtype)
            self.B[slot, : b.shape[0], :] = b.to(self.B.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.base(x)
        rows = self.bank.rows
        if rows is None or (isinstance(rows, int) and rows == 0):
            return y  # the base alone: slot 0 is all zeros
        x = x.to(self.At.dtype)
        if isinstance(rows, int):
            # One adapter for every row (a lone request, a one-channel batch).
            down = F.linear(x.reshape(-1, x.shape[-1]), self.At[rows])
            if y.dtype == self.B.dtype:
                y.view(-1, y.shape[-1]).addmm_(down, self.B[rows])  # in place: no copy of y
                return y
            delta = (down @ self.B[rows]).view(*y.shape)
        else:
            # x: [batch, tokens, in]; one adapter per batch row.
            delta = torch.bmm(torch.bmm(x, self.At[rows].transpose(1, 2)), self.B[rows])
        return y + delta.to(y.dtype)


def _linear_shape(module: nn.Module) -> tuple[int, int]:
    """(in, out) of an nn.Linear, an Int8Linear or GPT-2's transposed Conv1D."""
    if hasattr(module, "in_features"):
        return module.in_features, module.out_features
    weight = module.weight
    return weight.shape[0], weight.shape[1]  # Conv1D stores (in, out)


class AdapterSet:
    """The adapters attached to one base model, by slot, least recently used out."""

    def __init__(self, model: nn.Module, max_adapters: int) -> None:
        self.model = model
        self.bank = LoRABank()
        self.max_adapters = max_adapters
        self.slots: dict[str, int] = {}  # adapter directory → slot
        self.layers: dict[str, BatchedLoRA] = {}

    def slot(self, directory: str) -> int:
        if directory in self.slots:
            slot = self.slots.pop(directory)
            self.slots[directory] = slot  # most recently used last
            return slot
        if len(self.slots) >= self.max_adapters:
            slot = self.slots.pop(next(iter(self.slots)))  # reuse the least recently used
        else:
            slot = len(self.slots) + 1
        self._load(Path(directory), slot)
        self.slots[directory] = slot
        return slot

    def _load(self, directory: Path, slot: int) -> None:
        from safetensors.torch import load_file

        config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
        scale = config["lora_alpha"] / config["r"]
        weights = load_file(str(directory / "adapter_model.safetensors"))
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in weights.items():
            # base_model.model.<module path>.lora_A.weight
            path, _, kind = key.removeprefix("base_model.model.").rpartition(".lora_")
            pairs.setdefault(path, {})[kind.split(".")[0]] = value
        for path in pairs:
            if path not in self.layers:
                self._wrap(path)
        for path, layer in self.layers.items():
            pair = pairs.get(path)
            if pair is None:
                layer.set_slot(slot, None, None)  # this adapter leaves the layer alone
            else:
                # lora_A.weight is (r, in), lora_B.weight is (out, r).
                layer.set_slot(slot, pair["A"].t(), pair["B"].t() * scale)

    def _wrap(self, path: str) -> None:
        parent_path, _, name = path.rpartition(".")
        parent = self.model.get_submodule(parent_path)
        base = getattr(parent, name)
        in_features, out_features = _linear_shape(base)
        layer = BatchedLoRA(base, self.bank, in_features, out_features)
        setattr(parent, name, layer)
        self.layers[path] = layer
        for existing in self.slots.values():
            layer.set_slot(existing, None, None)

    @property
    def nbytes(self) -> int:
        return sum(
            (layer.At.numel() + layer.B.numel()) * layer.At.element_size()
            for layer in self.layers.values()
        )

    def select(self, slots: list[int]) -> None:
        """The adapter of each row for the next forward pass."""
        if len(set(slots)) == 1:
            self.bank.rows = slots[0]
        else:
            self.bank.rows = torch.tensor(slots, device=self.model.device)
