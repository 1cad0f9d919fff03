"""Fine-tuning one channel's model: LoRA over a pretrained base, or a full fine-tune of
a scratch model, one optimizer step at a time.

`FineTune.step()` does one step and returns; the caller (the device worker) decides
what runs between steps, so generation never waits for a whole training run. The run
checkpoints every few steps, and a new FineTune on the same run directory continues
from the last checkpoint instead of starting over.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.training.dataset import load_tokens, read_eval_texts
from bot.training.evaluation import EvalResult, eval_stream, evaluate_texts, token_probs
from bot.training.live_figure import live_evaluate
from bot.training.mixture import fit_mixture
from bot.training.run_config import StepResult, TrainConfig, TrainState
from bot.training.voices import VoiceFigure
from bot.training.voices import measure as measure_voices

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from bot.generation.ngram import Mixture


def bf16_supported() -> bool:
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    # On CPUs without native bf16 instructions autocast is emulated and slower.
    return "AVX512_BF16" in str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")())


class FineTune:
    CHECKPOINT = "checkpoint.pt"

    def __init__(self, start: str, run_dir: Path, config: TrainConfig) -> None:
        self.start = start  # the model training starts from: a directory or hub id
        self.run_dir = run_dir  # dataset, checkpoint and logs of this run
        self.config = config
        self.state = TrainState()
        self.model: PreTrainedModel
        self.tokenizer: PreTrainedTokenizerBase
        self._optimizer: Any = None
        self._tokens: np.ndarray = np.zeros(0, dtype=np.uint32)
        self.block_size = 0
        self._slices: list[np.ndarray] = []  # what is left of the current step
        self._step_rows, self._step_loss, self._step_seconds = 0, 0.0, 0.0
        self._valid: np.ndarray = np.zeros(0, dtype=np.int64)  # validation token stream
        self._best: dict[str, Any] | None = None  # trainable weights of the best step
        # Called between layers, forward and backward (the device's serve_waiting): a
        # chat request waits for one layer of training, not a whole slice.
        self.yield_to: Callable[[], None] | None = None
        self._paused_s = 0.0  # time spent serving from inside training, not training

    # --- set-up ----------------------------------------------------------------------

    def setup(self) -> bool:
        """Loads the model and data; returns True when it resumed from a checkpoint."""
        import torch

        from bot.generation.loading import context_length, load_trainable

        torch.manual_seed(self.config.seed)
        model, self.tokenizer = load_trainable(self.start)
        if self.config.method == "lora" and not _is_peft(model):
            model = _with_lora(model, self.config)
        self.model = model
        self.model.train()
        self._install_yield_points()
        self._tokens = load_tokens(self.run_dir / "train.bin")
        if len(self._tokens) < 2:
            raise ValueError("not enough history to train on")
        valid_texts = read_eval_texts(self.run_dir, "valid")
        if valid_texts:
            self._valid = eval_stream(self.tokenizer, valid_texts)
        limit = min(self.config.block_size, context_length(model, self.tokenizer))
        self.block_size = min(limit, len(self._tokens) - 1)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self._optimizer = torch.optim.AdamW(
            params,
            lr=self.config.peak_lr,
            weight_decay=self.config.weight_decay,
            betas=(0.9, 0.95),
        )
        return self._load_checkpoint()

    def _install_yield_points(self) -> None:
        """Hooks before each transformer block's forward and backward pass that let
        waiting chat requests run (about 1/12 of a slice apart for a 12-layer model)."""
        import torch

        blocks = max(
            (m for m in self.model.modules() if isinstance(m, torch.nn.ModuleList)),
            key=len,
            default=None,
        )
        if blocks is None:
            return

        def before_backward(_grad: torch.Tensor) -> None:
            self._pause()

        def after_forward(_module: Any, _args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            # A hook on the block's output fires as the backward pass reaches the block
            # (a module backward hook would warn when, as with LoRA, the block's inputs
            # need no gradient).
            if isinstance(hidden, torch.Tensor) and hidden.requires_grad:
                hidden.register_hook(before_backward)

        for block in blocks:
            block.register_forward_pre_hook(lambda *_: self._pause())
            block.register_forward_hook(after_forward)

    def _pause(self) -> None:
        if self.yield_to is None:
            return
        import torch

        started = time.perf_counter()
        # Serving must not run under training's autocast (bf16 would change its numbers).
        with torch.autocast(self.model.device.type, enabled=False):
            self.yield_to()
        self._paused_s += time.perf_counter() - started

    @property
    def done(self) -> bool:
        if self.state.step >= self.config.max_steps:
            return True
        epochs = self.config.max_epochs
        if epochs is not None and self.state.tokens_seen >= epochs * len(self._tokens):
            return True
        patience = self.config.patience
        if patience is not None and self.state.best_valid is not None:
            since_best = self.state.step - self.state.best_step
            if since_best >= patience * self.config.validate_every:
                return True
        budget = self.config.max_minutes
        return budget is not None and self.state.seconds >= budget * 60

    # --- one step --------------------------------------------------------------------

    def work(self) -> StepResult | None:
        """One slice of the current step: `micro_batch_size` blocks forward and
        backward. The step's last slice also updates the weights and returns the
        step's result; other slices return None. Slices are separate device jobs, so a
        chat request waits for at most one slice, not a whole step."""
        import torch

        cfg = self.config
        if not self._slices:
            # 1. Blocks for this step, chosen by (seed, step): a resumed run sees the
            #    same data it would have seen without the interruption.
            rng = np.random.default_rng([cfg.seed, self.state.step])
            blocks = np.concatenate([self._batch(rng) for _ in range(cfg.grad_accum)])
            size = cfg.micro_batch_size or len(blocks)
            self._slices = [blocks[i : i + size] for i in range(0, len(blocks), size)]
            self._step_rows, self._step_loss, self._step_seconds = len(blocks), 0.0, 0.0
        started, paused = time.perf_counter(), self._paused_s
        batch = self._slices.pop(0)
        device = self.model.device
        x = torch.from_numpy(batch[:, :-1].astype(np.int64)).to(device)
        y = torch.from_numpy(batch[:, 1:].astype(np.int64)).to(device)
        # 2. Forward and backward; each slice's loss is weighted by its share of the
        #    step's blocks, so the accumulated gradient is that of the step's mean.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = self.model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), y.reshape(-1)
        )
        share = len(batch) / self._step_rows
        (loss * share).backward()
        self._step_loss += float(loss.detach()) * share
        self._step_seconds += time.perf_counter() - started - (self._paused_s - paused)
        if self._slices:
            return None

        # 3. The step's last slice: clip and update at this step's learning rate.
        started = time.perf_counter()
        for group in self._optimizer.param_groups:
            group["lr"] = cfg.lr_at(self.state.step, self.state.seconds)
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        seconds = self._step_seconds + time.perf_counter() - started
        tokens = self._step_rows * self.block_size
        self.state.step += 1
        self.state.tokens_seen += tokens
        self.state.seconds += seconds
        self.state.losses.append(self._step_loss)
        if self.state.step % cfg.validate_every == 0 and not self.done:
            self.validate()
        if self.state.step % cfg.checkpoint_every == 0 and not self.done:
            self.save_checkpoint()
        return StepResult(
            self.state.step,
            self._step_loss,
            tokens,
            seconds,
            done=self.share_done(),
            elapsed=self.state.seconds,
            budget=None if cfg.max_minutes is None else cfg.max_minutes * 60,
        )

    def share_done(self) -> float:
        cfg, state = self.config, self.state
        shares = [state.step / max(1, cfg.max_steps)]
        if cfg.max_epochs is not None and len(self._tokens):
            shares.append(state.tokens_seen / (cfg.max_epochs * len(self._tokens)))
        if cfg.max_minutes is not None:
            shares.append(state.seconds / (cfg.max_minutes * 60))
        return min(1.0, max(shares))

    def step(self) -> StepResult:
        """One whole optimizer step (all of its slices)."""
        while (result := self.work()) is None:
            pass
        return result

    def _batch(self, rng: np.random.Generator) -> np.ndarray:
        span = self.block_size + 1
        starts = rng.integers(0, len(self._tokens) - span + 1, size=self.config.batch_size)
        return np.stack([np.asarray(self._tokens[s : s + span]) for s in starts])

    # --- validation -------------------------------------------------------------------

    def validate(self) -> None:
        """Scores the validation messages; remembers these weights if they are the best
        so far. (Counted as training time: it is part of what the budget buys.)"""
        if len(self._valid) < 2:
            return
        started = time.perf_counter()
        probs = token_probs(self.model, self._valid, self.block_size)
        loss = float(-np.log(np.maximum(probs, 1e-300)).mean())
        self.state.valid_losses.append((self.state.step, loss))
        if math.isfinite(loss) and (self.state.best_valid is None or loss < self.state.best_valid):
            self.state.best_valid, self.state.best_step = loss, self.state.step
            self._best = self._trainable()
        self.state.seconds += time.perf_counter() - started

    def finish(self) -> None:
        """The end of the run: a last validation, then the best weights seen."""
        import torch

        self.validate()
        if self._best is not None and self.state.best_step != self.state.step:
            params = dict(self.model.named_parameters())
            with torch.no_grad():
                for name, value in self._best.items():
                    params[name].copy_(value)

    def _trainable(self) -> dict[str, Any]:
        return {
            n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad
        }

    # --- evaluation and output ------------------------------------------------------

    def evaluate(self, texts: list[str], mixture: Mixture | None = None) -> EvalResult:
        return evaluate_texts(self.model, self.tokenizer, texts, self.block_size, mixture=mixture)

    def voice_figures(
        self, texts: list[str], mixture: Mixture | None = None
    ) -> dict[str, VoiceFigure]:
        return measure_voices(texts, self.model, self.tokenizer, self.block_size, mixture)

    def live_evaluate(
        self, eval_texts: list[str], train_texts: list[str], mixture: Mixture
    ) -> EvalResult:
        return live_evaluate(
            self.model,
            self.tokenizer,
            train_texts,
            eval_texts,
            self.block_size,
            mixture.weight,
            mixture.ngram.order,
        )

    def fit_mixture(self) -> Mixture:
        return fit_mixture(self.model, np.asarray(self._tokens), self._valid, self.block_size)

    def save_version(self, directory: Path) -> None:
        """Weights (or the adapter), tokenizer and config; safetensors only."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)

    # --- checkpoints -----------------------------------------------------------------

    def save_checkpoint(self) -> None:
        import torch

        trainable = {
            n: p.detach().cpu() for n, p in self.model.named_parameters() if p.requires_grad
        }
        payload = {
            "state": asdict(self.state),
            "config": asdict(self.config),
            "trainable": trainable,
            "best": self._best,
            "optimizer": self._optimizer.state_dict(),
        }
        path = self.run_dir / self.CHECKPOINT
        # A kill during the save leaves the previous checkpoint intact; and the temporary
        # file is this process's own, so two processes saving into one run directory (a
        # job taken over from an owner that was only slow) never write or move each
        # other's half-written file.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _load_checkpoint(self) -> bool:
        import torch

        path = self.run_dir / self.CHECKPOINT
        if not path.is_file():
            return False
        payload = torch.load(path, map_location=self.model.device, weights_only=False)
        if payload["config"] != asdict(self.config):
            return False  # a different run; start this one afresh
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in payload["trainable"].items():
                params[name].copy_(value)
        self._optimizer.load_state_dict(payload["optimizer"])
        state = payload["state"]
        state["valid_losses"] = [tuple(x) for x in state.get("valid_losses", [])]
        self.state = TrainState(**state)
        self._best = payload.get("best")
        return True

    def metadata(self) -> dict[str, Any]:
        return {
            "method": self.config.method,
            "steps": self.state.step,
            "tokens_seen": self.state.tokens_seen,
            "train_seconds": round(self.state.seconds, 2),
            "best_step": self.state.best_step,
            "best_valid_loss": self.state.best_valid,
            "config": asdict(self.config),
        }


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")


def _with_lora(model: PreTrainedModel, config: TrainConfig) -> PreTrainedModel:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        # GPT-2 stores its projections transposed (Conv1D); peft knows which modules
        # to adapt in GPT-2 and most causal LMs.
        fan_in_fan_out=getattr(model.config, "model_type", "") == "gpt2",
    )
    return get_peft_model(model, lora)
