"""The GPU's dtype path: a LoRA version trained under bf16 autocast and served over a
bf16 base, the adapter in float32 on top. CI has no GPU, so the same test runs on the
CPU with the dtypes forced (TSUZUKI_SERVE_DTYPE=bf16, TSUZUKI_TRAIN_BF16=on): a dtype
mismatch between base, adapter and activations fails here, not on the first GPU user's
machine. The `cuda` run (scripts/gpu-check) adds the device placement."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.app import running_app
from bot.config import Settings
from bot.engine.local import LocalEngine
from tests.integration.test_pretrained import QUICK, REF, cache_base, generate, history
from tests.integration.test_training import add_history

cuda = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
DEVICES = [pytest.param("cpu", id="cpu-forced-bf16"), pytest.param("cuda", marks=cuda)]


@pytest.mark.parametrize("device", DEVICES)
async def test_a_lora_trained_in_bf16_serves_over_a_bf16_base(
    device: str,
    hub: Path,
    tmp_path: Path,
    local_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    network_attempts: list[Any],
) -> None:
    repo = cache_base(hub, "gpt2", tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    settings = local_settings.model_copy(
        update={"base_model": repo, "serve_dtype": "bf16", "train_bf16": "on"}
    )
    async with running_app(settings) as app:
        await add_history(app, history(120))
        await app.channels.set_training(REF, True, actor="test")
        outcome = await app.training.train(REF, QUICK)
        version = outcome.version
        assert outcome.promoted and version.method == "lora"
        assert version.train_loss is not None and math.isfinite(version.train_loss)
        assert version.eval_bits_per_char is not None and math.isfinite(version.eval_bits_per_char)

        result = await generate(app)
        assert result.model == f"v{version.version}" and result.new_tokens > 0

        # What served it: the base in bf16 on the device, the adapter float32 beside it.
        assert isinstance(app.engine, LocalEngine)
        (serving,) = app.engine.generator.cache._models.values()
        base = serving.loaded.model
        floats = {p.dtype for p in base.parameters() if p.is_floating_point()}
        assert floats == {torch.bfloat16}
        assert {p.device.type for p in base.parameters()} == {device}
        assert serving.lora is not None
        banks = [m for m in base.modules() if hasattr(m, "At")]
        assert banks and {(m.At.dtype, m.B.dtype) for m in banks} == {(torch.float32,) * 2}
        assert {m.At.device.type for m in banks} == {device}
    assert network_attempts == []
