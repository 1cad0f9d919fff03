"""A resolved model's location on disk, and where a channel's scratch bases live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.generation.spec import ModelSpec


@dataclass(frozen=True)
class ModelSource:
    name: str  # shown to users: "v3", "scratch:tiny", "rinna/japanese-gpt2-xsmall"
    location: str  # the directory of the model, or of a LoRA adapter
    base: str | None = None  # a LoRA adapter's base: the directory of the base model


def scratch_dir(channel_dir: Path, spec: ModelSpec, forget_epoch: int) -> Path:
    """Where the channel's scratch base of `spec` lives after `forget_epoch` forgettings
    (a new directory each time, so nothing loaded from an older one is taken for it)."""
    name = f"scratch-{spec.value}"
    return channel_dir / (name if forget_epoch == 0 else f"{name}.f{forget_epoch}")


def stale_scratch_dirs(channel_dir: Path, forget_epoch: int) -> list[Path]:
    """The channel's scratch bases (of any size, or half-built) fitted before its
    latest forgetting: their tokenizers learnt from forgotten messages."""
    if forget_epoch == 0:
        return []
    current = f".f{forget_epoch}"
    return [
        path
        for path in channel_dir.glob("scratch-*")
        if not path.name.endswith((current, current + ".tmp"))
    ]
