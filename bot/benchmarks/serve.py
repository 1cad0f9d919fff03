"""`tsuzuki bench serve`: 16 concurrent requests from 8 channels, Tsuzuki's engine
against the recipe users copy today.

Baseline: `transformers.pipeline("text-generation")`, one request after another, each
channel's LoRA merged into its own full model (8 models in memory).
Tsuzuki: the real serving path (resolver, device worker, cross-channel batches, one
base with 8 adapters applied per row).

Each side runs in its own process, so resident memory is measured cleanly; both use
the same weights, prompts, sampling settings and torch thread count.

`--engine ray` instead sets the same engine behind Ray (a local Ray started by that
side: a Ray Serve replica with the same threads, requests through a deployment handle)
against the local engine: what Ray's routing, serialisation and streaming cost.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bot.benchmarks import fixtures
from bot.benchmarks.fixtures import (
    SAMPLING,
    activate_adapter,
    bench_settings,
    build_adapters,
    build_base,
    percentile,
    prompts,
    rss_mb,
    sampled_request,
)

CHANNELS = 8
REQUESTS = 16
NEW_TOKENS = 64


@dataclass(frozen=True)
class SideResult:
    tokens: int
    seconds: float
    latencies: list[float]
    memory_mb: float  # resident memory the 8 channels' models added

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def prepare(workdir: Path) -> tuple[Path, list[Path], list[str]]:
    base = build_base(workdir / "base")
    adapters = build_adapters(base, workdir / "adapters", CHANNELS)
    from transformers import AutoTokenizer

    texts = prompts(AutoTokenizer.from_pretrained(base), REQUESTS, 10, 200)
    return base, adapters, texts


def run_baseline(base: Path, adapters: list[Path], texts: list[str], threads: int) -> SideResult:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(base)
    before = rss_mb()
    pipes = []
    for adapter in adapters:
        merged = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base), adapter
        ).merge_and_unload()
        # Each channel's merged model is its own file in real use; here all 8 were
        # mapped from the same base file, so give each its own memory as it would have.
        with torch.no_grad():
            for param in merged.parameters():
                param.data = param.data.clone()
        pipes.append(pipeline("text-generation", model=merged.eval(), tokenizer=tokenizer))
    memory = rss_mb() - before
    kwargs = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": True}
    pipes[0](texts[0], max_new_tokens=2, do_sample=True)  # warm-up
    latencies = []
    started = time.perf_counter()
    for i, text in enumerate(texts):
        pipes[i % CHANNELS](text, **kwargs, **SAMPLING)
        # All 16 arrived at once: each waits for the ones before it.
        latencies.append(time.perf_counter() - started)
    seconds = time.perf_counter() - started
    # min_new_tokens: every request generated exactly NEW_TOKENS.
    return SideResult(REQUESTS * NEW_TOKENS, seconds, latencies, memory)


async def run_tsuzuki(
    base: Path,
    adapters: list[Path],
    texts: list[str],
    threads: int,
    workdir: Path,
    engine: str = "local",
) -> SideResult:

    from bot.app import running_app
    from bot.domain import ChannelRef, GenerationRequest

    settings = bench_settings(
        workdir, "serve", base, threads, max_batch=REQUESTS, engine=engine, ray_replica_cpus=threads
    )
    before = rss_mb()
    async with running_app(settings) as app:
        refs = [ChannelRef.parse(f"console:bench{i}") for i in range(CHANNELS)]
        for ref, adapter in zip(refs, adapters, strict=True):
            await activate_adapter(app, ref, base, adapter)

        def request(i: int, new_tokens: int) -> GenerationRequest:
            return sampled_request(app, refs[i % CHANNELS], texts[i], new_tokens, seed=i)

        # Warm-up: load the base and every adapter.
        await asyncio.gather(*(app.generator.generate(request(i, 2)) for i in range(CHANNELS)))
        memory = rss_mb() - before

        async def timed(i: int) -> tuple[int, float]:
            result = await app.generator.generate(request(i, NEW_TOKENS))
            return result.new_tokens, time.perf_counter() - started

        started = time.perf_counter()
        results = await asyncio.gather(*(timed(i) for i in range(REQUESTS)))
        seconds = time.perf_counter() - started
    return SideResult(sum(n for n, _ in results), seconds, [t for _, t in results], memory)


def _side_main(side: str, workdir: str, threads: str) -> None:
    """Entry point of one side's process; prints its result as JSON."""
    import bot  # noqa: F401  (thread and wait-policy environment before torch loads)

    base, adapters, texts = prepare(Path(workdir))
    if side == "baseline":
        result = run_baseline(base, adapters, texts, int(threads))
    else:
        engine = "ray" if side == "ray" else "local"
        result = asyncio.run(
            run_tsuzuki(base, adapters, texts, int(threads), Path(workdir), engine)
        )
    print(json.dumps(result.__dict__))


def run_side(side: str, workdir: Path, threads: int) -> SideResult:
    return SideResult(**fixtures.run_side("bot.benchmarks.serve", side, workdir, threads))


def _line(name: str, r: SideResult, memory: bool = True) -> str:
    return (
        f"{name:<14} {r.tokens_per_s:8.1f} tokens/s  p50 {percentile(r.latencies, 0.5):6.2f}s"
        f"  p95 {percentile(r.latencies, 0.95):6.2f}s"
        + (f"  memory {r.memory_mb:7.0f} MiB" if memory else "")
    )


def report(baseline: SideResult, ours: SideResult) -> list[str]:
    return [
        _line("baseline", baseline),
        _line("tsuzuki", ours),
        f"throughput {ours.tokens_per_s / baseline.tokens_per_s:.2f}x the baseline (target ≥ 10x);"
        f" memory {ours.memory_mb / baseline.memory_mb:.2f} of the baseline's (target ≤ 1/6)",
    ]


def report_ray(local: SideResult, ray: SideResult) -> list[str]:
    # Memory is left out: a Ray replica's is in another process than the one measured.
    p95 = percentile(ray.latencies, 0.95) / percentile(local.latencies, 0.95)
    return [
        _line("local engine", local, memory=False),
        _line("ray engine", ray, memory=False),
        f"p95 {p95:.2f}x the local engine's",
        f"ray: overhead {local.tokens_per_s / ray.tokens_per_s:.2f}x the local engine"
        " (time for the same work; target ≤ 1.25x)",
    ]


if __name__ == "__main__":
    _side_main(*sys.argv[1:4])
