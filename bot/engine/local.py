"""The embedded engine: generation and training on this process's one device worker
(`TSUZUKI_ENGINE=local`, the default)."""

from __future__ import annotations

from bot.domain import ChannelRef, GenerationRequest, GenerationResult
from bot.engine.generator import LocalGenerator
from bot.engine.training_runs import TrainingService
from bot.ports import TextListener
from bot.training.outcome import ProgressFn, TrainOptions, TrainOutcome


class LocalEngine:
    def __init__(self, generator: LocalGenerator, training: TrainingService) -> None:
        self.generator = generator
        self.training = training

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        return await self.generator.generate(request, on_text)

    async def train(
        self, ref: ChannelRef, options: TrainOptions, progress: ProgressFn | None = None
    ) -> TrainOutcome:
        return await self.training.train(ref, options, progress)

    def close(self) -> None:
        """Nothing of its own: the device worker belongs to the app, which closes it."""
