"""Continuous batching and the int8 serving base, at the level of the decoding loop:
a long prompt prefilled in chunks reads as it would in one pass, rows that join a
running batch get what they would alone, the written-out GPT-2 decode step computes
what transformers does, and the int8 base scores text as float32 does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bot.generation.batching import (
    PREFILL_CHUNK,
    DecodeBatch,
    Prefill,
    Row,
    decode_rows,
    prefill_together,
    together_groups,
)
from bot.generation.loading import load_directory
from bot.generation.quantize import quantize_int8
from bot.generation.scratch import create_scratch
from bot.generation.spec import SCRATCH_SIZES
from bot.setting_specs import SamplingSettings
from tests.integration.test_training import corpus

GREEDY = SamplingSettings().merged({"temperature": 0, "repetition_penalty": 1.0})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("scratch") / "tiny"
    create_scratch(directory, SCRATCH_SIZES["tiny"], corpus(200, seed=2))
    return directory


def test_a_long_prompt_prefilled_in_chunks_reads_as_in_one_pass(model_dir: Path) -> None:
    loaded = load_directory(model_dir, "tiny")
    prompt = list(range(5, 5 + 3 * PREFILL_CHUNK + 7))  # four chunks
    prefill = Prefill(loaded.model, None, Row(prompt, GREEDY, 0, 8, None))
    passes = 1
    while not prefill.advance():
        passes += 1
    with torch.inference_mode():
        whole = loaded.model(input_ids=torch.tensor([prompt], device=loaded.model.device)).logits[
            0, -1
        ]
    assert passes == 4
    assert prefill.logits is not None
    assert torch.allclose(prefill.logits, whole, atol=1e-4)


def test_a_row_that_joins_a_running_batch_writes_what_it_would_alone(model_dir: Path) -> None:
    loaded = load_directory(model_dir, "tiny")
    model = loaded.model
    early = Row(list(range(10, 30)), GREEDY, 0, 24, None)
    late = Row(list(range(40, 90)), GREEDY, 0, 12, None)  # longer: the batch is re-padded
    (alone,) = decode_rows(model, [late])

    batch = DecodeBatch(model)
    first = Prefill(model, None, early)
    first.advance()
    (running,) = batch.join([first])
    for _ in range(5):
        batch.step()  # the early row is under way
    second = Prefill(model, None, late)
    while not second.advance():
        pass
    (joined,) = batch.join([second])
    while batch.live:
        batch.step()
    assert joined.outputs == alone
    assert len(running.outputs) == 24  # the early row went on undisturbed to its end


# int8 serving is the CPU's (a GPU serves bf16, tests/integration/test_precision.py).
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="int8 serving is CPU-only")


@cpu_only
def test_an_int8_base_lets_go_of_its_float_weights_file(model_dir: Path) -> None:
    # The float weights, read through a memory map of the file while quantizing, would
    # otherwise stay resident beside the int8 ones for as long as the base is served.
    weights = str((model_dir / "model.safetensors").resolve())
    loaded = load_directory(model_dir, "tiny")
    served = quantize_int8(loaded.model)
    with open("/proc/self/maps", encoding="utf-8") as maps:
        assert weights not in maps.read()
    assert served.transformer.wpe.weight.abs().sum() > 0  # what stays float is intact


@cpu_only
def test_the_int8_base_scores_text_as_float32_does(model_dir: Path) -> None:
    from bot.training.evaluation import evaluate_texts

    texts = corpus(60, seed=9)
    loaded = load_directory(model_dir, "tiny")
    fp32 = evaluate_texts(loaded.model, loaded.tokenizer, texts, 64).loss
    int8 = evaluate_texts(quantize_int8(loaded.model), loaded.tokenizer, texts, 64).loss
    assert abs(int8 - fp32) / fp32 < 0.005  # README: within 0.5%


def test_the_written_out_decode_step_computes_what_transformers_does(model_dir: Path) -> None:
    model = load_directory(model_dir, "tiny").model
    prompt = list(range(10, 40))
    prefill = Prefill(model, None, Row(prompt, GREEDY, 0, 4, None))
    prefill.advance()
    batch = DecodeBatch(model)
    assert batch.fast  # a GPT-2: the written-out step
    (row,) = batch.join([prefill])
    batch.step()  # picks the first token, then one decode step computes the next logits
    with torch.inference_mode():
        full = model(input_ids=torch.tensor([prompt + row.outputs], device=model.device)).logits[
            0, -1
        ]
    assert torch.allclose(row.logits, full, atol=1e-4)


def test_prompts_prefilled_together_read_as_each_would_alone(model_dir: Path) -> None:
    loaded = load_directory(model_dir, "tiny")
    model = loaded.model
    rows = [
        Row(list(range(5 + i, 5 + i + n)), GREEDY, 0, 10, None)
        for i, n in enumerate((30, 27, 33, 26, 180))
    ]
    alone = [decode_rows(model, [row])[0] for row in rows]
    prefills = [Prefill(model, None, row) for row in rows]
    groups = together_groups(prefills)
    # The four short prompts in one forward pass; the long one would pad them too much.
    assert sorted(len(g) for g in groups) == [1, 4]
    for group in groups:
        prefill_together(group)
    for row, prefill in zip(rows, prefills, strict=True):
        single = Prefill(model, None, row)
        while not single.advance():
            pass
        assert prefill.logits is not None and single.logits is not None
        assert torch.allclose(prefill.logits, single.logits, atol=1e-4)
    batch = DecodeBatch(model)
    joined = batch.join(prefills)
    while batch.live:
        batch.step()
    assert [lv.outputs for lv in joined] == alone
