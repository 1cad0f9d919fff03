"""Ray mode end to end: the real Discord and Slack clients over real sockets to the
fakes, the bot's generation on a Ray Serve deployment and its training as a Ray task
(a local Ray of this machine's cores), and several bot processes sharing one database
and one cluster."""

from __future__ import annotations

import pytest

from bot.config import Settings
from bot.domain import ChannelRef
from tests.e2e.serving import continue_answer, serving, with_discord, with_slack
from tests.e2e.test_slack import CHANNEL as SLACK_CHANNEL
from tests.e2e.test_slack import REF as SLACK_REF
from tests.e2e.test_slack import HttpSlack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack
from tests.integration.test_training import QUICK, ready_channel

pytestmark = pytest.mark.usefixtures("ml_libraries", "ray_cluster")

GUILD, CHANNEL, MEMBER = "111", "222", "1002"


def on_ray(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"engine": "ray", "ray_replica_cpus": 0.5, "ray_train_cpus": 1}
    )


async def test_continue_on_discord_is_answered_by_the_ray_deployment(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    async with serving(with_discord(on_ray(local_settings), fake_discord)) as app:
        await ready_channel(app, ref=ChannelRef("discord", GUILD, CHANNEL))
        job = await app.runner.claim_now(ChannelRef("discord", GUILD, CHANNEL), QUICK.to_payload())
        assert job is not None
        trained = await app.runner.run(job)  # a Ray task wrote the version
        assert trained.outcome is not None and trained.outcome.promoted

        payload = await fake_discord.slash_command(
            CHANNEL, MEMBER, "continue", {"prompt": "織田信長は、"}
        )
        record = fake_discord.interaction(payload["token"])
        request = await fake_discord.wait_for_request(
            path=f"/webhooks/{fake_discord.app_id}/{payload['token']}", timeout=60
        )
        assert record.callback_type == 5  # deferred at once, answered later
        assert record.callback_at is not None and record.callback_at - record.dispatched_at < 1.0
        assert request.json["content"].startswith("織田信長は、")
        assert request.json["allowed_mentions"] == {"parse": []}


async def test_slack_http_replicas_share_one_database_and_one_cluster(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    """Two bot processes' worth of Slack HTTP replicas behind one address: whichever
    gets a request answers it, and what one stored the other sees."""
    settings = on_ray(local_settings)
    async with (
        serving(with_slack(settings, fake_slack)) as first,
        serving(with_slack(settings, fake_slack)) as second,
    ):
        one, two = HttpSlack(first, fake_slack), HttpSlack(second, fake_slack)
        event = fake_slack.message_event("stored by the first", user="UMEMBER")
        assert await one.event(event, "EvStored") == 200
        answers = []
        for replica in (one, two):
            start = len(fake_slack.posted)
            name = await replica.command("織田信長は、")
            answers.append(
                await continue_answer(fake_slack, name, SLACK_CHANNEL, start=start, within=60)
            )
        assert all(a.startswith("織田信長は、") for a in answers)
        assert await second.messages.count(SLACK_REF) == 1
