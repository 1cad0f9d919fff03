"""What a base model spec names: a hub id, a local directory, or a scratch GPT-2."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot import messages as M
from bot.errors import UserError


@dataclass(frozen=True)
class ScratchSize:
    """The shape of a GPT-2 built from its config, with no pretrained weights."""

    n_layer: int  # transformer blocks
    n_head: int  # attention heads per block
    n_embd: int  # width of the residual stream
    n_positions: int  # context length in tokens
    vocab_size: int  # upper bound for the BPE trained on the channel's history


SCRATCH_SIZES: dict[str, ScratchSize] = {
    # For tests and demos: trains in seconds on a CPU.
    "tiny": ScratchSize(n_layer=2, n_head=2, n_embd=64, n_positions=256, vocab_size=4000),
    # Small enough to train on a laptop in minutes, big enough to pick up a voice.
    "mini": ScratchSize(n_layer=4, n_head=4, n_embd=256, n_positions=512, vocab_size=8000),
    # The GPT-2 124M shape.
    "small": ScratchSize(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257),
}


@dataclass(frozen=True)
class ModelSpec:
    kind: Literal["hub", "local", "scratch"]
    value: str  # hub id, directory, or scratch size name

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        text = text.strip()
        if text == "scratch" or text.startswith("scratch:"):
            size = text.partition(":")[2] or "tiny"
            if size not in SCRATCH_SIZES:
                raise UserError(
                    M.t("scratch_size_unknown", size=size, sizes=", ".join(SCRATCH_SIZES))
                )
            return cls("scratch", size)
        path = Path(text).expanduser()
        # A directory wins over a hub id of the same spelling; "./x" and "/x" are
        # always paths, so a typo there is not sent to the hub.
        if path.is_dir() or text.startswith((".", "/", "~")):
            return cls("local", str(path.resolve()))
        return cls("hub", text)

    def __str__(self) -> str:
        return f"scratch:{self.value}" if self.kind == "scratch" else self.value

    @property
    def scratch_size(self) -> ScratchSize:
        return SCRATCH_SIZES[self.value]
