"""`/models reset`: an admin retires every version of a channel, after confirming; the
base answers, and the next training starts again from it on the whole history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.app import App
from bot.domain import GenerationRequest
from bot.errors import UserError
from tests.integration.test_training import ADMIN, MEMBER, QUICK, REF, ready_channel


async def trained(app: App) -> None:
    await ready_channel(app)
    assert (await app.training.train(REF, QUICK)).promoted


async def answering_model(app: App) -> str:
    settings = app.settings.default_sampling().merged({"max_new_tokens": 4, "seed": 1})
    return (await app.generator.generate(GenerationRequest(REF, settings, prompt="hi"))).model


async def test_reset_asks_first_then_the_base_answers_and_versions_stay_retired(
    local_app: App,
) -> None:
    await trained(local_app)
    assert await answering_model(local_app) == "v1"

    asked = await local_app.core.on_command(ADMIN, "/models reset")
    assert "/models reset confirm" in asked.texts[0]
    assert await answering_model(local_app) == "v1"  # nothing happened yet

    done = await local_app.core.on_command(ADMIN, "/models reset confirm")
    assert not done.is_error and "1" in done.texts[0]
    assert await local_app.registry.active(REF) is None
    assert await answering_model(local_app) != "v1"
    assert [v.status for v in await local_app.registry.versions(REF)] == ["reset"]

    # A reset version never comes back, by activation or rollback.
    for command in ("/models activate 1", "/models rollback"):
        assert (await local_app.core.on_command(ADMIN, command)).is_error
    assert await local_app.registry.active(REF) is None
    again = await local_app.core.on_command(ADMIN, "/models reset confirm")
    assert again.is_error  # nothing left to reset


async def test_only_an_admin_may_reset(local_app: App) -> None:
    await trained(local_app)
    for command in ("/models reset", "/models reset confirm"):
        reply = await local_app.core.on_command(MEMBER, command)
        assert reply.is_error
    with pytest.raises(UserError):
        await local_app.commands.models.reset(MEMBER, confirmed=True)
    assert (await local_app.registry.active(REF)) is not None


async def test_after_a_reset_the_channel_is_due_and_trains_from_its_base(local_app: App) -> None:
    await trained(local_app)
    assert await local_app.runner.due_channels() == []  # nothing new since v1
    await local_app.core.on_command(ADMIN, "/models reset confirm")
    assert await local_app.runner.due_channels() == [REF]  # its whole history, again

    outcome = await local_app.training.train(REF, QUICK)
    assert outcome.version.version == 2 and outcome.promoted
    metadata = json.loads((Path(outcome.version.path) / "metadata.json").read_text("utf-8"))
    versions = await local_app.registry.versions(REF)
    assert metadata["start"] != versions[0].path  # from the base, not from v1
    assert metadata["start"] == str(await local_app.resolver.base_dir(REF))
    assert await answering_model(local_app) == "v2"
