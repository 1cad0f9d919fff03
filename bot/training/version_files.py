"""A model version's folder on disk: written whole (weights, n-gram, metadata, loss
curve) or not at all, and read back for its block size and its figures."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any

from bot.device import Device
from bot.domain import ModelVersionInfo
from bot.generation.bases import ADAPTER_CONFIG
from bot.generation.loading import load_directory
from bot.generation.ngram import Mixture
from bot.training.dataset import DatasetInfo
from bot.training.evaluation import EvalResult, evaluate_texts
from bot.training.finetune import FineTune
from bot.training.live_figure import live_evaluate
from bot.training.markov import MarkovScore
from bot.training.plot import LOSS_CURVE, save_loss_curve
from bot.training.run_config import TrainConfig
from bot.training.voices import METADATA, VoiceFigure, as_metadata


async def write_version(
    device: Device,
    trainer: FineTune,
    final_dir: Path,
    info: ModelVersionInfo,
    dataset: DatasetInfo,
    figures: tuple[EvalResult, EvalResult, MarkovScore],
    base_ref: str,
    mixture: Mixture,
    voices: dict[str, VoiceFigure],
) -> None:
    """Writes a version's folder whole or not at all: weights (or the LoRA adapter,
    pointed at `base_ref`), the channel's n-gram, metadata.json and the loss curve, in
    `vN.tmp`, renamed to `final_dir` once complete."""
    result_eval, start_eval, markov = figures
    tmp = final_dir.with_name(final_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        await device.run(trainer.save_version, tmp)
        await asyncio.to_thread(mixture.save, tmp)
        adapter_config = tmp / ADAPTER_CONFIG
        if adapter_config.is_file():
            config = json.loads(adapter_config.read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = base_ref
            adapter_config.write_text(json.dumps(config, indent=2), encoding="utf-8")
        metadata: dict[str, Any] = {
            "channel": str(info.channel),
            "version": info.version,
            "base_model": info.base_model,
            "start": trainer.start,
            **trainer.metadata(),
            "train_loss": info.train_loss,
            "eval_loss": result_eval.loss,
            "eval_perplexity": result_eval.perplexity,
            "eval_nats_per_char": result_eval.nats_per_char,
            "eval_bits_per_char": result_eval.bits_per_char,
            "markov_bits_per_char": markov.bits_per_char,
            "live_bits_per_char": info.live_bits_per_char,
            "live_markov_bits_per_char": markov.live_bits_per_char,
            "markov_order": markov.order,
            "mixture_weight": mixture.weight,
            "valid_messages": dataset.valid_messages,
            "start_eval_loss": start_eval.loss,
            "messages": dataset.messages,
            "train_messages": dataset.train_messages,
            "eval_messages": dataset.eval_messages,
            "created_at": info.created_at.isoformat(),
            "voices": as_metadata(voices),
        }
        (tmp / METADATA).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        # Rendering takes about half a second: off the event loop, which must keep
        # answering the platforms meanwhile.
        await asyncio.to_thread(
            partial(
                save_loss_curve,
                trainer.state.losses,
                tmp / LOSS_CURVE,
                eval_loss=result_eval.loss,
                start_eval_loss=start_eval.loss,
                valid=trainer.state.valid_losses,
                best_step=trainer.state.best_step,
            )
        )
        # Never over an existing folder (os.replace refuses a non-empty one): the caller
        # picked a number no folder has.
        os.replace(tmp, final_dir)
    except BaseException:
        # A failed write (a full disk) leaves nothing half-written behind.
        await asyncio.to_thread(shutil.rmtree, tmp, True)
        raise


def evaluate_dir(source: str, texts: list[str], block_size: int) -> EvalResult:
    """A version (or base) on the texts, with the n-gram mixture it serves with."""
    loaded = load_directory(Path(source), source)
    mixture = Mixture.load(Path(source))
    return evaluate_texts(loaded.model, loaded.tokenizer, texts, block_size, mixture=mixture)


def live_evaluate_dir(
    source: str, train_texts: list[str], eval_texts: list[str], block_size: int
) -> EvalResult | None:
    """A version's live figure (live_figure.py); None for one without an n-gram."""
    mixture = Mixture.load(Path(source))
    if mixture is None:
        return None
    loaded = load_directory(Path(source), source)
    return live_evaluate(
        loaded.model,
        loaded.tokenizer,
        train_texts,
        eval_texts,
        block_size,
        mixture.weight,
        mixture.ngram.order,
    )


def trained_block_size(version: Path) -> int:
    """The block size a version was trained with: what its figures are measured in."""
    try:
        metadata = json.loads((version / METADATA).read_text(encoding="utf-8"))
        return int(metadata["config"]["block_size"])
    except (OSError, ValueError, KeyError):
        return TrainConfig.block_size
