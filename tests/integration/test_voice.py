"""One member's voice, with that member's consent: `/continue … as:@member` after their
`/voice on` in the channel, refused otherwise, after `/voice off` and after forget-me,
and never in another channel; trained with their voice tag and measured on their
held-out messages."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import App, running_app
from bot.config import Settings
from bot.core.context import CommandContext
from bot.domain import DISARMED, Author, ChannelRef, strip_voice_tag, voice_tag
from tests.integration.test_training import QUICK, add_history, corpus
from tests.integration.test_unprompted import CountingGenerator

REF = ChannelRef("discord", "guild", "chan")
OTHER = ChannelRef("discord", "guild", "other")
TARO = CommandContext(REF, Author("1001", "taro"))
HANAKO = CommandContext(REF, Author("1002", "hanako", is_admin=True))
REFUSED = "has not lent this channel their voice"


@pytest.fixture
async def app(local_settings: Settings) -> AsyncIterator[tuple[App, CountingGenerator]]:
    generator = CountingGenerator()
    async with running_app(local_settings, generator=generator) as application:
        yield application, generator


async def say(app: App, ctx: CommandContext, line: str) -> tuple[bool, str]:
    reply = await app.core.on_command(ctx, line)
    return reply.is_error, reply.texts[0]


async def test_as_a_member_needs_their_own_consent(app: tuple[App, CountingGenerator]) -> None:
    application, generator = app
    # Nobody, an admin included, may write as a member who has not lent their voice.
    assert await say(application, HANAKO, "/continue 今日は as:<@1001>") == (
        True,
        "That member has not lent this channel their voice. Only they can, with /voice on; "
        "until then nobody can write as them.",
    )
    assert generator.requests == []

    error, text = await say(application, TARO, "/voice on")
    assert not error and "lent discord:guild/chan your voice" in text
    error, text = await say(application, HANAKO, "/continue 今日は as:<@1001> temperature=0.5")
    assert not error and text == "今日は …"  # the tag never shows
    sent = generator.requests[-1]
    key = await application.messages.voice_key()
    assert (sent.voice, sent.prompt) == (voice_tag(REF, "1001", key), "今日は")
    assert sent.settings.temperature == 0.5

    # Off: refused at once.
    await say(application, TARO, "/voice off")
    error, text = await say(application, HANAKO, "/continue 今日は as:<@1001>")
    assert error and REFUSED in text
    assert len(generator.requests) == 1


async def test_never_across_channels_and_gone_with_forget_me(
    app: tuple[App, CountingGenerator],
) -> None:
    application, _ = app
    await say(application, TARO, "/voice on")
    elsewhere = CommandContext(OTHER, HANAKO.actor)
    error, text = await say(application, elsewhere, "/continue hi as:<@1001>")
    assert error and REFUSED in text
    key = await application.messages.voice_key()
    assert voice_tag(REF, "1001", key) != voice_tag(OTHER, "1001", key)

    # Forget-me (opting out) takes the voice with the messages.
    await say(application, TARO, "/optout")
    error, text = await say(application, HANAKO, "/continue hi as:<@1001>")
    assert error and REFUSED in text
    _, status = await say(application, TARO, "/voice")
    assert "not lent" in status


async def test_consent_is_audited(app: tuple[App, CountingGenerator]) -> None:
    application, _ = app
    await say(application, TARO, "/voice on")
    await say(application, TARO, "/voice off")
    audit = await application.channels.audit(REF)
    assert [(a.actor, a.action) for a in audit] == [
        ("discord:1001", "voice.on"),
        ("discord:1001", "voice.off"),
    ]


async def test_the_model_learns_the_voice_and_measures_it(local_app: App) -> None:
    app = local_app
    tag = voice_tag(REF, "1001", await app.messages.voice_key())
    # Keyed with this installation's own secret: not the hash anyone could compute.
    public = "«" + hashlib.sha256(f"{REF}/1001".encode()).hexdigest()[:6] + "»"
    assert tag != public
    # hanako's messages that open with taro's tag (and the public one): her text, not
    # taro's voice.
    forged = [f"{tag}偽物の猫 {i}" for i in range(3)] + [f"{public}偽物 {i}" for i in range(3)]
    await add_history(app, forged, author="1002", start=1000, ref=REF)
    # taro writes about cats, hanako about the castle: the channel mixes both.
    await add_history(app, [f"猫が {i % 7} 匹いる。" for i in range(150)], author="1001", ref=REF)
    await add_history(app, corpus(150), author="1002", start=150, ref=REF)
    interleaved = [
        (("1001", f"猫が {i % 7} 匹いる。") if i % 2 else ("1002", corpus(1, seed=i)[0]))
        for i in range(60)
    ]
    for i, (who, text) in enumerate(interleaved):
        await add_history(app, [text], author=who, start=300 + i, ref=REF)
    await app.channels.set_training(REF, True, actor="test")
    await say(app, TARO, "/voice on")

    outcome = await app.training.train(REF, QUICK.but(max_steps=60))
    metadata = json.loads((Path(outcome.version.path) / "metadata.json").read_text())
    tag = voice_tag(REF, "1001", await app.messages.voice_key())
    assert list(metadata["voices"]) == [tag]  # hanako lent no voice: no tag
    figure = metadata["voices"][tag]
    assert figure["messages"] >= 3
    # With the tag, taro's held-out messages cost fewer bits than as the channel.
    assert figure["bits_as_voice"] < figure["bits_as_channel"]
    _, status = await say(app, TARO, "/voice")
    assert f"v1 on your {figure['messages']} newest messages" in status

    error, text = await say(app, HANAKO, "/continue 猫が as:<@1001> seed=1 max_new_tokens=12")
    assert not error and text.startswith("猫が") and "«" not in text

    # Off: nobody may ask for it, and typing the tag is no way round that: the model
    # reads a typed tag as the plain text it is (disarmed), so the same seed writes the
    # same continuation after it as after its disarmed spelling.
    await say(app, TARO, "/voice off")
    typed = await say(app, HANAKO, f"/continue {tag}猫が seed=2 max_new_tokens=12")
    plain = await say(app, HANAKO, f"/continue {DISARMED}{tag[1:]}猫が seed=2 max_new_tokens=12")
    assert not typed[0] and typed[1].startswith(tag + "猫が")
    assert typed[1][len(tag) :] == plain[1][len(tag) :]

    # Off: the next version trains without the tag.
    await app.registry.reset(REF, actor="test")
    outcome = await app.training.train(REF, QUICK.but(max_steps=5))
    metadata = json.loads((Path(outcome.version.path) / "metadata.json").read_text())
    assert metadata["voices"] == {}


def test_a_tag_never_shows_in_a_reply() -> None:
    tag = voice_tag(REF, "1001", b"key")
    assert strip_voice_tag(tag + "こんにちは") == "こんにちは"
    assert strip_voice_tag("«not a tag» x") == "«not a tag» x"
