"""The pretrained path end to end with no network: a base given by hub id, found in a
local Hugging Face cache built by the test (tests/hubcache.py), with the tokenizers
the real bases ship (rinna's SentencePiece T5Tokenizer, colorfulscoop's
BertGenerationTokenizer, GPT-2's byte-level BPE without a pad token).

Any attempt to open a network connection during these tests fails and is recorded, so
"works offline" means no request at all, not a request that happened to fail fast.
"""

from __future__ import annotations

import gc
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, running_app
from bot.config import Settings
from bot.core.context import CommandContext
from bot.domain import Author, ChannelRef, GenerationRequest, GenerationResult
from bot.errors import UserError
from bot.generation.bases import locate
from bot.generation.loading import load_directory, load_tokenizer
from bot.training.dataset import build_dataset, load_tokens, read_eval_texts
from bot.training.evaluation import evaluate_texts
from bot.training.outcome import TrainOptions
from tests import hubcache
from tests.integration.test_training import add_history, corpus

REF = ChannelRef.parse("console:club")
ADMIN = CommandContext(REF, Author("admin", "Admin", is_admin=True))
QUICK = TrainOptions.of(max_steps=6, batch_size=4, block_size=32, learning_rate=3e-3)
# Messages with line breaks and capitals, mixed into the channel's history.
MULTILINE = [
    "今日の部活:\n・ラーメン\n・おにぎり",
    "See you on Friday!\nBring snacks.",
    "織田信長は\n尾張の大名だった。",
]
BASE_TEXTS = corpus(200, seed=3) + MULTILINE


def history(n: int, seed: int = 0) -> list[str]:
    texts = corpus(n, seed)
    for i, text in enumerate(MULTILINE):
        texts[(i + 1) * n // 4] = text
    return texts


@pytest.fixture
def shown_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised during the test, on any thread: on a console channel each
    would be printed into the chat."""
    gc.collect()  # what earlier tests left behind warns now, not during this one
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        # Raised by transformers' own save_pretrained; silenced by quiet_libraries().
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        yield seen


def cache_base(hub: Path, kind: str, tmp_path: Path) -> str:
    """A tiny base of the given tokenizer style in the hub cache; returns its hub id."""
    repo = f"test-org/{kind}-tiny"
    files = tmp_path / f"files-{kind}"
    hubcache.BASES[kind](files, BASE_TEXTS)
    hubcache.add_to_cache(hub, repo, files)
    return repo


async def generate(app: App, prompt: str = "織田信長は") -> GenerationResult:
    settings = app.settings.default_sampling().merged({"seed": 7, "max_new_tokens": 12})
    # What a user would see in the chat: no library warning may surface. What earlier
    # tests left for the garbage collector is collected first: its warnings are not
    # this generation's.
    gc.collect()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = await app.generator.generate(GenerationRequest(REF, settings, prompt=prompt))
    assert [str(w.message) for w in seen] == []
    assert result.texts[0].startswith(prompt)
    return result


@pytest.mark.parametrize("kind", ["rinna", "colorfulscoop", "gpt2"])
async def test_a_cached_hub_base_trains_serves_restarts_retrains_and_rolls_back(
    kind: str,
    hub: Path,
    tmp_path: Path,
    local_settings: Settings,
    network_attempts: list[Any],
    shown_warnings: list[warnings.WarningMessage],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = cache_base(hub, kind, tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    settings = local_settings.model_copy(
        update={"base_model": repo, "nightly_min_new_messages": 20, "nightly_max_minutes": 0.05}
    )
    async with running_app(settings) as app:
        await add_history(app, history(120))
        await app.channels.set_training(REF, True, actor="test")
        before = await generate(app)
        assert before.model == repo  # the base answers until a version exists

        # 1. Train a LoRA by hub id.
        first = await app.training.train(REF, QUICK)
        assert first.promoted
        assert (first.version.method, first.version.base_model) == ("lora", repo)
        v1 = Path(first.version.path)
        adapter = json.loads((v1 / "adapter_config.json").read_text(encoding="utf-8"))
        # Named by hub id, not by a path into this machine's hub cache.
        assert adapter["base_model_name_or_path"] == repo

        # 2. Serve it.
        served = await generate(app)
        assert served.model == "v1"

    # 3. A restart: a fresh app and engine over the same data and database.
    async with running_app(settings) as app:
        again = await generate(app)
        assert again.model == "v1"
        assert again.texts == served.texts  # the same version, the same seeded text

        # 4. The nightly path: new messages make the channel due, the job builds on v1.
        await add_history(app, history(40, seed=5), start=1000)
        queued = await app.runner.queue_due_training()
        assert [job.channel for job in queued] == [REF]
        (done,) = await app.runner.run_pending()
        assert done.status == "succeeded", done.error
        assert done.outcome is not None
        v2 = Path(done.outcome.version.path)
        metadata = json.loads((v2 / "metadata.json").read_text(encoding="utf-8"))
        assert metadata["start"] == str(v1)
        if not done.outcome.promoted:  # no better on the new messages: an admin insists
            await app.core.on_command(ADMIN, "/models activate 2")
        assert (await generate(app)).model == "v2"

        # 5. Roll back.
        reply = await app.core.on_command(ADMIN, "/models rollback")
        assert not reply.is_error and "v1" in reply.texts[0]
        assert (await generate(app)).model == "v1"
    assert network_attempts == []
    assert [f"{w.filename}: {w.message}" for w in shown_warnings] == []


@pytest.mark.parametrize("offline", [True, False])
async def test_an_uncached_hub_id_fails_within_seconds_with_advice(
    offline: bool,
    hub: Path,
    local_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not offline:
        monkeypatch.delenv("HF_HUB_OFFLINE")  # the hub is probed: a closed local port
    settings = local_settings.model_copy(update={"base_model": "test-org/never-downloaded"})
    async with running_app(settings) as app:
        await add_history(app, history(40))
        await app.channels.set_training(REF, True, actor="test")
        started = time.perf_counter()
        with pytest.raises(UserError) as excinfo:
            await app.training.train(REF, QUICK)
        reply = await app.core.on_command(ADMIN, "/continue 織田信長は")
        elapsed = time.perf_counter() - started
        assert await app.registry.versions(REF) == []
    assert elapsed < 8
    for text in (excinfo.value.reason, reply.texts[0]):
        assert "hf download test-org/never-downloaded" in text
        assert "TSUZUKI_BASE_MODEL" in text
    assert reply.is_error


@pytest.fixture
def all_bases(hub: Path, tmp_path: Path) -> Iterator[dict[str, Path]]:
    yield {kind: locate(cache_base(hub, kind, tmp_path)) for kind in hubcache.BASES}


async def test_each_tokenizer_style_keeps_line_breaks_and_ends_messages(
    all_bases: dict[str, Path], tmp_path: Path
) -> None:
    text = "今日の部活:\n・ラーメン\n\n・おにぎり"
    for kind, directory in all_bases.items():
        tokenizer = load_tokenizer(directory)
        assert tokenizer.eos_token_id is not None, kind
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids, kind
        assert tokenizer.decode(ids, skip_special_tokens=True) == text, kind
        # A character the vocabulary lacks is unknown, never the end of the message
        # (transformers' T5Tokenizer would give it id 2: rinna-style `</s>`).
        unknown = tokenizer("Ω", add_special_tokens=False)["input_ids"]
        assert tokenizer.eos_token_id not in unknown, kind
        if kind == "rinna":  # do_lower_case, as rinna's tokenizer_config asks
            english = tokenizer("See You", add_special_tokens=False)["input_ids"]
            assert tokenizer.decode(english, skip_special_tokens=True) == "see you"
        if kind == "gpt2":
            assert tokenizer.pad_token_id is None  # and nothing needs one

        # The dataset: messages closed by end-of-text, line breaks kept in the stream.
        async def pages() -> Any:
            yield [("taro", t, "") for t in [text, "二つ目", "三つ目", "held out\nfor eval"]]

        out = tmp_path / f"dataset-{kind}"
        info = await build_dataset(pages(), 4, tokenizer, out, 4)
        stream = [int(t) for t in load_tokens(out / "train.bin")]
        assert stream.count(tokenizer.eos_token_id) == info.train_messages == 3, kind
        decoded = tokenizer.decode(stream, skip_special_tokens=True)
        assert "ラーメン\n\n・おにぎり" in decoded, kind

        # Evaluation and generation-side decoding on the same model.
        loaded = load_directory(directory, kind)
        result = evaluate_texts(loaded.model, loaded.tokenizer, read_eval_texts(out), 16)
        assert result.tokens > 0 and result.loss == result.loss  # not NaN


async def test_tsuzuki_train_by_hub_id_twice_in_fresh_processes(
    hub: Path, tmp_path: Path, local_settings: Settings
) -> None:
    """`tsuzuki train` as a person runs it, twice: each a new process whose first
    imports of torch and transformers happen while its device thread starts (the
    import race that made training a pretrained base die)."""
    import asyncio
    import os
    import subprocess
    import sys

    repo = cache_base(hub, "rinna", tmp_path)
    settings = local_settings.model_copy(
        update={"base_model": repo, "database_url": "", "data_dir": tmp_path / "cli-data"}
    )
    async with running_app(settings) as app:
        await add_history(app, history(80))
        await app.channels.set_training(REF, True, actor="test")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSUZUKI_")} | {
        "TSUZUKI_BASE_MODEL": repo,
        "TSUZUKI_DATA_DIR": str(settings.data_dir),
        "TSUZUKI_TORCH_THREADS": "1",
    }
    tsuzuki = str(Path(sys.executable).parent / "tsuzuki")
    quick = ["--max-steps", "2", "--batch-size", "2", "--block-size", "16"]
    for seed in ("0", "1"):
        proc = await asyncio.create_subprocess_exec(
            tsuzuki,
            "train",
            str(REF),
            *quick,
            "--seed",
            seed,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr and b"Warning" not in stderr, stderr.decode()
    async with running_app(settings) as app:
        assert [v.version for v in await app.registry.versions(REF)] == [1, 2]
        assert (await generate(app)).model.startswith("v")
