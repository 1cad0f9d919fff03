"""`tsuzuki bench latency`: one request, 64 new tokens, through Tsuzuki's engine
against eager fp32 `model.generate()` on the same 124M-shaped weights, in one process
with the same thread settings.

Tsuzuki runs with float32 weights (TSUZUKI_SERVE_INT8=false) and as configured by
default (an int8 base); then on a LoRA channel (the main path: int8 base, the adapter
per row in float) against eager fp32 `generate()` of a peft model with the same
adapter. If a trained model directory is given (a full version or a LoRA one), the
int8 eval-loss change is measured on it with demo messages, since random weights say
nothing about quality.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bot.benchmarks.fixtures import (
    activate_adapter,
    bench_settings,
    build_adapters,
    build_base,
    demo_texts,
    prompts,
)

NEW_TOKENS = 64
PROMPT_TOKENS = 50


@dataclass(frozen=True)
class LatencyResult:
    baseline_s: float
    fp32_s: float
    int8_s: float
    lora_baseline_s: float  # eager fp32 generate() of a peft model with the adapter
    lora_s: float  # Tsuzuki on a LoRA channel, as configured by default
    quality: tuple[float, float] | None  # (fp32 eval loss, int8 eval loss)


def _baseline(base: Path, text: str, runs: int, adapter: Path | None = None) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bot.generation.loading import pick_device

    # On the device Tsuzuki serves on: a baseline left on the CPU beside a GPU would
    # make any ratio meaningless.
    device = pick_device()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).to(device).eval()
    ids = tokenizer(text, return_tensors="pt").to(device)
    kwargs = {
        "max_new_tokens": NEW_TOKENS,
        "min_new_tokens": NEW_TOKENS,
        "do_sample": True,
        "top_k": 50,
        "top_p": 0.95,
        "temperature": 0.9,
        "pad_token_id": tokenizer.eos_token_id,
    }
    times = []
    with torch.inference_mode():
        model.generate(**ids, **{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})
        for _ in range(runs):
            started = time.perf_counter()
            model.generate(**ids, **kwargs)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _tsuzuki(
    base: Path,
    text: str,
    runs: int,
    threads: int,
    int8: bool,
    workdir: Path,
    adapter: Path | None = None,
) -> float:

    from bot.app import running_app
    from bot.domain import ChannelRef, GenerationRequest

    settings = bench_settings(workdir, "latency", base, threads, serve_int8=int8)
    ref = ChannelRef.parse("console:latency")
    times = []
    async with running_app(settings) as app:
        if adapter is not None:
            await activate_adapter(app, ref, base, adapter)
        sampling = app.settings.default_sampling().merged(
            {
                "max_new_tokens": NEW_TOKENS,
                "repetition_penalty": 1.0,
                "top_k": 50,
                "top_p": 0.95,
                "temperature": 0.9,
            }
        )
        await app.generator.generate(
            GenerationRequest(ref, sampling.merged({"max_new_tokens": 2}), prompt=text)
        )
        for seed in range(runs):
            request = GenerationRequest(ref, sampling.merged({"seed": seed}), prompt=text)
            started = time.perf_counter()
            result = await app.generator.generate(request)
            elapsed = time.perf_counter() - started
            # Scale the rare run that hit an end-of-text early to NEW_TOKENS.
            times.append(elapsed * NEW_TOKENS / max(1, result.new_tokens))
    return statistics.median(times)


def quality(model_dir: Path) -> tuple[float, float]:
    """Eval loss (nats/token) of a trained version on demo messages: float32 as
    training left it, and as served (int8 base; a LoRA version's adapter on top)."""
    from bot.generation.bases import ADAPTER_CONFIG
    from bot.generation.loading import load_directory, lora_base
    from bot.generation.quantize import quantize_int8
    from bot.training.evaluation import evaluate_texts

    texts = demo_texts()[-200:]
    loaded = load_directory(model_dir, str(model_dir))
    fp32 = evaluate_texts(loaded.model, loaded.tokenizer, texts, 128).loss
    if not (model_dir / ADAPTER_CONFIG).is_file():
        served = quantize_int8(loaded.model)
    else:
        from bot.generation.lora import AdapterSet

        base = lora_base(model_dir)
        served = quantize_int8(load_directory(base, str(base)).model)
        adapters = AdapterSet(served, 1)
        adapters.select([adapters.slot(str(model_dir))])
    int8 = evaluate_texts(served, loaded.tokenizer, texts, 128).loss
    return fp32, int8


def run(workdir: Path, threads: int, runs: int, quality_model: Path | None) -> LatencyResult:
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(threads)
    base = build_base(workdir / "base")
    (adapter, *_) = build_adapters(base, workdir / "adapters", 8)
    (text,) = prompts(AutoTokenizer.from_pretrained(base), 1, PROMPT_TOKENS, PROMPT_TOKENS)
    baseline = _baseline(base, text, runs)
    fp32 = asyncio.run(_tsuzuki(base, text, runs, threads, False, workdir))
    int8 = asyncio.run(_tsuzuki(base, text, runs, threads, True, workdir))
    lora_baseline = _baseline(base, text, runs, adapter)
    lora = asyncio.run(_tsuzuki(base, text, runs, threads, True, workdir, adapter))
    measured = quality(quality_model) if quality_model else None
    return LatencyResult(baseline, fp32, int8, lora_baseline, lora, measured)


def report(r: LatencyResult) -> list[str]:
    from bot.generation.loading import pick_device

    # The quantized base is int8 on the CPU; a GPU serves bf16 in its place.
    served = "int8" if pick_device() == "cpu" else "bf16"
    lines = [
        f"eager fp32 generate()  {r.baseline_s:6.3f}s",
        f"tsuzuki (fp32)         {r.fp32_s:6.3f}s  {r.baseline_s / r.fp32_s:.2f}x faster",
        f"tsuzuki ({served})         {r.int8_s:6.3f}s  {r.baseline_s / r.int8_s:.2f}x faster"
        " (target ≥ 2x)",
        f"lora: tsuzuki ({served} base + adapter) {r.lora_s:6.3f}s vs eager fp32 generate() with"
        f" the adapter {r.lora_baseline_s:6.3f}s: {r.lora_baseline_s / r.lora_s:.2f}x"
        " (target ≥ 2.5x)",
    ]
    if r.quality:
        fp32, int8 = r.quality
        lines.append(
            f"int8 eval loss {int8:.4f} vs fp32 {fp32:.4f}: {int8 - fp32:+.4f} "
            f"({(int8 - fp32) / fp32 * 100:+.2f}%; target within 0.5%)"
        )
    return lines
