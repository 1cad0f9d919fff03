"""`tsuzuki bench train`: useful (non-padding) tokens/s of Tsuzuki's fine-tune against
the `transformers.Trainer` recipe of the tutorials (one message per example, padded
to max_length), on the same base, the same data and the same number of useful tokens,
with both models' loss on the same held-out messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.benchmarks.fixtures import build_base, demo_texts

# A small GPT-2 (the `scratch:mini` shape), so both sides finish in a few minutes.
SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 256, "n_positions": 512}
USEFUL_TOKENS = 10_000
BATCH = 8
BLOCK = 128
LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class TrainSide:
    useful_tokens: int
    seconds: float
    eval_loss: float

    @property
    def rate(self) -> float:
        return self.useful_tokens / self.seconds


def _split() -> tuple[list[str], list[str]]:
    texts = [t for t in demo_texts() if t.strip()]
    cut = len(texts) - max(1, math.ceil(len(texts) * 0.05))
    return texts[:cut], texts[cut:]


def _baseline(base: Path, train: list[str], held_out: list[str], out: Path) -> TrainSide:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    from bot.training.evaluation import evaluate_texts

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    encoded = tokenizer(
        [t + tokenizer.eos_token for t in train],
        truncation=True,
        max_length=BLOCK,
        padding="max_length",
    )
    examples = [
        {"input_ids": ids, "attention_mask": mask}
        for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)
    ]
    mean_useful = sum(sum(e["attention_mask"]) for e in examples) / len(examples)
    steps = math.ceil(USEFUL_TOKENS / (BATCH * mean_useful))
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=BATCH,
        learning_rate=LEARNING_RATE,
        max_steps=steps,
        warmup_steps=10,
        weight_decay=0.01,
        save_strategy="no",
        report_to=[],
        logging_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=examples,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # Trainer prints its own summary
        trainer.train()
    seconds = time.perf_counter() - started
    loss = evaluate_texts(model, tokenizer, held_out, BLOCK).loss
    return TrainSide(round(steps * BATCH * mean_useful), seconds, loss)


async def _tsuzuki(base: Path, train: list[str], held_out: list[str], out: Path) -> TrainSide:
    from transformers import AutoTokenizer

    from bot.training.dataset import build_dataset
    from bot.training.finetune import FineTune
    from bot.training.run_config import TrainConfig

    tokenizer = AutoTokenizer.from_pretrained(base)

    async def pages() -> Any:
        yield [("", t, "") for t in train]

    # All of `train` goes to train.bin (no held-out share: it is held out above).
    await build_dataset(pages(), len(train), tokenizer, out, 0, _no_eval())
    steps = math.ceil(USEFUL_TOKENS / (BATCH * BLOCK))
    config = TrainConfig(
        method="full",
        max_steps=steps,
        max_epochs=None,
        learning_rate=LEARNING_RATE,
        batch_size=BATCH,
        block_size=BLOCK,
        micro_batch_size=None,
        checkpoint_every=10**9,
    )
    trainer = FineTune(str(base), out, config)
    trainer.setup()
    started = time.perf_counter()
    while not trainer.done:
        trainer.step()
    seconds = time.perf_counter() - started
    return TrainSide(steps * BATCH * BLOCK, seconds, trainer.evaluate(held_out).loss)


def _no_eval() -> Any:
    from bot.training.dataset import DatasetOptions

    return DatasetOptions(eval_fraction=0.0)


def run(workdir: Path, threads: int) -> tuple[TrainSide, TrainSide]:
    import torch

    torch.set_num_threads(threads)
    base = build_base(workdir / "base-mini", shape=SHAPE)
    train, held_out = _split()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = _baseline(base, train, held_out, Path(tmp) / "trainer")
        ours = asyncio.run(_tsuzuki(base, train, held_out, Path(tmp) / "tsuzuki"))
    return baseline, ours


def report(baseline: TrainSide, ours: TrainSide) -> list[str]:
    def line(name: str, side: TrainSide) -> str:
        return (
            f"{name:<28} {side.rate:8.0f} useful tokens/s  ({side.useful_tokens} tokens in "
            f"{side.seconds:.1f}s)  held-out loss {side.eval_loss:.3f}"
        )

    return [
        line("Trainer, padded per message", baseline),
        line("tsuzuki, packed blocks", ours),
        f"{ours.rate / baseline.rate:.2f}x the baseline's useful tokens/s (target ≥ 3x), "
        f"held-out loss {ours.eval_loss - baseline.eval_loss:+.3f} vs the baseline",
    ]
