"""Banned words through the real app and a scratch model trained to say them: 200
seeded replies never contain one (the engine picks other tokens, it does not just cut
the text), a prompt with one is refused, and with `banned_words_train on` training
leaves the messages that contain one out."""

from __future__ import annotations

import random

from bot.app import App, running_app
from bot.config import Settings
from bot.domain import GenerationRequest
from bot.errors import UserError
from tests.integration.test_training import (
    ADMIN,
    MEMBER,
    QUICK,
    REF,
    SUBJECTS,
    add_history,
    corpus,
)

# Every message says one of them: a model trained on these says them after "the cat".
FOODS = ["ramen", "ラーメン"]


def menu(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(FOODS)} {rng.choice(SUBJECTS)}" for _ in range(n)]


def says(text: str) -> bool:
    return "ramen" in text.lower() or "ラーメン" in text


async def texts(app: App, banned: tuple[str, ...] = (), prompt: str = "the cat") -> list[str]:
    """200 seeded continuations from the engine itself (not the core, which would cut
    a banned word out of any text anyway), 5 a request: what the model wrote."""
    out: list[str] = []
    for seed in range(40):
        settings = app.settings.default_sampling().merged(
            {"seed": seed, "n": 5, "max_new_tokens": 16, "temperature": 1.0}
        )
        request = GenerationRequest(REF, settings, prompt=prompt, banned_words=banned)
        result = await app.generator.generate(request)
        out += [t[len(prompt) :] for t in result.texts]
    return out


async def test_banned_words_never_come_out_of_a_model_that_learnt_them(
    local_settings: Settings,
) -> None:
    settings = local_settings.model_copy(
        update={"rate_per_user_per_minute": 10_000, "rate_per_channel_per_minute": 10_000}
    )
    async with running_app(settings) as app:
        await add_history(app, menu(300))
        await app.channels.set_training(REF, True, actor="test")
        assert (await app.training.train(REF, QUICK)).promoted
        before = await texts(app)
        assert sum(map(says, before)) >= 100  # it learnt to say them

        # The engine picks other tokens where one would be completed.
        after = await texts(app, ("Ramen", "ラーメン"))
        assert len(after) == 200 and not any(map(says, after))
        assert sum(bool(t.strip()) for t in after) >= 20  # not every text just ended

        # Through the channel's setting, as members get them.
        await app.commands.settings.set(ADMIN, "banned_words", "Ramen, ラーメン")
        for seed in range(10):
            reply = await app.commands.replies.continue_text(MEMBER, "the cat", {"seed": seed})
            assert not says(reply.texts[0])
            answer = await app.commands.replies.reply(MEMBER)
            assert not says(answer.texts[0])
        try:
            await app.commands.replies.continue_text(MEMBER, "my RAMEN", {})
        except UserError as refused:
            assert "banned_words" in refused.reason
        else:
            raise AssertionError("a prompt with a banned word was continued")


async def test_training_can_leave_out_the_messages_with_banned_words(local_app: App) -> None:
    history = menu(150) + corpus(150, seed=3)  # some of corpus()'s say ramen too
    await add_history(local_app, history)
    await local_app.channels.set_training(REF, True, actor="test")
    await local_app.commands.settings.set(ADMIN, "banned_words", "ramen, ラーメン")
    read = (await local_app.training.train(REF, QUICK)).dataset
    assert read.messages + read.skipped == 300  # banned words alone leave training be
    await local_app.commands.settings.set(ADMIN, "banned_words_train", "on")
    read = (await local_app.training.train(REF, QUICK)).dataset
    assert read.messages + read.skipped == sum(not says(t) for t in history) < 150
