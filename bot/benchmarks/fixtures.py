"""Shared set-up for the engine benchmarks: a randomly initialised GPT-2 of the 124M
shape, a tokenizer, per-channel LoRA adapters, and prompts of given token lengths.

Random weights are fine for speed: every side of a benchmark runs the same weights,
and generation is forced to its full length so both sides do the same work.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.demo import DEMO_HISTORY

if TYPE_CHECKING:
    from bot.domain import GenerationRequest

GPT2_124M = {"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024}
# GPT-2's own vocabulary size, so the output layer costs what it costs in GPT-2.
VOCAB = 50257
# The sampling both sides of a serving benchmark use.
SAMPLING = {"temperature": 0.9, "top_k": 50, "top_p": 0.95}


def demo_texts() -> list[str]:
    with DEMO_HISTORY.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def build_base(directory: Path, seed: int = 0, shape: dict[str, int] | None = None) -> Path:
    """A random GPT-2 (124M shape by default) with a byte-level BPE tokenizer."""
    import torch

    from bot.generation.libraries import quiet_libraries

    quiet_libraries()
    from transformers import GPT2Config, GPT2LMHeadModel

    from bot.generation.scratch import EOT, train_tokenizer

    if (directory / "config.json").is_file():
        return directory
    tokenizer = train_tokenizer(demo_texts(), 8000)
    eot = tokenizer.convert_tokens_to_ids(EOT)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        **(shape or GPT2_124M),
    )
    model = GPT2LMHeadModel(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_adapters(base: Path, root: Path, count: int, rank: int = 8) -> list[Path]:
    """`count` LoRA adapters over `base`, with random (non-zero) weights, saved the way
    training saves a LoRA version."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = [root / f"adapter{i}" for i in range(count)]
    if all((p / "adapter_config.json").is_file() for p in paths):
        return paths
    tokenizer = AutoTokenizer.from_pretrained(base)
    for i, path in enumerate(paths):
        model = AutoModelForCausalLM.from_pretrained(base)
        peft_model = get_peft_model(
            model, LoraConfig(task_type="CAUSAL_LM", r=rank, lora_alpha=16, fan_in_fan_out=True)
        )
        torch.manual_seed(100 + i)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.02)
        peft_model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return paths


def prompts(tokenizer: Any, count: int, low: int, high: int, seed: int = 0) -> list[str]:
    """Prompts of `low`..`high` tokens, made of the demo channel's messages."""
    rng = random.Random(seed)
    texts = demo_texts()
    out = []
    for _ in range(count):
        target = rng.randint(low, high)
        words: list[str] = []
        while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < target:
            words.append(rng.choice(texts))
        ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][:target]
        out.append(tokenizer.decode(ids))
    return out


def rss_mb() -> float:
    """This process's resident memory now, in MiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_settings(workdir: Path, name: str, base: Path, threads: int, **overrides: Any) -> Any:
    """Settings for a benchmark's own app: a fresh SQLite database and data directory
    under `workdir`, serving `base`."""
    from bot.config import load_settings

    run = workdir / f"{name}-{time.time_ns()}"
    return load_settings(
        data_dir=run,
        database_url=f"sqlite+aiosqlite:///{run}.db",
        base_model=str(base),
        torch_threads=threads,
        **overrides,
    )


def run_side(module: str, side: str, workdir: Path, threads: int) -> dict[str, Any]:
    """Runs one side of a benchmark in its own process (`python -m module side workdir
    threads`, which prints its result as JSON on its last line), so resident memory
    and library state are its own."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", module, side, str(workdir), str(threads)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{side} side failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


async def activate_adapter(app: Any, ref: Any, base: Path, adapter: Path) -> None:
    """Registers the LoRA `adapter` over `base` as the channel's active v1."""
    from datetime import UTC, datetime

    from bot.domain import ModelVersionInfo
    from bot.statuses import VersionStatus

    version = ModelVersionInfo(
        ref, 1, str(base), "lora", str(adapter), VersionStatus.CANDIDATE, datetime.now(UTC)
    )
    await app.registry.add(version)
    await app.registry.activate(ref, 1, actor="bench")


def sampled_request(
    app: Any, ref: Any, prompt: str, new_tokens: int, seed: int
) -> GenerationRequest:
    """A request for exactly `new_tokens` tokens with the benchmark's sampling."""
    from bot.domain import GenerationRequest

    sampling = app.settings.default_sampling().merged(
        {**SAMPLING, "max_new_tokens": new_tokens, "seed": seed, "repetition_penalty": 1.0}
    )
    return GenerationRequest(ref, sampling, prompt=prompt)
