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
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot import messages as M
from bot.config import Settings
from bot.device import Device, Priority
from bot.domain import ChannelRef, ModelVersionInfo, voice_tag
from bot.engine.resolver import ModelResolver
from bot.errors import UserError
from bot.generation.banned import BannedWords
from bot.generation.loading import load_tokenizer
from bot.generation.source import stale_scratch_dirs
from bot.generation.spec import ModelSpec
from bot.outages import doing
from bot.ports import ChannelStore, MessageStore, ModelRegistry
from bot.records import TrainingText
from bot.setting_specs import ChannelOptions
from bot.statuses import VersionStatus
from bot.training.dataset import DatasetInfo, DatasetOptions, build_dataset, read_eval_texts
from bot.training.evaluation import EvalResult
from bot.training.finetune import FineTune, bf16_supported
from bot.training.markov import MarkovScore, markov_baseline
from bot.training.outcome import DataForgotten, ProgressFn, TrainOptions, TrainOutcome
from bot.training.run_config import Method, TrainConfig
from bot.training.version_files import (
    evaluate_dir,
    live_evaluate_dir,
    trained_block_size,
    write_version,
)

log = logging.getLogger(__name__)

MIN_MESSAGES = 2  # one to train on, one to evaluate with
RUN_DIR = "run"  # the interrupted-or-running run of a channel, resumed on restart


class TrainingService:
    def __init__(
        self,
        settings: Settings,
        channels: ChannelStore,
        messages: MessageStore,
        registry: ModelRegistry,
        resolver: ModelResolver,
        worker: Device,
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
            try:
                return await self._train(ref, options, progress)
            except DataForgotten:
                # Once more, on the data as it is now (and from the base, if the
                # version it started from was trained on the forgotten messages).
                log.info("%s: messages were forgotten during the run; starting over", ref)
                return await self._train(ref, options, progress)
        finally:
            self._running.discard(ref)

    async def _train(
        self, ref: ChannelRef, options: TrainOptions, progress: ProgressFn | None
    ) -> TrainOutcome:
        base = ModelSpec.parse(options.base or self.settings.base_model)
        method: Method = options.changes.get("method") or (
            "full" if base.kind == "scratch" else "lora"
        )
        # The run's settings: TrainConfig's defaults, what this machine and the
        # settings decide, then what the run asked for. Asking torch about the device
        # imports it (a second or more, the first time): on the device worker, never
        # on the event loop.
        bf16 = self.settings.train_bf16 == "on" or (
            self.settings.train_bf16 == "auto" and await self.worker.run(bf16_supported)
        )
        config = replace(
            TrainConfig(method=method, max_minutes=self.settings.train_max_minutes, bf16=bf16),
            **{k: v for k, v in options.changes.items() if k != "method"},
        )
        # Read before anything else the run uses (its start, its data): a member's
        # messages forgotten after this point void the run (see registry.add).
        forget_epoch = await self.registry.forget_epoch(ref)
        start = await self._start_source(ref, base, method)
        channel_dir = self.settings.models_dir / ref.slug
        run_dir = channel_dir / RUN_DIR
        run_key = {
            "base": str(base),
            "start": start,
            "config": asdict(config),
            "forget_epoch": forget_epoch,
        }
        if not (options.resume and _same_run(run_dir, run_key)):
            shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps(run_key), encoding="utf-8")

        # 1. The dataset: written once per run, reused when the run resumes; and the
        #    yardstick, the channel's own Markov chain on the same held-out messages.
        with doing(M.t("doing_writing_dataset"), run_dir):
            dataset = await self._dataset(ref, start, run_dir)
        eval_texts = read_eval_texts(run_dir)
        markov = await self._markov(run_dir, eval_texts)

        # 2. Where we start: the model before training, on the held-out messages.
        start_eval = await self.worker.run(evaluate_dir, start, eval_texts, config.block_size)

        # 3. Fine-tune, one step per device-worker job, so requests queued meanwhile run
        #    between steps rather than after the whole run.
        trainer = FineTune(start, run_dir, config)
        trainer.yield_to = self.worker.serve_waiting
        resumed = await self.worker.run(trainer.setup)
        resumed_at = trainer.state.step if resumed else 0
        if resumed:
            log.info("%s: resuming training at step %d", ref, resumed_at)
        while not trainer.done:
            with doing(M.t("doing_checkpoint"), run_dir):
                result = await self.worker.run(trainer.work, priority=Priority.TRAINING)
            if result is None:
                continue
            self.worker.record_training_step(result.seconds)
            if progress is not None:
                progress(result, config.max_steps)
        # 4. The best weights the validation messages saw, the channel's n-gram mixed
        #    in (its weight chosen on the validation messages), then the figure.
        await self.worker.run(trainer.finish)
        mixture = await self.worker.run(trainer.fit_mixture)
        result_eval = await self.worker.run(trainer.evaluate, eval_texts, mixture)
        train_texts = read_eval_texts(run_dir, "train")
        live_eval = await self.worker.run(trainer.live_evaluate, eval_texts, train_texts, mixture)
        voices = await self.worker.run(trainer.voice_figures, eval_texts, mixture)
        for tag, figure in voices.items():
            log.info(
                "%s: voice %s on %d held-out messages: %.3f bits/char, the channel %.3f",
                ref,
                tag,
                figure.messages,
                figure.bits_as_voice,
                figure.bits_as_channel,
            )

        # 5. The new version: complete on disk before anyone can see it.
        version = await self.registry.next_version(ref)
        # A folder the registry does not know (a database restored from an older
        # backup, a registration that crashed) is never written over: it may be the
        # only copy of a version. The next free number is used instead.
        while (channel_dir / f"v{version}").exists():
            log.warning("%s: %s has no row in the database; left as it is", ref, f"v{version}")
            version += 1
        final_dir = channel_dir / f"v{version}"
        info = ModelVersionInfo(
            channel=ref,
            version=version,
            base_model=str(base),
            method=method,
            path=str(final_dir),
            status=VersionStatus.CANDIDATE,
            created_at=datetime.now(UTC),
            train_loss=_tail_mean(trainer.state.losses),
            eval_loss=result_eval.loss,
            eval_perplexity=result_eval.perplexity,
            tokens_seen=trainer.state.tokens_seen,
            last_message_id=dataset.max_message_id,
            eval_bits_per_char=_finite(result_eval.bits_per_char),
            markov_bits_per_char=markov.bits_per_char,
            live_bits_per_char=_finite(live_eval.bits_per_char),
            live_markov_bits_per_char=markov.live_bits_per_char,
        )
        # A LoRA adapter names its base by spec (a hub id rather than a path into one
        # machine's hub cache), so the version loads wherever that base is found; a
        # scratch base by its directory (it belongs to this channel).
        base_ref = str(base)
        if base.kind == "scratch":
            base_ref = str(await self.resolver.scratch_base(ref, base))
        with doing(M.t("doing_saving_version", version=version), final_dir):
            await write_version(
                self.worker,
                trainer,
                final_dir,
                info,
                dataset,
                (result_eval, start_eval, markov),
                base_ref,
                mixture,
                voices,
            )
        if not await self.registry.add(info, forget_epoch=forget_epoch):
            shutil.rmtree(final_dir, ignore_errors=True)
            shutil.rmtree(run_dir, ignore_errors=True)
            raise DataForgotten(M.t("training_forgotten", channel=ref))

        # 6. Promotion: no worse than the active version on today's held-out messages.
        promoted, reason, previous = await self._promote(
            ref, info, result_eval, (start, start_eval), eval_texts, config.block_size
        )
        await self._prune(ref)
        await self.delete_forgotten()
        shutil.rmtree(run_dir, ignore_errors=True)
        seconds = max(trainer.state.seconds, 1e-9)
        return TrainOutcome(
            version=replace(
                info,
                status=VersionStatus.ACTIVE if promoted else VersionStatus.CANDIDATE,
                note=reason or None,
            ),
            promoted=promoted,
            reason=reason,
            eval=result_eval,
            start_eval=start_eval,
            dataset=dataset,
            resumed_at_step=resumed_at,
            tokens_per_second=trainer.state.tokens_seen / seconds,
            previous_version=previous[0] if previous else None,
            previous_bits_per_char=_finite(previous[1].bits_per_char) if previous else None,
        )

    async def _start_source(self, ref: ChannelRef, base: ModelSpec, method: Method) -> str:
        """The directory training starts from: the active version when it grew from the
        same base by the same method (so nightly runs build on last night's), else the
        base itself, resolved like every base (ModelResolver.base_dir). A version trained
        on messages a member had forgotten is never active (SqlUserStore.set_opted_out
        marks it forgotten), so what was forgotten never comes back through the weights."""
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
        key = await self.messages.voice_key()
        pages = _with_voice_tags(ref, key, self.messages.iter_training_texts(ref, max_id))
        banned = await self._banned_for_training(ref)
        if banned:
            # The dataset splits by count: counted first, without what is left out.
            total -= await _banned_count(banned, self.messages.iter_training_texts(ref, max_id))
            pages = _without(banned, pages)
        options = DatasetOptions(author_prefix=self.settings.train_author_prefix)
        info = await build_dataset(pages, total, tokenizer, run_dir, max_id, options)
        if info.train_tokens < 2 or info.eval_messages < 1:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise UserError(
                M.t("training_not_enough", channel=ref, messages=info.messages, needed=MIN_MESSAGES)
            )
        return info

    async def _banned_for_training(self, ref: ChannelRef) -> BannedWords:
        """The channel's banned words, when its admins keep messages with them out of
        training (`banned_words_train on`); none otherwise."""
        channel = await self.channels.get(ref)
        options = ChannelOptions.from_stored(channel.sampling if channel else {})
        return BannedWords(options.banned_words if options.banned_words_train else ())

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
            block_size = trained_block_size(Path(active.path))
            result = await self.worker.run(evaluate_dir, active.path, eval_texts, block_size)
            train_texts = read_eval_texts(work_dir, "train")
            live_result = await self.worker.run(
                live_evaluate_dir, active.path, train_texts, eval_texts, block_size
            )
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        bits = _finite(result.bits_per_char)
        live = (
            _finite(live_result.bits_per_char) if live_result else None,
            markov.live_bits_per_char,
        )
        await self.registry.set_quality(ref, active.version, bits, markov.bits_per_char, live)
        return replace(
            active,
            eval_bits_per_char=bits,
            markov_bits_per_char=markov.bits_per_char,
            live_bits_per_char=live[0],
            live_markov_bits_per_char=live[1],
        )

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

    async def _promote(
        self,
        ref: ChannelRef,
        info: ModelVersionInfo,
        result_eval: EvalResult,
        start: tuple[str, EvalResult],
        eval_texts: list[str],
        block_size: int,
    ) -> tuple[bool, str, tuple[int, EvalResult] | None]:
        """Whether the new version answers from now on, why not, and the version that
        answered before with its figure on the same messages."""
        active = await self.registry.active(ref)
        previous = None
        if active is not None:
            if active.path == start[0]:
                active_eval = start[1]  # already measured on these messages
            else:
                active_eval = await self.worker.run(
                    evaluate_dir, active.path, eval_texts, block_size
                )
            previous = (active.version, active_eval)
            # `not <=` rather than `>`, so a diverged (NaN) version is never promoted.
            if not result_eval.nats_per_char <= active_eval.nats_per_char:
                reason = M.t(
                    "not_promoted_reason",
                    new=result_eval.nats_per_char,
                    old=active_eval.nats_per_char,
                    active=active.version,
                )
                await self.registry.set_note(ref, info.version, reason)
                return False, reason, previous
        if await self.registry.activate(ref, info.version, actor="training") is None:
            # A member opted out since the version was registered: it is withdrawn.
            return False, M.t("training_forgotten", channel=ref), previous
        return True, "", previous

    async def delete_forgotten(self) -> None:
        """Deletes the files of every version trained on messages that were forgotten
        since (a member opted out). Their rows stay, marked, so no one can serve,
        activate, roll back to or train from them, and their numbers are not reused."""
        for path in await self.registry.forgotten_paths():
            await asyncio.to_thread(shutil.rmtree, path, True)
        # And the scratch bases whose tokenizers learnt from the forgotten messages.
        for ref, epoch in await self.registry.forget_epochs():
            for stale in stale_scratch_dirs(self.settings.models_dir / ref.slug, epoch):
                await asyncio.to_thread(shutil.rmtree, stale, True)

    async def _prune(self, ref: ChannelRef) -> None:
        """Deletes the oldest versions beyond the configured count, never the active
        one (files first: a row without files would be worse than files without a row)."""
        versions = await self.registry.versions(ref)
        keep = self.settings.keep_versions
        removable = [v for v in versions if v.status != VersionStatus.ACTIVE]
        excess = len(versions) - keep
        for v in removable[: max(0, excess)]:
            shutil.rmtree(v.path, ignore_errors=True)
            await self.registry.remove(ref, v.version)


async def _with_voice_tags(
    ref: ChannelRef, key: bytes, pages: AsyncIterator[list[TrainingText]]
) -> AsyncIterator[list[TrainingText]]:
    """The pages with each lent voice (a user id) as the member's tag in this channel."""
    async for page in pages:
        yield [
            (name, text, voice_tag(ref, voice, key) if voice else "") for name, text, voice in page
        ]


async def _without(
    banned: BannedWords, pages: AsyncIterator[list[TrainingText]]
) -> AsyncIterator[list[TrainingText]]:
    """The pages without the messages that contain a banned word."""
    async for page in pages:
        yield [row for row in page if banned.first(row[1]) is None]


async def _banned_count(banned: BannedWords, pages: AsyncIterator[list[TrainingText]]) -> int:
    return sum([sum(banned.first(text) is not None for _, text, _ in page) async for page in pages])


def _same_run(run_dir: Path, key: dict[str, Any]) -> bool:
    try:
        return bool(json.loads((run_dir / "run.json").read_text(encoding="utf-8")) == key)
    except (OSError, ValueError):
        return False


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _tail_mean(losses: list[float], n: int = 10) -> float | None:
    tail = losses[-n:]
    return sum(tail) / len(tail) if tail else None
