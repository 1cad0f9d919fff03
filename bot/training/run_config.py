"""What one fine-tuning run is told (TrainConfig: every setting a run can be given, with
its default and meaning), what each step reports, and the state a checkpoint keeps."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Method = Literal["lora", "full"]


@dataclass(frozen=True)
class TrainConfig:
    method: Method  # lora: small adapters over a frozen base; full: every weight
    # The run ends at whichever limit comes first. The product's default trains for a
    # time budget (what a CPU affords a channel in a quarter of an hour; the service
    # sets it from TSUZUKI_TRAIN_MAX_MINUTES), stops early on a channel too small to
    # need it, and keeps the step that did best on validation messages.
    max_steps: int = 1_000_000  # optimizer steps
    max_minutes: float | None = None  # stop once this much wall time is spent
    # Stop once this many passes over the training tokens are done: a small channel
    # learns all it can long before a time budget runs out.
    max_epochs: float | None = 60.0
    # Steps between validation checks; the run keeps the weights that scored best on
    # the validation messages, so over-training past that point costs nothing.
    validate_every: int = 100
    # Stop once this many validations in a row found nothing better: the network has
    # begun to memorise the channel instead of learning it (None: never stop early).
    patience: int | None = 5
    learning_rate: float | None = None  # peak; None picks the method's default
    warmup_steps: int = 10  # linear warm-up from 0 to the peak
    min_lr_ratio: float = 0.1  # cosine decay ends at peak * this
    batch_size: int = 8  # blocks per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    block_size: int = 128  # tokens per block (capped by the model's context)
    weight_decay: float = 0.01
    seed: int = 0  # picks the blocks each step sees; same seed, same run
    bf16: bool = False  # autocast to bfloat16 (only where the hardware supports it)
    lora_r: int = 8  # adapter rank
    lora_alpha: int = 16  # adapter scale (alpha / r)
    lora_dropout: float = 0.05
    checkpoint_every: int = 25  # steps between checkpoints
    # Blocks per device job (None: the whole step). Small slices let chat requests in
    # between them; the gradient is the same either way.
    micro_batch_size: int | None = 2

    @property
    def peak_lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-3 if self.method == "lora" else 6e-4

    def lr_at(self, step: int, seconds: float = 0.0) -> float:
        """Warm-up, then cosine decay to min_lr_ratio of the peak. With a time budget
        the decay follows whichever runs out first, steps or time, so a run cut short
        by the clock still ends annealed."""
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        span = max(1, self.max_steps - self.warmup_steps)
        progress = (step - self.warmup_steps) / span
        if self.max_minutes is not None:
            progress = max(progress, seconds / (self.max_minutes * 60))
        progress = min(1.0, progress)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.peak_lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


@dataclass
class StepResult:
    step: int  # steps done so far
    loss: float
    tokens: int  # tokens this step trained on
    seconds: float
    done: float = 0.0  # share of the run done: steps, epochs or time, whichever is nearest its end
    elapsed: float = 0.0  # training seconds so far
    budget: float | None = None  # the run's time budget in seconds, if it has one


@dataclass
class TrainState:
    step: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0  # training time spent, across resumes
    losses: list[float] = field(default_factory=list)
    best_valid: float | None = None  # best validation loss so far (nats per token)
    best_step: int = 0  # the step whose weights scored it
    valid_losses: list[tuple[int, float]] = field(default_factory=list)
