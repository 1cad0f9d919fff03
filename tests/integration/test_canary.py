"""A canary: a channel's model trained on a unique string never emits it in another
channel, and after the member who wrote it opts out, the string is gone for good: not
in the next version's data, weights or n-gram, and no version that learnt it can be
served, activated or rolled back to again, nor a run that read it be registered.

Real bootstrap (running_app, scratch:tiny), training through the job runner, requests
through the core as a platform sends them.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bot.app import App, running_app
from bot.config import Settings
from bot.core.command_values import ActivateModel, Continue, ListModels, RollbackModel, SetOptOut
from bot.core.context import CommandContext
from bot.domain import (
    Author,
    ChannelRef,
    ChatMessage,
    GenerationRequest,
    GenerationResult,
    ModelVersionInfo,
    Reply,
)
from bot.generation.loading import load_directory, load_tokenizer
from bot.generation.ngram import Mixture
from bot.records import ImportBatch, JobInfo
from bot.statuses import VersionStatus
from bot.training.dataset import load_tokens
from bot.training.evaluation import token_probs
from bot.training.run_config import StepResult

A = ChannelRef.parse("console:alpha")
B = ChannelRef.parse("console:beta")
X = Author("xmember", "X")  # writes the canary in A, then opts out
ADMIN = Author("admin", "Admin", is_admin=True)
T0 = datetime(2026, 1, 1, tzinfo=UTC)

PREFIX = "ZQX-canary-"
SECRET = "7731 heron violet plinth"
CANARY = PREFIX + SECRET
SEEDS = (1, 2, 3, 4)
# Enough for a tiny scratch model (with its n-gram) to learn the canary by heart.
TRAIN: dict[str, Any] = {"max_steps": 40, "batch_size": 8, "block_size": 64, "learning_rate": 3e-3}
# After the opt-out: short, so a run that started from the old weights would still
# know the canary (and one from the base cannot have learnt it).
RETRAIN: dict[str, Any] = {**TRAIN, "max_steps": 10}

SUBJECTS = ["織田信長は", "豊臣秀吉は", "徳川家康は", "the cat", "our club", "the river"]
VERBS = [
    "尾張の大名だった。",
    "天下を目指した。",
    "ramen が好きだった。",
    "likes onigiri.",
    "meets on friday.",
    "runs to the sea.",
]
PROMPTS = (PREFIX, "ZQX", "the cat", "織田信長は")


def leaks(text: str) -> bool:
    """Anything of the canary's secret part (nothing else in either channel has it)."""
    return "7731" in text or "plinth" in text or "heron" in text


def history(ref: ChannelRef, n: int, seed: int, canary_every: int = 0) -> list[ChatMessage]:
    """Ordinary chatter by two members; with `canary_every`, X writes the canary every
    so many messages (further apart than the dataset's spam filter looks)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if canary_every and i % canary_every == 0:
            author, text = X, CANARY
        else:
            author = Author(rng.choice(["taro", "hanako"]), "")
            text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)}"
        out.append(ChatMessage(ref, f"{ref.channel}-{i}", author, text, T0 + timedelta(minutes=i)))
    return out


@dataclass
class RunData:
    """What a run trained and was measured on, read while it trained."""

    texts: dict[str, str] = field(default_factory=dict)  # train/valid/eval .jsonl
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))  # train.bin


async def train(
    app: App,
    ref: ChannelRef,
    runs: list[RunData] | None = None,
    on_run: Callable[[RunData], None] = lambda run: None,
    payload: dict[str, Any] = TRAIN,
) -> None:
    """A training job for the channel, run as the job runner runs it; `runs` gets each
    attempt's dataset files, read at its first step (the run directory goes after),
    and `on_run` is called with them there."""
    run_dir = app.settings.models_dir / ref.slug / "run"

    def on_step(result: StepResult, total: int) -> None:
        if runs is not None and result.step == 1:
            names = ("train", "valid", "eval")
            run = RunData(
                {n: (run_dir / f"{n}.jsonl").read_text("utf-8") for n in names},
                np.array(load_tokens(run_dir / "train.bin")),
            )
            runs.append(run)
            on_run(run)

    def progress(job: JobInfo) -> Callable[[StepResult, int], None]:
        return on_step

    job = await app.jobs.enqueue("train", ref, payload, priority=9)
    await app.runner.run_pending(progress=progress)
    [done] = [j for j in await app.jobs.recent() if j.id == job.id]
    assert done.status == "succeeded", done.error


async def say(app: App, ref: ChannelRef, prompt: str, seed: int) -> str:
    reply = await app.core.on_command(
        CommandContext(ref, Author("asker", "Asker")), Continue(prompt, {"seed": seed})
    )
    assert not reply.is_error, reply.texts
    return reply.texts[0]


async def control(app: App) -> list[str]:
    """A's answers to the canary's prefix, one per seed."""
    return [await say(app, A, PREFIX, seed) for seed in SEEDS]


def exposure(version: str) -> tuple[float, float]:
    """How likely a version finds the canary's secret after its prefix, per character
    (geometric mean): by its network alone, and by its n-gram alone."""
    loaded = load_directory(Path(version), "v")
    tokenizer = loaded.tokenizer
    prefix = [loaded.eos_id, *tokenizer(PREFIX, add_special_tokens=False)["input_ids"]]
    secret = tokenizer(SECRET, add_special_tokens=False)["input_ids"]
    stream = np.array(prefix + secret, dtype=np.int64)
    start = len(prefix) - 1  # the probability of secret[0] sits at the last prefix token
    p_network = token_probs(loaded.model, stream, 64)[start:]
    mixture = Mixture.load(Path(version))
    assert mixture is not None
    p_ngram = mixture.ngram.stream_probs(stream)[start:]
    chars = len(SECRET)
    return (
        float(np.exp(np.log(p_network).sum() / chars)),
        float(np.exp(np.log(p_ngram).sum() / chars)),
    )


def no_limits(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"rate_per_user_per_minute": 0, "rate_per_channel_per_minute": 0}
    )


async def test_a_canary_stays_in_its_channel_and_is_forgotten_on_opt_out(
    local_settings: Settings,
) -> None:
    async with running_app(no_limits(local_settings)) as app:
        await app.messages.add_batch(ImportBatch(messages=history(A, 240, 1, canary_every=6)))
        await app.messages.add_batch(ImportBatch(messages=history(B, 240, 2)))
        for ref in (A, B):
            await app.channels.set_training(ref, True, actor="test")
            await train(app, ref)
        v1 = await app.registry.active(A)
        assert v1 is not None and v1.version == 1

        # The positive control: A has learnt the canary by heart (its likelihood), so
        # the checks below mean something. Yet the leak guard never lets A's replies
        # hand the member's message back whole, and counts what it turned down.
        v1_network, v1_ngram = await app.worker.run(exposure, v1.path)
        assert v1_network > 0.1 and v1_ngram > 0.5
        before = await control(app)
        assert not any(CANARY in text for text in before), before
        blocked = app.worker.metrics.registry.get_sample_value("tsuzuki_verbatim_blocked_total")
        assert blocked is not None and blocked >= len(SEEDS)

        # B never says it: to its own prompts, to the canary's prefix, in mention
        # replies; alone, and in the same device batches as A's requests for it.
        async def mention(i: int) -> str:
            message = ChatMessage(B, f"mention-{i}", Author(f"m{i}", ""), f"@bot {PREFIX}", T0)
            reply = await app.core.on_message(message, mentions_bot=True)
            assert isinstance(reply, Reply) and not reply.is_error
            return reply.texts[0]

        b_alone = [await say(app, B, p, s) for p in PROMPTS for s in SEEDS[:2]]
        together = await asyncio.gather(
            *(say(app, A, PREFIX, s) for s in SEEDS),
            *(say(app, B, p, s) for p in PROMPTS for s in SEEDS),
            *(mention(i) for i in range(4)),
        )
        a_together, b_together = together[: len(SEEDS)], together[len(SEEDS) :]
        assert a_together == before  # the same seeds give A the same text in a batch
        for text in b_alone + b_together:
            assert not leaks(text), text

        # Forget me: X opts out, as a platform passes it on.
        reply = await app.core.on_command(CommandContext(A, X), SetOptOut(True))
        assert not reply.is_error and "40 deleted" in reply.texts[0], reply.texts
        # At once, no version that learnt X's words answers, or can be chosen again;
        # its files are gone, and so is A's scratch base, whose tokenizer learnt the
        # canary's words. (A had no earlier version: a new base answers.)
        assert await app.registry.active(A) is None
        assert not any(CANARY in text for text in await control(app))
        assert not Path(v1.path).exists()
        models = app.settings.models_dir
        assert not (models / A.slug / "scratch-tiny").exists()
        assert (models / B.slug / "scratch-tiny").is_dir()  # B's is B's own
        admin = CommandContext(A, ADMIN)
        assert (await app.core.on_command(admin, RollbackModel())).is_error
        refused = await app.core.on_command(admin, ActivateModel("v1"))
        assert refused.is_error and "forgotten" in refused.texts[0], refused.texts
        listed = (await app.core.on_command(admin, ListModels())).texts[0]
        assert "v1 forgotten" in listed
        assert await app.registry.active(B) is not None  # B had nothing of X's

        # A is due for training again though nothing new was said; its next version
        # starts from the base, on data without the canary, and has not learnt it.
        assert A in await app.runner.due_channels()
        runs: list[RunData] = []
        await train(app, A, runs, payload=RETRAIN)
        [run] = runs
        for name, text in run.texts.items():
            assert "ZQX" not in text and not leaks(text), name
        v2 = await app.registry.active(A)
        assert v2 is not None and v2.version == 2
        tokenizer = load_tokenizer(Path(v2.path))
        assert not leaks(tokenizer.decode(run.tokens.tolist()))
        vocabulary = " ".join(tokenizer.get_vocab())
        assert "ZQX" not in vocabulary and not leaks(vocabulary)
        metadata = json.loads((Path(v2.path) / "metadata.json").read_text("utf-8"))
        assert Path(metadata["start"]) == models / A.slug / "scratch-tiny.f1"
        after = await control(app)
        assert not any(leaks(text) for text in after), after
        # Neither its network nor its n-gram (counted on the new data) expects the
        # secret after the prefix. (Had v2 started from v1's weights and tokenizer,
        # as it did before, its network would still: about 0.7 a character.)
        v2_network, v2_ngram = await app.worker.run(exposure, v2.path)
        assert v2_network < v1_network / 20 and v2_ngram < v1_ngram / 20


async def test_a_run_that_read_forgotten_messages_is_never_registered(
    local_settings: Settings,
) -> None:
    """X opts out while A trains on a dataset holding the canary: that run is discarded
    and trained again on what is left, so no version ever holds the canary."""
    async with running_app(no_limits(local_settings)) as app:
        await app.messages.add_batch(ImportBatch(messages=history(A, 120, 3, canary_every=6)))
        await app.channels.set_training(A, True, actor="test")
        opt_out: list[asyncio.Task[Reply]] = []
        runs: list[RunData] = []

        def forget_me(run: RunData) -> None:
            if not opt_out:  # at the first attempt's first step
                command = app.core.on_command(CommandContext(A, X), SetOptOut(True))
                opt_out.append(asyncio.ensure_future(command))

        await train(app, A, runs, forget_me)
        assert opt_out and opt_out[0].done() and not opt_out[0].result().is_error
        first, second = runs
        assert CANARY in first.texts["train"]
        for text in second.texts.values():
            assert "ZQX" not in text and not leaks(text)
        [v1] = await app.registry.versions(A)
        assert (v1.version, v1.status) == (1, "active")
        vocabulary = " ".join(load_tokenizer(Path(v1.path)).get_vocab())
        assert "ZQX" not in vocabulary and not leaks(vocabulary)
        assert not any(leaks(text) for text in await control(app))


async def test_an_opt_out_withdraws_exactly_the_versions_that_may_hold_the_words(
    app: App,
) -> None:
    """v1 predates X's messages and stays; v2 learnt them and v3 came after (it may
    have started from v2's weights): both go, and v1 answers again at once."""
    taro = Author("taro", "Taro")

    async def say_and_register(author: Author, start: int, status: str) -> ModelVersionInfo:
        await app.messages.add_batch(
            ImportBatch(
                messages=[
                    ChatMessage(A, f"m{i}", author, f"message {i}", T0 + timedelta(minutes=i))
                    for i in range(start, start + 5)
                ]
            )
        )
        _, newest = await app.messages.training_snapshot(A)
        version = await app.registry.next_version(A)
        path = app.settings.models_dir / A.slug / f"v{version}"
        path.mkdir(parents=True)
        info = ModelVersionInfo(
            A,
            version,
            "scratch:tiny",
            "full",
            str(path),
            VersionStatus.CANDIDATE,
            T0,
            last_message_id=newest,
        )
        assert await app.registry.add(info, forget_epoch=await app.registry.forget_epoch(A))
        if status == "active":
            await app.registry.activate(A, version, actor="test")
        return info

    v1 = await say_and_register(taro, 0, "active")
    v2 = await say_and_register(X, 100, "active")
    v3 = await say_and_register(taro, 200, "candidate")
    epoch = await app.registry.forget_epoch(A)
    assert epoch == 0

    reply = await app.core.on_command(CommandContext(A, X), SetOptOut(True))
    assert not reply.is_error and "5 deleted" in reply.texts[0]
    statuses = {v.version: v.status for v in await app.registry.versions(A)}
    assert statuses == {1: "active", 2: "forgotten", 3: "forgotten"}
    assert [Path(v.path).exists() for v in (v1, v2, v3)] == [True, False, False]
    assert await app.registry.forget_epoch(A) == 1
    assert "messages.forget" in [e.action for e in await app.channels.audit(A)]
    admin = CommandContext(A, ADMIN)
    assert (await app.core.on_command(admin, RollbackModel())).is_error
    assert (await app.core.on_command(admin, ActivateModel("3"))).is_error
    # A run that read its data before the opt-out is refused at registration.
    late = ModelVersionInfo(A, 4, "scratch:tiny", "full", "/nowhere", VersionStatus.CANDIDATE, T0)
    assert not await app.registry.add(late, forget_epoch=epoch)
    assert [v.version for v in await app.registry.versions(A)] == [1, 2, 3]
    # Opting out again, with nothing left to forget, changes nothing.
    await app.core.on_command(CommandContext(A, X), SetOptOut(True))
    assert await app.registry.forget_epoch(A) == 1


async def test_a_canary_stays_in_its_adapter_when_channels_share_decoding(
    tmp_path: Path, local_settings: Settings
) -> None:
    """Over one pretrained base, A and B are LoRA adapters decoded in one loop, row by
    row with each row's adapter and n-gram: B's rows never get A's canary."""
    from bot.generation.scratch import create_scratch
    from bot.generation.spec import SCRATCH_SIZES

    base_dir = tmp_path / "pretrained"
    generic = [m.text for m in history(B, 200, 7)]
    create_scratch(base_dir, SCRATCH_SIZES["tiny"], generic)
    settings = no_limits(local_settings).model_copy(update={"base_model": str(base_dir)})
    async with running_app(settings) as app:
        await app.messages.add_batch(ImportBatch(messages=history(A, 240, 1, canary_every=6)))
        await app.messages.add_batch(ImportBatch(messages=history(B, 240, 2)))
        for ref in (A, B):
            await app.channels.set_training(ref, True, actor="test")
            await train(app, ref)
        for ref in (A, B):
            active = await app.registry.active(ref)
            assert active is not None and active.method == "lora"
        # The positive control: A's rows write the canary's secret (the leak guard
        # stops them before it is whole), so B's rows not writing it means something.
        before = await control(app)
        assert all(leaks(text) and CANARY not in text for text in before), before

        defaults = settings.default_sampling()

        async def generate(ref: ChannelRef, prompt: str, seed: int) -> GenerationResult:
            request = GenerationRequest(ref, defaults.merged({"seed": seed}), prompt=prompt)
            return await app.generator.generate(request)

        results = await asyncio.gather(
            *(generate(A, PREFIX, s) for s in SEEDS),
            *(generate(B, p, s) for p in PROMPTS for s in SEEDS[:3]),
        )
        a_results, b_results = results[: len(SEEDS)], results[len(SEEDS) :]
        # A's rows were decoded together with B's, not alone.
        assert max(r.batch_rows for r in a_results) > len(SEEDS)
        assert [r.texts[0] for r in a_results] == before
        for result in b_results:
            assert not leaks(result.texts[0]), result.texts
