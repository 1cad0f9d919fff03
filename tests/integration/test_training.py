"""Fine-tuning a channel's model: better than its base, resumable, never promoting a
worse version, rollback, consent and opt-out."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app import App, running_app
from bot.config import Settings
from bot.core.context import CommandContext
from bot.domain import Author, ChannelRef, ChatMessage, GenerationRequest
from bot.errors import UserError
from bot.records import ImportBatch
from bot.training.finetune import FineTune
from bot.training.lineage import plan_forget
from bot.training.outcome import TrainOptions
from storage.stores import SqlUserStore

REF = ChannelRef.parse("console:club")
ADMIN = CommandContext(REF, Author("admin", "Admin", is_admin=True))
MEMBER = CommandContext(REF, Author("member", "Member"))
T0 = datetime(2026, 1, 1, tzinfo=UTC)
QUICK = TrainOptions.of(max_steps=30, batch_size=8, block_size=64, learning_rate=3e-3)

SUBJECTS = ["織田信長は", "豊臣秀吉は", "徳川家康は", "the cat", "our club"]
VERBS = [
    "尾張の大名だった。",
    "天下を目指した。",
    "ramen が好きだった。",
    "likes onigiri.",
    "meets on friday.",
]


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)}" for _ in range(n)]


async def add_history(
    app: App, texts: list[str], author: str = "taro", start: int = 0, ref: ChannelRef = REF
) -> None:
    messages = [
        ChatMessage(
            ref, f"m{start + i}", Author(author, author), text, T0 + timedelta(minutes=start + i)
        )
        for i, text in enumerate(texts)
    ]
    await app.messages.add_batch(ImportBatch(messages=messages))


async def ready_channel(app: App, n: int = 300, ref: ChannelRef = REF) -> None:
    await add_history(app, corpus(n), ref=ref)
    await app.channels.set_training(ref, True, actor="test")


async def test_training_needs_consent(local_app: App) -> None:
    await add_history(local_app, corpus(50))
    with pytest.raises(UserError, match="Training is off"):
        await local_app.training.train(REF, QUICK)
    assert await local_app.registry.versions(REF) == []


async def test_fine_tuned_model_beats_its_base_and_becomes_active(local_app: App) -> None:
    await ready_channel(local_app)
    seen: list[int] = []
    outcome = await local_app.training.train(
        REF, QUICK, progress=lambda r, total: seen.append(r.step)
    )
    assert seen == list(range(1, 31))
    assert outcome.promoted and outcome.version.version == 1
    assert outcome.eval.loss < outcome.start_eval.loss
    data = outcome.dataset
    # The newest 5% are held out (15 of 300, less any spam repeats among them).
    assert 10 <= data.eval_messages <= 15
    # The newest 5% of the rest are validation messages: neither trained on nor eval.
    assert 10 <= data.valid_messages <= 15
    assert data.train_messages + data.valid_messages + data.eval_messages == data.messages
    # Its quality is a number next to the channel's Markov chain, on the same messages.
    v = outcome.version
    assert v.eval_bits_per_char is not None and v.markov_bits_per_char is not None
    assert v.eval_bits_per_char == pytest.approx(outcome.eval.bits_per_char)
    assert 0 < v.markov_bits_per_char < 16
    [stored] = await local_app.registry.versions(REF)
    assert stored.eval_bits_per_char == v.eval_bits_per_char
    assert stored.markov_bits_per_char == v.markov_bits_per_char
    assert data.messages + data.skipped == 300
    directory = Path(outcome.version.path)
    for name in (
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "metadata.json",
        "loss.png",
        "ngram.npz",
    ):
        assert (directory / name).is_file(), name
    assert (directory / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert not (directory.parent / "run").exists()
    # The next generation uses the new version, without a restart.
    result = await local_app.generator.generate(
        GenerationRequest(
            REF, local_app.settings.default_sampling().merged({"seed": 1}), prompt="織田信長は"
        )
    )
    assert result.model == "v1"


async def test_a_killed_run_resumes_from_its_checkpoint(
    local_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ready_channel(local_app)
    options = QUICK.but(checkpoint_every=10)
    real_work = FineTune.work

    def dying_work(self: FineTune):  # type: ignore[no-untyped-def]
        if self.state.step == 14:
            raise KeyboardInterrupt  # the process is killed mid-run
        return real_work(self)

    monkeypatch.setattr(FineTune, "work", dying_work)
    with pytest.raises(KeyboardInterrupt):
        await local_app.training.train(REF, options)
    assert await local_app.registry.active(REF) is None  # nothing half-done is active
    assert await local_app.registry.versions(REF) == []
    monkeypatch.setattr(FineTune, "work", real_work)
    outcome = await local_app.training.train(REF, options)
    assert outcome.resumed_at_step == 10
    assert outcome.promoted


async def test_a_worse_version_is_not_promoted_and_rollback_works(
    local_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ready_channel(local_app)
    good = await local_app.training.train(REF, QUICK)
    assert good.promoted
    # A learning rate this high wrecks the network. (Its n-gram would rescue it on this
    # toy grammar, so the mixture is held to the network alone.)
    monkeypatch.setattr("bot.training.mixture.best_weight", lambda *_: 1.0)
    bad = await local_app.training.train(REF, QUICK.but(learning_rate=5.0, max_steps=10))
    assert not bad.promoted
    assert bad.version.eval_bits_per_char is None or (
        bad.version.eval_bits_per_char > (good.version.eval_bits_per_char or 0)
    )
    assert "worse than active v1" in bad.reason
    assert (await local_app.registry.active(REF)).version == 1  # type: ignore[union-attr]
    listed = (await local_app.core.on_command(ADMIN, "/models")).texts[0]
    assert "v2 candidate" in listed and "worse" in listed
    # A member may look but not choose.
    assert (await local_app.core.on_command(MEMBER, "/models activate 2")).is_error
    # An admin may still choose v2, and roll back.
    await local_app.core.on_command(ADMIN, "/models activate v2")
    assert (await local_app.registry.active(REF)).version == 2  # type: ignore[union-attr]
    reply = await local_app.core.on_command(ADMIN, "/models rollback")
    assert "v1" in reply.texts[0]
    assert (await local_app.registry.active(REF)).version == 1  # type: ignore[union-attr]


async def test_opted_out_users_are_never_in_the_dataset(local_app: App) -> None:
    await ready_channel(local_app, 100)
    await add_history(
        local_app, ["私の秘密のメッセージ"] * 1 + ["my secret words"], author="hanako", start=1000
    )
    await SqlUserStore(local_app.db, plan_forget).set_opted_out(
        "console", "local", "hanako", True, actor="console:hanako"
    )
    total, max_id = await local_app.messages.training_snapshot(REF)
    assert total == 100
    texts = [
        t
        for page in [
            p async for p in local_app.messages.iter_training_texts(REF, max_id, page_size=7)
        ]
        for _, t, _ in page
    ]
    assert len(texts) == 100
    assert not any("secret" in t or "秘密" in t for t in texts)


async def test_lora_over_a_pretrained_base(tmp_path: Path, local_settings: Settings) -> None:
    from bot.generation.scratch import create_scratch
    from bot.generation.spec import SCRATCH_SIZES

    base_dir = tmp_path / "pretrained"
    create_scratch(base_dir, SCRATCH_SIZES["tiny"], corpus(200, seed=1))
    settings = local_settings.model_copy(update={"base_model": str(base_dir)})
    async with running_app(settings) as app:
        await ready_channel(app)
        outcome = await app.training.train(REF, QUICK)
        assert outcome.version.method == "lora"
        assert (Path(outcome.version.path) / "adapter_config.json").is_file()
        assert not (Path(outcome.version.path) / "model.safetensors").exists()
        assert outcome.eval.loss < outcome.start_eval.loss
        result = await app.generator.generate(
            GenerationRequest(
                REF, settings.default_sampling().merged({"seed": 2}), prompt="豊臣秀吉は"
            )
        )
        assert result.model == "v1" and result.texts[0].startswith("豊臣秀吉は")


async def test_an_interrupted_job_is_resumed_on_start(
    local_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ready_channel(local_app)
    payload = {**QUICK.__dict__, "checkpoint_every": 10}
    job = await local_app.jobs.enqueue("train", REF, payload)
    real_work = FineTune.work

    def dying_work(self: FineTune):  # type: ignore[no-untyped-def]
        if self.state.step == 23:
            raise KeyboardInterrupt
        return real_work(self)

    monkeypatch.setattr(FineTune, "work", dying_work)
    with pytest.raises(KeyboardInterrupt):
        await local_app.runner.run_pending()
    (row,) = await local_app.jobs.recent()
    # Interrupted mid-job (Ctrl-C): the job went back to the queue, ownerless.
    assert (row.id, row.status, row.owner) == (job.id, "queued", None)

    # The next run resumes it from the checkpoint.
    monkeypatch.setattr(FineTune, "work", real_work)
    steps: list[int] = []
    await local_app.runner.run_pending(progress=lambda job: lambda r, total: steps.append(r.step))
    assert steps[0] == 21  # continued after the checkpoint at step 20
    (row,) = await local_app.jobs.recent()
    assert (row.status, row.attempts, row.progress) == ("succeeded", 2, 1.0)
    assert (await local_app.registry.active(REF)) is not None
    # Trained on everything there is: not due again until enough new messages arrive.
    assert await local_app.runner.due_channels() == []
    await add_history(local_app, corpus(60, seed=9), start=5000)
    assert await local_app.runner.due_channels() == [REF]


async def test_old_versions_beyond_the_kept_count_are_deleted(
    tmp_path: Path, local_settings: Settings
) -> None:
    settings = local_settings.model_copy(update={"keep_versions": 2})
    async with running_app(settings) as app:
        await ready_channel(app)
        paths = []
        for seed in range(3):
            outcome = await app.training.train(REF, QUICK.but(seed=seed, max_steps=5))
            paths.append(Path(outcome.version.path))
        versions = await app.registry.versions(REF)
        assert len(versions) == 2
        assert any(v.status == "active" for v in versions)
        kept = {Path(v.path) for v in versions}
        for path in paths:
            assert path.exists() == (path in kept), path  # pruned rows lose their files too
