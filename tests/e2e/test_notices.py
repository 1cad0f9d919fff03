"""Training notices end to end: a real training run through the job runner, announced
on the Discord and Slack fakes (through the real clients) and in the console, when the
channel's admins turned notices on, and not otherwise; a run that fails is explained to
the admin alone."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from adapters.console_adapter import ConsoleAdapter
from bot.app import App
from bot.config import Settings
from bot.core.context import CommandContext
from bot.core.jobs import JobResult
from bot.domain import Author, ChannelRef
from bot.training.outcome import TrainOptions
from tests.e2e.serving import serving, with_discord, with_slack
from tests.e2e.test_slack import HttpSlack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack
from tests.integration.test_training import add_history, corpus

pytestmark = pytest.mark.usefixtures("ml_libraries")

QUICK = TrainOptions.of(max_steps=20, batch_size=8, block_size=64, learning_rate=3e-3)
PNG = b"\x89PNG"


async def ready(app: App, ref: ChannelRef, n: int = 200) -> None:
    await add_history(app, corpus(n), ref=ref)
    await app.channels.set_training(ref, True, actor="test")


async def train(app: App, ref: ChannelRef) -> JobResult:
    """A training job through the runner, as `/train` or the nightly schedule queue
    one; returns once it ended and its notices were delivered."""
    ended: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()

    def listen(result: JobResult) -> None:
        if result.job.channel == ref and not ended.done():
            ended.set_result(result)

    app.runner.listeners.append(listen)
    try:
        await app.jobs.enqueue("train", ref, QUICK.to_payload(), priority=5)
        if app.platforms:
            app.runner.wake()  # `tsuzuki run`'s runner serves in the background
        else:
            await app.runner.run_pending()  # as `tsuzuki train` runs it
        result = await asyncio.wait_for(ended, 300)
    finally:
        app.runner.listeners.remove(listen)
    await app.notifier.drain()
    return result


# --- Discord --------------------------------------------------------------------------

GUILD, CHANNEL, ADMIN, MEMBER = "111", "222", "1001", "1002"
DISCORD = ChannelRef("discord", GUILD, CHANNEL)


async def discord_command(fake: FakeDiscord, user: str, name: str, **options: object) -> str:
    payload = await fake.slash_command(CHANNEL, user, name, options)
    path = f"/webhooks/{fake.app_id}/{payload['token']}"
    request = await fake.wait_for_request(path=path, timeout=30)
    return str(request.json["content"])


async def test_discord_announces_a_promoted_version_with_its_loss_curve_only_when_on(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    async with serving(with_discord(local_settings, fake)) as app:
        await ready(app, DISCORD)
        said = await discord_command(fake, MEMBER, "settings set", key="notices", value="on")
        assert "Only channel admins" in said
        said = await discord_command(fake, ADMIN, "settings set", key="notices", value="on")
        assert "notices is now on" in said

        assert (await train(app, DISCORD)).outcome.promoted  # type: ignore[union-attr]
        notices = [r for r in fake.requests if r.matches("POST", f"/channels/{CHANNEL}/messages")]
        assert len(notices) == 1
        notice = notices[0]
        print("discord notice payload:", json.dumps(notice.json, ensure_ascii=False))
        print("discord notice file:", notice.files[0].filename, len(notice.files[0].data), "bytes")
        assert notice.json["content"].startswith("📈 v1 of this channel's model answers")
        assert (
            "bits/char" in notice.json["content"] and "its first version" in notice.json["content"]
        )
        assert notice.json["allowed_mentions"] == {"parse": []}
        assert notice.json["attachments"][0]["filename"] == "loss.png"
        assert notice.files[0].data.startswith(PNG)

        # /models shows the same chart on demand, to the asker alone.
        payload = await fake.slash_command(CHANNEL, ADMIN, "models list", {})
        shown = await fake.wait_for_request(
            path=f"/webhooks/{fake.app_id}/{payload['token']}", timeout=30
        )
        assert shown.json["flags"] & 64
        assert "v1 active" in shown.json["content"]
        assert shown.files and shown.files[0].data.startswith(PNG)

        # Off: the next promoted version says nothing in the channel.
        said = await discord_command(fake, ADMIN, "settings set", key="notices", value="off")
        assert "notices is now off" in said
        await app.registry.reset(DISCORD, actor="test")  # so v2 is promoted for sure
        count = len(fake.requests)
        assert (await train(app, DISCORD)).outcome.promoted  # type: ignore[union-attr]
        later = fake.requests[count:]
        assert not [r for r in later if r.matches("POST", f"/channels/{CHANNEL}/messages")]


async def test_discord_tells_the_admin_alone_why_a_run_failed(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    async with serving(with_discord(local_settings, fake)) as app:
        await ready(app, DISCORD, n=5)  # too little history to train on
        await discord_command(fake, ADMIN, "settings set", key="notices", value="on")
        result = await train(app, DISCORD)
        assert result.status == "failed"
        dm = fake.open_dm(ADMIN)
        sent = [r for r in fake.requests if r.matches("POST", "/messages")]
        assert [r.path for r in sent] == [f"/channels/{dm}/messages"]
        assert sent[0].json["content"].startswith(f"Training {DISCORD} failed:")
        assert "too little history" in sent[0].json["content"]


# --- Slack ----------------------------------------------------------------------------

TEAM, SLACK_CHANNEL, SLACK_ADMIN, SLACK_MEMBER = "T0001", "C0001", "UADMIN", "UMEMBER"
SLACK = ChannelRef("slack", TEAM, SLACK_CHANNEL)


async def slack_command(slack: HttpSlack, text: str, user: str) -> dict[str, object]:
    name = await slack.command(text, user=user, command="/tsuzuki")
    response = await slack.fake.wait_for_response(name, timeout=30)
    return dict(response.json)


async def test_slack_uploads_the_notice_with_its_chart_only_when_on(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    async with serving(with_slack(local_settings, fake_slack)) as app:
        slack = HttpSlack(app, fake_slack)
        await ready(app, SLACK)
        said = await slack_command(slack, "settings set notices on", SLACK_ADMIN)
        assert "notices is now on" in str(said["text"])

        assert (await train(app, SLACK)).outcome.promoted  # type: ignore[union-attr]
        shared = [u for u in fake_slack.uploads if u.channel == SLACK_CHANNEL]
        assert len(shared) == 1
        upload = shared[0]
        message = next(m for m in fake_slack.messages(SLACK_CHANNEL) if m.get("files"))
        print("slack notice message:", json.dumps(message, ensure_ascii=False))
        assert upload.content.startswith(PNG) and upload.filename == "loss.png"
        assert upload.initial_comment is not None
        assert upload.initial_comment.startswith("📈 v1 of this channel's model answers")
        assert "<!" not in upload.initial_comment  # nothing in it can ping

        # /tsuzuki models: the chart in an ephemeral answer, as an image block of a
        # file uploaded to no channel.
        said = await slack_command(slack, "models", SLACK_MEMBER)
        assert said["response_type"] == "ephemeral"
        blocks = said["blocks"]
        assert isinstance(blocks, list)
        image = next(b for b in blocks if b["type"] == "image")
        private = fake_slack.files[image["slack_file"]["id"]]
        assert private.channels == [] and private.content.startswith(PNG)

        await slack_command(slack, "settings set notices off", SLACK_ADMIN)
        await app.registry.reset(SLACK, actor="test")
        count = len(fake_slack.uploads)
        assert (await train(app, SLACK)).outcome.promoted  # type: ignore[union-attr]
        assert [u for u in fake_slack.uploads[count:] if u.channels] == []


async def test_slack_tells_the_admin_alone_why_a_run_failed(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    async with serving(with_slack(local_settings, fake_slack)) as app:
        slack = HttpSlack(app, fake_slack)
        await ready(app, SLACK, n=5)
        await slack_command(slack, "settings set notices on", SLACK_ADMIN)
        posted = len(fake_slack.posted)
        assert (await train(app, SLACK)).status == "failed"
        told = fake_slack.posted[posted:]
        assert [(p.method, p.channel) for p in told] == [("chat.postEphemeral", SLACK_CHANNEL)]
        assert told[0].user == SLACK_ADMIN
        assert "too little history" in told[0].text


# --- console ----------------------------------------------------------------------------

CONSOLE = ChannelRef.parse("console:general")


async def test_the_console_prints_the_notice_and_the_charts_path(local_app: App) -> None:
    app = local_app
    err = io.StringIO()
    console = ConsoleAdapter(app.core, CONSOLE, stdout=io.StringIO(), stderr=err)
    app.notifier.sinks["console"] = console.post_notice
    await ready(app, CONSOLE)
    admin = CommandContext(CONSOLE, Author("me", "me", is_admin=True))
    await app.core.on_command(admin, "/settings set notices on")
    assert (await train(app, CONSOLE)).outcome.promoted  # type: ignore[union-attr]
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("📈 v1 of this channel's model answers")
    assert lines[1].startswith("(image: ") and lines[1].endswith("v1/loss.png)")
    await app.core.on_command(admin, "/settings set notices off")
    await app.registry.reset(CONSOLE, actor="test")
    assert (await train(app, CONSOLE)).outcome.promoted  # type: ignore[union-attr]
    assert len(err.getvalue().splitlines()) == 2
