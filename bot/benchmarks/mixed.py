"""`tsuzuki bench mixed`: `/continue` latency while a training run is under way,
against the same requests with the device idle, and training throughput alone against
training throughput while those requests are served, in one process on one model.

The model is the 124M-shaped base; training is a LoRA fine-tune of another channel
over the same base, on the demo history. Requests come one after another, each after
a pause (a person reading the answer), so each measures what a user would wait and
training has the device in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from bot.benchmarks.fixtures import bench_settings, build_base, percentile, prompts
from bot.demo import DEMO_HISTORY

NEW_TOKENS = 64
REQUESTS = 8
PAUSE_S = 1.5  # between an answer and the next request
ALONE_S = 20.0  # training measured alone this long


@dataclass(frozen=True)
class MixedResult:
    idle: list[float]
    training: list[float]
    steps_during: int  # training steps completed while the requests ran
    train_alone: float  # training tokens/s with no requests
    train_serving: float  # training tokens/s while the requests were served
    serving_share: float  # of the wall time while serving, the requests' share


async def _measure(workdir: Path, threads: int) -> MixedResult:
    from transformers import AutoTokenizer

    from bot.app import running_app
    from bot.domain import ChannelRef, GenerationRequest
    from bot.importing.importer import import_history
    from bot.training.outcome import TrainOptions

    base = build_base(workdir / "base")
    texts = prompts(AutoTokenizer.from_pretrained(base), REQUESTS, 30, 80, seed=3)
    settings = bench_settings(workdir, "mixed", base, threads)
    chat, club = ChannelRef.parse("console:chat"), ChannelRef.parse("console:club")
    async with running_app(settings) as app:
        sampling = app.settings.default_sampling().merged(
            {"max_new_tokens": NEW_TOKENS, "repetition_penalty": 1.0}
        )

        async def latencies() -> list[float]:
            out = []
            for i, text in enumerate(texts):
                started = time.perf_counter()
                await app.generator.generate(
                    GenerationRequest(chat, sampling.merged({"seed": i}), prompt=text)
                )
                out.append(time.perf_counter() - started)
                await asyncio.sleep(PAUSE_S)
            return out

        await app.generator.generate(GenerationRequest(chat, sampling, prompt="warm-up"))
        idle = await latencies()

        await import_history(app.messages, DEMO_HISTORY, "jsonl", club)
        await app.channels.set_training(club, True, actor="bench")
        steps: list[tuple[float, int]] = []  # (when, tokens) of each training step
        under_way = asyncio.Event()

        def progress(step: object, total: int) -> None:
            steps.append((time.perf_counter(), int(getattr(step, "tokens", 0))))
            under_way.set()

        def rate(since: float, until: float) -> float:
            return sum(n for at, n in steps if since < at <= until) / (until - since)

        training = asyncio.create_task(
            app.training.train(club, TrainOptions.of(max_steps=100_000, batch_size=2), progress)
        )
        await under_way.wait()
        alone_from = time.perf_counter()
        await asyncio.sleep(ALONE_S)
        alone_until = serving_from = time.perf_counter()
        before = len(steps)
        busy = await latencies()
        serving_until = time.perf_counter()
        during = len(steps) - before
        training.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await training
    share = sum(busy) / (serving_until - serving_from)
    return MixedResult(
        idle,
        busy,
        during,
        rate(alone_from, alone_until),
        rate(serving_from, serving_until),
        share,
    )


def run(workdir: Path, threads: int) -> MixedResult:
    return asyncio.run(_measure(workdir, threads))


def report(r: MixedResult) -> list[str]:
    idle95, busy95 = percentile(r.idle, 0.95), percentile(r.training, 0.95)
    loss = 1 - r.train_serving / r.train_alone if r.train_alone else float("nan")
    return [
        f"idle            p50 {percentile(r.idle, 0.5):6.2f}s  p95 {idle95:6.2f}s",
        f"while training  p50 {percentile(r.training, 0.5):6.2f}s  p95 {busy95:6.2f}s"
        f"  ({r.steps_during} training steps done meanwhile)",
        f"p95 while training is {busy95 / idle95:.2f}x idle (target ≤ 1.5x)",
        f"training alone {r.train_alone:7.1f} tokens/s; while serving {r.train_serving:7.1f}"
        f" tokens/s ({loss * 100:.0f}% lost; target ≤ 15%); the requests held the device"
        f" {r.serving_share * 100:.0f}% of that time",
        f"training per second of device time it had while serving:"
        f" {r.train_serving / max(1e-9, 1 - r.serving_share):7.1f} tokens/s"
        f" ({(r.train_serving / max(1e-9, 1 - r.serving_share) / r.train_alone - 1) * 100:+.0f}%"
        " vs alone: what yielding itself costs)",
    ]
