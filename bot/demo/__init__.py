"""The demo `make run` starts with: a sample channel history written for the project
(Japanese and English chat of a history-and-cooking club) and a short training run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEMO_HISTORY = Path(__file__).parent / "history.jsonl"

# About a minute of training on two CPU cores: enough for the model to pick up the
# channel's words and rhythm, short enough to wait for.
DEMO_TRAINING: dict[str, Any] = {
    "base": "scratch:mini",
    "max_steps": 300,
    "max_minutes": 1.5,
    "batch_size": 16,
    "block_size": 128,
    "learning_rate": 2e-3,
}
