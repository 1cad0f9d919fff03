"""`tsuzuki bench serve`, second scenario: 64 requests from 32 LoRA channels arriving at
random over 2 seconds (a Poisson process: arrival times uniform over the window), so
requests come while others are being decoded, as they do in a busy server.

Baseline: one peft model holding the 32 adapters (`set_adapter` per request), eager
fp32 `generate()`, one request at a time in arrival order: what a user builds from the
peft docs for many channels. Tsuzuki: the real serving path, continuous batching.
Latency is from a request's arrival to its last token; time to first token from its
arrival to its first new token.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.benchmarks import fixtures
from bot.benchmarks.fixtures import (
    SAMPLING,
    activate_adapter,
    bench_settings,
    build_adapters,
    build_base,
    prompts,
    sampled_request,
)

CHANNELS = 32
REQUESTS = 64
WINDOW_S = 2.0
NEW_TOKENS = 64


@dataclass(frozen=True)
class ArrivalResult:
    tokens: int
    seconds: float  # from the first arrival to the last answer
    latencies: list[float]
    first_tokens: list[float]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def prepare(workdir: Path) -> tuple[Path, list[Path], list[str], list[float]]:
    from transformers import AutoTokenizer

    base = build_base(workdir / "base")
    adapters = build_adapters(base, workdir / "adapters32", CHANNELS)
    texts = prompts(AutoTokenizer.from_pretrained(base), REQUESTS, 10, 200, seed=5)
    rng = random.Random(11)
    arrivals = sorted(rng.uniform(0, WINDOW_S) for _ in range(REQUESTS))
    return base, adapters, texts, arrivals


def run_baseline(
    base: Path, adapters: list[Path], texts: list[str], arrivals: list[float], threads: int
) -> ArrivalResult:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base), adapters[0], adapter_name="c0"
    )
    for i, adapter in enumerate(adapters[1:], 1):
        model.load_adapter(adapter, adapter_name=f"c{i}")
    model.eval()

    class FirstToken(BaseStreamer):  # type: ignore[misc]
        def __init__(self) -> None:
            self.puts, self.at = 0, 0.0

        def put(self, value: Any) -> None:
            self.puts += 1  # the first put is the prompt
            if self.puts == 2:
                self.at = time.perf_counter()

        def end(self) -> None:
            pass

    kwargs = {
        "max_new_tokens": NEW_TOKENS,
        "min_new_tokens": NEW_TOKENS,
        "do_sample": True,
        "pad_token_id": tokenizer.eos_token_id,
        **SAMPLING,
    }
    with torch.inference_mode():
        model.generate(**tokenizer("warm-up", return_tensors="pt"), max_new_tokens=2)
        latencies, first = [], []
        start = time.perf_counter()
        for i, (text, at) in enumerate(zip(texts, arrivals, strict=True)):
            wait = start + at - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # idle until the next request arrives
            model.set_adapter(f"c{i % CHANNELS}")
            streamer = FirstToken()
            model.generate(**tokenizer(text, return_tensors="pt"), streamer=streamer, **kwargs)
            latencies.append(time.perf_counter() - start - at)
            first.append(streamer.at - start - at)
        seconds = time.perf_counter() - start
    return ArrivalResult(REQUESTS * NEW_TOKENS, seconds, latencies, first)


async def run_tsuzuki(
    base: Path,
    adapters: list[Path],
    texts: list[str],
    arrivals: list[float],
    threads: int,
    workdir: Path,
) -> ArrivalResult:

    from bot.app import running_app
    from bot.domain import ChannelRef, GenerationRequest

    settings = bench_settings(workdir, "arrivals", base, threads, stream_interval_ms=0)
    async with running_app(settings) as app:
        refs = [ChannelRef.parse(f"console:arrive{i}") for i in range(CHANNELS)]
        for ref, adapter in zip(refs, adapters, strict=True):
            await activate_adapter(app, ref, base, adapter)

        def request(i: int, new_tokens: int) -> GenerationRequest:
            return sampled_request(app, refs[i % CHANNELS], texts[i], new_tokens, seed=i)

        # Warm-up: the base and every adapter loaded.
        await asyncio.gather(*(app.generator.generate(request(i, 2)) for i in range(CHANNELS)))

        async def arrive(i: int) -> tuple[int, float, float]:
            await asyncio.sleep(max(0.0, start + arrivals[i] - time.perf_counter()))
            first: list[float] = []

            def heard(text: str) -> None:
                if not first:
                    first.append(time.perf_counter())

            result = await app.generator.generate(request(i, NEW_TOKENS), heard)
            done = time.perf_counter()
            arrived = start + arrivals[i]
            return result.new_tokens, done - arrived, (first[0] if first else done) - arrived

        start = time.perf_counter()
        results = await asyncio.gather(*(arrive(i) for i in range(REQUESTS)))
        seconds = time.perf_counter() - start
    return ArrivalResult(
        sum(n for n, _, _ in results),
        seconds,
        [t for _, t, _ in results],
        [f for _, _, f in results],
    )


def _side_main(side: str, workdir: str, threads: str) -> None:
    """Entry point of one side's process; prints its result as JSON."""
    import bot  # noqa: F401  (thread and wait-policy environment before torch loads)

    base, adapters, texts, arrivals = prepare(Path(workdir))
    if side == "baseline":
        result = run_baseline(base, adapters, texts, arrivals, int(threads))
    else:
        result = asyncio.run(
            run_tsuzuki(base, adapters, texts, arrivals, int(threads), Path(workdir))
        )
    print(json.dumps(result.__dict__))


def run_side(side: str, workdir: Path, threads: int) -> ArrivalResult:
    return ArrivalResult(**fixtures.run_side("bot.benchmarks.arrivals", side, workdir, threads))


def report(baseline: ArrivalResult, ours: ArrivalResult) -> list[str]:
    from bot.benchmarks.fixtures import percentile

    def line(name: str, r: ArrivalResult) -> str:
        return (
            f"{name:<10} {r.tokens_per_s:8.1f} tokens/s"
            f"  latency p50 {percentile(r.latencies, 0.5):6.2f}s"
            f" p95 {percentile(r.latencies, 0.95):6.2f}s"
            f"  first token p50 {percentile(r.first_tokens, 0.5):6.2f}s"
            f" p95 {percentile(r.first_tokens, 0.95):6.2f}s"
        )

    return [
        f"{REQUESTS} requests, {CHANNELS} channels, arriving over {WINDOW_S:.0f}s (Poisson),"
        f" {NEW_TOKENS} new tokens each",
        line("baseline", baseline),
        line("tsuzuki", ours),
        f"throughput {ours.tokens_per_s / baseline.tokens_per_s:.2f}x the baseline; p95 latency"
        f" {percentile(baseline.latencies, 0.95) / percentile(ours.latencies, 0.95):.2f}x lower",
    ]


if __name__ == "__main__":
    _side_main(*sys.argv[1:4])
