"""One training run for a channel, end to end: consent, dataset, fine-tune step by step
on the device worker, evaluation, a new version on disk, promotion, clean-up.

Nothing becomes active half-way: the version directory appears (by rename) only when
complete, it is registered as a candidate, and only then, if its held-out loss is no
worse than the active version's, is it promoted in one transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot import messages as M
from bot.config import Settings
from bot.domain import ChannelRef, ModelVersionInfo
from bot.engine.worker import DeviceWorker, Priority
from bot.errors import UserError
from bot.generation.bases import ADAPTER_CONFIG
from bot.generation.loading import load_directory, load_tokenizer
from bot.generation.ngram import Mixture
from bot.generation.resolver import ModelResolver
from bot.generation.spec import ModelSpec
from bot.ports import ChannelStore, MessageStore, ModelRegistry
from bot.training.dataset import DatasetInfo, DatasetOptions, build_dataset, read_eval_texts
from bot.training.evaluation import EvalResult, evaluate_texts
from bot.training.finetune import FineTune, Method, StepResult, TrainConfig, bf16_supported
from bot.training.markov import MarkovScore, markov_baseline
from bot.training.plot import save_loss_curve

log = logging.getLogger(__name__)

MIN_MESSAGES = 2  # one to train on, one to evaluate with
RUN_DIR = "run"  # the interrupted-or-running run of a channel, resumed on restart

ProgressFn = Callable[[StepResult, int], None]


@dataclass(frozen=True)
class TrainOptions:
    base: str | None = None  # base model spec; None: TSUZUKI_BASE_MODEL
    method: Method | None = None  # None: lora for pretrained bases, full for scratch
    # The run ends at whichever limit comes first. The defaults train for a time budget
    # (what a CPU affords a channel in a quarter of an hour), stop early on a channel
    # too small to need it, and keep the step that did best on validation messages.
    max_steps: int = 1_000_000
    max_minutes: float | None = None  # None: TSUZUKI_TRAIN_MAX_MINUTES
    max_epochs: float | None = 60.0
    learning_rate: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    block_size: int = 128
    seed: int = 0
    bf16: bool | None = None  # None: when the hardware supports it
    checkpoint_every: int = 25  # steps between checkpoints
    resume: bool = True  # continue an interrupted run of the same settings


@dataclass(frozen=True)
class TrainOutcome:
    version: ModelVersionInfo
    promoted: bool
    reason: str
    eval: EvalResult  # the new version on the held-out messages
    start_eval: EvalResult  # the model training started from, on the same messages
    dataset: DatasetInfo
    resumed_at_step: int  # 0 for a fresh run
    tokens_per_second: float


class TrainingService:
    def __init__(
        self,
        settings: Settings,
        channels: ChannelStore,
        messages: MessageStore,
        registry: ModelRegistry,
        resolver: ModelResolver,
        worker: DeviceWorker,
    ) -> None:
        self.settings = settings
        self.channels = channels
        self.messages = messages
        self.registry = registry
        self.resolver = resolver
        self.worker = worker
        self._running: set[ChannelRef] = set()

    async def train(
        self,
        ref: ChannelRef,
        options: TrainOptions = TrainOptions(),
        progress: ProgressFn | None = None,
    ) -> TrainOutcome:
        channel = await self.channels.get(ref)
        if channel is None or not channel.training_enabled:
            raise UserError(M.t("training_disabled", channel=ref))
        if ref in self._running:
            raise UserError(M.t("training_busy", channel=ref))
        self._running.add(ref)
        try:
            return await self._train(ref, options, progress)
        finally:
            self._running.discard(ref)

    async def _train(
        self, ref: ChannelRef, options: TrainOptions, progress: ProgressFn | None
    ) -> TrainOutcome:
        base = ModelSpec.parse(options.base or self.settings.base_model)
        method: Method = options.method or ("full" if base.kind == "scratch" else "lora")
        config = TrainConfig(
            method=method,
            max_steps=options.max_steps,
            max_minutes=options.max_minutes or self.settings.train_max_minutes,
            max_epochs=options.max_epochs,
            learning_rate=options.learning_rate,
            batch_size=options.batch_size,
            grad_accum=options.grad_accum,
            block_size=options.block_size,
            seed=options.seed,
            checkpoint_every=options.checkpoint_every,
            bf16=bf16_supported() if options.bf16 is None else options.bf16,
        )
        start = await self._start_source(ref, base, method)
        channel_dir = self.settings.models_dir / ref.slug
        run_dir = channel_dir / RUN_DIR
        run_key = {"base": str(base), "start": start, "config": asdict(config)}
        if not (options.resume and _same_run(run_dir, run_key)):
            shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps(run_key), encoding="utf-8")

        # 1. The dataset: written once per run, reused when the run resumes; and the
        #    yardstick, the channel's own Markov chain on the same held-out messages.
        dataset = await self._dataset(ref, start, run_dir)
        eval_texts = read_eval_texts(run_dir)
        markov = await self._markov(run_dir, eval_texts)

        # 2. Where we start: the model before training, on the held-out messages.
        start_eval = await self.worker.run(_evaluate_dir, start, eval_texts, options.block_size)

        # 3. Fine-tune, one step per device-worker job, so requests queued meanwhile run
        #    between steps rather than after the whole run.
        trainer = FineTune(start, run_dir, config)
        resumed = await self.worker.run(trainer.setup)
        resumed_at = trainer.state.step if resumed else 0
        if resumed:
            log.info("%s: resuming training at step %d", ref, resumed_at)
        while not trainer.done:
            result = await self.worker.run(trainer.work, priority=Priority.TRAINING)
            if result is None:
                continue
            self.worker.metrics.train_step.observe(result.seconds)
            if progress is not None:
                progress(result, config.max_steps)
        # 4. The best weights the validation messages saw, the channel's n-gram mixed
        #    in (its weight chosen on the validation messages), then the figure.
        await self.worker.run(trainer.finish)
        mixture = await self.worker.run(trainer.fit_mixture)
        result_eval = await self.worker.run(trainer.evaluate, eval_texts, mixture)

        # 5. The new version: complete on disk before anyone can see it.
        version = await self.registry.next_version(ref)
        final_dir = channel_dir / f"v{version}"
        info = ModelVersionInfo(
            channel=ref,
            version=version,
            base_model=str(base),
            method=method,
            path=str(final_dir),
            status="candidate",
            created_at=datetime.now(UTC),
            train_loss=_tail_mean(trainer.state.losses),
            eval_loss=result_eval.loss,
            eval_perplexity=result_eval.perplexity,
            tokens_seen=trainer.state.tokens_seen,
            last_message_id=dataset.max_message_id,
            eval_bits_per_char=_finite(result_eval.bits_per_char),
            markov_bits_per_char=markov.bits_per_char,
        )
        # A LoRA adapter names its base by spec (a hub id rather than a path into one
        # machine's hub cache), so the version loads wherever that base is found; a
        # scratch base by its directory (it belongs to this channel).
        base_ref = str(base)
        if base.kind == "scratch":
            base_ref = str(await self.resolver.scratch_base(ref, base))
        await self._write_version(
            trainer, final_dir, info, dataset, (result_eval, start_eval, markov), base_ref, mixture
        )
        await self.registry.add(info)

        # 6. Promotion: no worse than the active version on today's held-out messages.
        promoted, reason = await self._promote(
            ref, info, result_eval, (start, start_eval), eval_texts, options.block_size
        )
        await self._prune(ref)
        shutil.rmtree(run_dir, ignore_errors=True)
        seconds = max(trainer.state.seconds, 1e-9)
        return TrainOutcome(
            version=replace(
                info, status="active" if promoted else "candidate", note=reason or None
            ),
            promoted=promoted,
            reason=reason,
            eval=result_eval,
            start_eval=start_eval,
            dataset=dataset,
            resumed_at_step=resumed_at,
            tokens_per_second=trainer.state.tokens_seen / seconds,
        )

    async def _start_source(self, ref: ChannelRef, base: ModelSpec, method: Method) -> str:
        """The directory training starts from: the active version when it grew from the
        same base by the same method (so nightly runs build on last night's), else the
        base itself, resolved like every base (ModelResolver.base_dir)."""
        active = await self.registry.active(ref)
        if active and active.base_model == str(base) and active.method == method:
            return active.path
        return str(await self.resolver.base_dir(ref, base))

    async def _dataset(self, ref: ChannelRef, start: str, run_dir: Path) -> DatasetInfo:
        if (run_dir / "dataset.json").is_file():
            return DatasetInfo.load(run_dir / "dataset.json")
        total, max_id = await self.messages.training_snapshot(ref)
        if total < MIN_MESSAGES:
            raise UserError(
                M.t("training_not_enough", channel=ref, messages=total, needed=MIN_MESSAGES)
            )
        # Loaded on the device worker, like every model and tokenizer: one thread
        # imports and loads, so the libraries' lazy imports never race.
        tokenizer = await self.worker.run(load_tokenizer, Path(start))
        pages = self.messages.iter_training_texts(ref, max_id)
        options = DatasetOptions(author_prefix=self.settings.train_author_prefix)
        info = await build_dataset(pages, total, tokenizer, run_dir, max_id, options)
        if info.train_tokens < 2 or info.eval_messages < 1:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise UserError(
                M.t("training_not_enough", channel=ref, messages=info.messages, needed=MIN_MESSAGES)
            )
        return info

    async def evaluate_active(self, ref: ChannelRef) -> ModelVersionInfo:
        """Measures the active version and the channel's Markov chain again, on the
        channel's newest messages as they are now, and records both."""
        active = await self.registry.active(ref)
        if active is None:
            raise UserError(M.t("no_active_version", channel=ref))
        work_dir = self.settings.models_dir / ref.slug / f"eval-{os.getpid()}"
        shutil.rmtree(work_dir, ignore_errors=True)
        try:
            await self._dataset(ref, active.path, work_dir)
            eval_texts = read_eval_texts(work_dir)
            markov = await self._markov(work_dir, eval_texts)
            block_size = _trained_block_size(Path(active.path))
            result = await self.worker.run(_evaluate_dir, active.path, eval_texts, block_size)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        bits = _finite(result.bits_per_char)
        await self.registry.set_quality(ref, active.version, bits, markov.bits_per_char)
        return replace(active, eval_bits_per_char=bits, markov_bits_per_char=markov.bits_per_char)

    async def _markov(self, run_dir: Path, eval_texts: list[str]) -> MarkovScore:
        """The channel's Markov chain on the held-out messages (kept with the run, so a
        resumed run does not fit it again). Pure Python, so it runs off the event loop
        and off the device."""
        path = run_dir / "markov.json"
        if path.is_file():
            return MarkovScore(**json.loads(path.read_text(encoding="utf-8")))
        train_texts = read_eval_texts(run_dir, "train")
        score = await asyncio.to_thread(markov_baseline, train_texts, eval_texts)
        path.write_text(json.dumps(asdict(score)), encoding="utf-8")
        return score

    async def _write_version(
        self,
        trainer: FineTune,
        final_dir: Path,
        info: ModelVersionInfo,
        dataset: DatasetInfo,
        figures: tuple[EvalResult, EvalResult, MarkovScore],
        base_ref: str,
        mixture: Mixture,
    ) -> None:
        result_eval, start_eval, markov = figures
        tmp = final_dir.with_name(final_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        await self.worker.run(trainer.save_version, tmp)
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
            "markov_order": markov.order,
            "mixture_weight": mixture.weight,
            "valid_messages": dataset.valid_messages,
            "start_eval_loss": start_eval.loss,
            "messages": dataset.messages,
            "train_messages": dataset.train_messages,
            "eval_messages": dataset.eval_messages,
            "created_at": info.created_at.isoformat(),
        }
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        save_loss_curve(
            trainer.state.losses,
            tmp / "loss.png",
            eval_loss=result_eval.loss,
            start_eval_loss=start_eval.loss,
            valid=trainer.state.valid_losses,
            best_step=trainer.state.best_step,
        )
        shutil.rmtree(final_dir, ignore_errors=True)  # a leftover of a crashed registration
        os.replace(tmp, final_dir)

    async def _promote(
        self,
        ref: ChannelRef,
        info: ModelVersionInfo,
        result_eval: EvalResult,
        start: tuple[str, EvalResult],
        eval_texts: list[str],
        block_size: int,
    ) -> tuple[bool, str]:
        active = await self.registry.active(ref)
        if active is not None:
            if active.path == start[0]:
                active_eval = start[1]  # already measured on these messages
            else:
                active_eval = await self.worker.run(
                    _evaluate_dir, active.path, eval_texts, block_size
                )
            # `not <=` rather than `>`, so a diverged (NaN) version is never promoted.
            if not result_eval.nats_per_char <= active_eval.nats_per_char:
                reason = M.t(
                    "not_promoted_reason",
                    new=result_eval.nats_per_char,
                    old=active_eval.nats_per_char,
                    active=active.version,
                )
                await self.registry.set_note(ref, info.version, reason)
                return False, reason
        await self.registry.activate(ref, info.version, actor="training")
        return True, ""

    async def _prune(self, ref: ChannelRef) -> None:
        """Deletes the oldest versions beyond the configured count, never the active
        one (files first: a row without files would be worse than files without a row)."""
        versions = await self.registry.versions(ref)
        keep = self.settings.keep_versions
        removable = [v for v in versions if v.status != "active"]
        excess = len(versions) - keep
        for v in removable[: max(0, excess)]:
            shutil.rmtree(v.path, ignore_errors=True)
            await self.registry.remove(ref, v.version)


def _same_run(run_dir: Path, key: dict[str, Any]) -> bool:
    try:
        return bool(json.loads((run_dir / "run.json").read_text(encoding="utf-8")) == key)
    except (OSError, ValueError):
        return False


def _evaluate_dir(source: str, texts: list[str], block_size: int) -> EvalResult:
    """A version (or base) on the texts, with the n-gram mixture it serves with."""
    loaded = load_directory(Path(source), source)
    mixture = Mixture.load(Path(source))
    return evaluate_texts(loaded.model, loaded.tokenizer, texts, block_size, mixture=mixture)


def _trained_block_size(version: Path) -> int:
    """The block size a version was trained with: what its figures are measured in."""
    try:
        metadata = json.loads((version / "metadata.json").read_text(encoding="utf-8"))
        return int(metadata["config"]["block_size"])
    except (OSError, ValueError, KeyError):
        return TrainOptions.block_size


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _tail_mean(losses: list[float], n: int = 10) -> float | None:
    tail = losses[-n:]
    return sum(tail) / len(tail) if tail else None
