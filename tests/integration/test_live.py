"""The live voice, in one trained channel (scratch:tiny through the real bootstrap):

- a message stored now moves the model's probabilities at once, an edit replaces its
  counts, and a delete or the author's opt-out gives back exactly the figure before;
  a restart in between comes back to the same numbers;
- the leak guard: a member's long message is never copied 32 characters on, a stored
  34-character one never comes back whole, while the positive control (the guard's
  thresholds out of reach) copies them;
- a prompt cut inside a frequent word goes on with the word.

The channel is trained once for the module; each test works on a copy of its data.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.app import App, running_app
from bot.config import Settings, load_settings
from bot.core.command_values import Continue, SetOptOut, SetSetting
from bot.core.context import CommandContext
from bot.domain import Author, ChannelRef, ChatMessage, GenerationRequest
from bot.generation.loading import load_directory
from bot.generation.ngram import Mixture
from bot.generation.verbatim import GuardLimits
from bot.records import ImportBatch
from bot.training.evaluation import token_probs

A = ChannelRef.parse("console:live")
ASKER = Author("asker", "Asker")
ADMIN = Author("admin", "Admin", is_admin=True)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TRAIN: dict[str, Any] = {"max_steps": 40, "batch_size": 8, "block_size": 64, "learning_rate": 3e-3}

LONG = "the vault code is 4471-KESTREL-amber, keep it between us ok?"  # 60 characters
SHORT = "meet me behind the old gym at nine"  # 34 characters
SUBJECTS = ["織田信長は、", "豊臣秀吉は、", "the cat", "our club", "本能寺で"]
ENDINGS = ["尾張の大名だった。", "天下を目指した。", "likes onigiri.", "meets on friday."]


def history() -> list[ChatMessage]:
    rng = random.Random(5)
    out = []
    for i in range(240):
        author = Author(rng.choice(["taro", "hanako"]), "")
        if i % 60 == 7:
            text = LONG  # a member who says it now and then
        elif i % 60 == 31:
            text = SHORT
        elif i % 7 == 0:
            text = "織田信長は、" + rng.choice(ENDINGS)
        else:
            text = f"{rng.choice(SUBJECTS)} {rng.choice(ENDINGS)}"
        out.append(ChatMessage(A, f"m{i}", author, text, T0 + timedelta(minutes=i)))
    return out


def settings_at(root: Path) -> Settings:
    return load_settings(
        data_dir=root / "data",
        database_url=f"sqlite+aiosqlite:///{root / 'live.db'}",
        base_model="scratch:tiny",
        torch_threads=1,
        rate_per_user_per_minute=0,
        rate_per_channel_per_minute=0,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")

    async def prepare() -> None:
        async with running_app(settings_at(root)) as app:
            await app.messages.add_batch(ImportBatch(messages=history()))
            await app.channels.set_training(A, True, actor="test")
            await app.jobs.enqueue("train", A, TRAIN, priority=9)
            await app.runner.run_pending()
            assert await app.registry.active(A) is not None

    asyncio.run(prepare())
    return root


@pytest.fixture
async def app(trained: Path, tmp_path: Path) -> AsyncIterator[App]:
    shutil.copytree(trained, tmp_path / "copy")
    async with running_app(settings_at(tmp_path / "copy")) as application:
        yield application


async def phrase_probability(app: App, prompt: str, phrase: str) -> float:
    """The probability the served mixture (the version's network, the channel's live
    counts) gives `phrase` right after `prompt`, as a generation samples from it."""
    source = await app.resolver.resolve(A)
    live = await app.engine.generator.server.live.view(A, source, GuardLimits())  # type: ignore[attr-defined]
    assert live is not None

    def score() -> float:
        loaded = load_directory(Path(source.location), "v")
        tok = loaded.tokenizer
        head = [loaded.eos_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
        body = tok(phrase, add_special_tokens=False)["input_ids"]
        stream = np.array(head + body, dtype=np.int64)
        start = len(head) - 1
        mixture = Mixture.load(Path(source.location))
        assert mixture is not None
        p_network = token_probs(loaded.model, stream, 64)[start:]
        p_counts = live.ngram.stream_probs(stream)[start:]
        w = mixture.weight
        return float(np.prod(w * p_network + (1 - w) * p_counts))

    return await asyncio.to_thread(score)


async def say(app: App, prompt: str, **overrides: object) -> str:
    reply = await app.core.on_command(CommandContext(A, ASKER), Continue(prompt, overrides))
    assert not reply.is_error, reply.texts
    return reply.texts[0]


NEW_PROMPT, NEW_WORD = "my cat is called", " Zorbleflux"


async def test_a_new_word_is_learnt_at_once_and_forgotten_exactly(app: App, tmp_path: Path) -> None:
    before = await phrase_probability(app, NEW_PROMPT, NEW_WORD)
    coined = ChatMessage(A, "new-1", Author("taro", ""), NEW_PROMPT + NEW_WORD, datetime.now(UTC))
    await app.core.on_message(coined)
    learnt = await phrase_probability(app, NEW_PROMPT, NEW_WORD)
    assert learnt > 100 * before, (before, learnt)

    # A restart comes back to the same counts (from the database).
    await app.close()
    async with running_app(settings_at(tmp_path / "copy")) as again:
        assert await phrase_probability(again, NEW_PROMPT, NEW_WORD) == pytest.approx(learnt)
        # An edit replaces the message's counts; a delete takes them out: exactly back.
        await again.core.on_edit(A, "new-1", "my cat is called Mittens", datetime.now(UTC))
        assert await phrase_probability(again, NEW_PROMPT, NEW_WORD) == pytest.approx(before)
        await again.core.on_edit(A, "new-1", NEW_PROMPT + NEW_WORD, datetime.now(UTC))
        assert await phrase_probability(again, NEW_PROMPT, NEW_WORD) == pytest.approx(learnt)
        await again.core.on_delete(A, ["new-1"])
        assert await phrase_probability(again, NEW_PROMPT, NEW_WORD) == pytest.approx(before)

        # A member says it, then opts out: their words leave the counts with them.
        kumo = Author("kumo", "Kumo")
        said = ChatMessage(A, "new-2", kumo, NEW_PROMPT + NEW_WORD, datetime.now(UTC))
        await again.core.on_message(said)
        assert await phrase_probability(again, NEW_PROMPT, NEW_WORD) == pytest.approx(learnt)
        reply = await again.core.on_command(CommandContext(A, kumo), SetOptOut(True))
        assert not reply.is_error
        assert await phrase_probability(again, NEW_PROMPT, NEW_WORD) == pytest.approx(before)


def _longest_copy(text: str, source: str) -> int:
    """The longest run of `text` that is also a run of `source`."""
    best = 0
    for i in range(len(text)):
        for j in range(i + best + 1, len(text) + 1):
            if text[i:j] in source:
                best = j - i
            else:
                break
    return best


async def test_no_member_message_comes_back_whole(app: App) -> None:
    # The positive control: with the guard's thresholds out of reach, the channel's
    # model copies the long message on from its first 10 characters.
    unguarded = GenerationRequest(
        A,
        app.settings.default_sampling().merged({"temperature": 0}),
        prompt=LONG[:10],
        verbatim_whole=100_000,
        verbatim_run=100_000,
    )
    copied = (await app.generator.generate(unguarded)).texts[0]
    assert _longest_copy(copied[10:], LONG[10:]) >= 32, copied

    # Guarded (the defaults): 20 seeded generations and a greedy one never copy 32
    # characters of its rest, and the 34-character message never comes back whole.
    texts = [await say(app, LONG[:10], seed=seed) for seed in range(20)]
    texts.append(await say(app, LONG[:10], temperature=0))
    for text in texts:
        assert _longest_copy(text[10:], LONG[10:]) < 32, text
    shorts = [await say(app, SHORT[:8], seed=seed) for seed in range(10)]
    shorts.append(await say(app, SHORT[:8], temperature=0))
    assert not any(SHORT in text for text in shorts), shorts
    # The user may type it all: what the prompt holds is theirs.
    assert (await say(app, SHORT, temperature=0)).startswith(SHORT)

    # Elsewhere the channel's voice is as it was: its phrases (shorter than a whole
    # message, or not one) still come.
    ordinary = [await say(app, "the cat", seed=seed) for seed in range(5)]
    assert all(any(e[:6] in text for e in ENDINGS) for text in ordinary), ordinary
    blocked = app.worker.metrics.registry.get_sample_value("tsuzuki_verbatim_blocked_total")
    assert blocked is not None and blocked > 0


async def test_the_guard_thresholds_are_the_admins(app: App) -> None:
    admin = CommandContext(A, ADMIN)
    refused = await app.core.on_command(CommandContext(A, ASKER), SetSetting("verbatim_run", "99"))
    assert refused.is_error
    typed = await app.core.on_command(
        CommandContext(A, ASKER), Continue(LONG[:10], {"verbatim_run": 100_000})
    )
    assert typed.is_error  # not for one request either
    reply = await app.core.on_command(admin, SetSetting("verbatim_run", "100000"))
    assert not reply.is_error, reply.texts
    await app.core.on_command(admin, SetSetting("verbatim_whole", "100000"))
    copied = await say(app, LONG[:10], temperature=0)
    assert _longest_copy(copied[10:], LONG[10:]) >= 32, copied


async def test_a_prompt_cut_inside_a_frequent_word_goes_on_with_it(app: App) -> None:
    texts = [await say(app, "織田信", seed=seed) for seed in range(10)]
    assert sum(text.startswith("織田信長") for text in texts) >= 7, texts
    texts = [await say(app, "本能", seed=seed) for seed in range(10)]
    assert sum(text.startswith("本能寺") for text in texts) >= 7, texts
