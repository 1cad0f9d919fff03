"""The Slack App Home: opening the Home tab publishes (views.publish) the channels the
bot keeps that the viewer can see, each with its active version, its bits/char against
the Markov chain and whether training is on, and the viewer's own state; its buttons
take a lent voice back and opt out (Slack asks first: a confirm dialog)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from bot.app import App
from bot.config import Settings
from bot.domain import ChannelRef, ModelVersionInfo
from bot.statuses import VersionStatus
from tests.e2e.serving import serving, until, with_slack
from tests.e2e.test_notices import slack_command
from tests.e2e.test_slack import HttpSlack
from tests.fakes.slack_server import FakeSlack, event_body

pytestmark = pytest.mark.usefixtures("ml_libraries")
log = logging.getLogger("payloads")

TEAM = "T0001"
GENERAL, SECRET, UNSEEN = "C0001", "C0002", "C0003"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _texts(view: dict[str, object]) -> str:
    return json.dumps(view, ensure_ascii=False)


async def _open_home(slack: HttpSlack, user: str) -> dict[str, object]:
    before = len(slack.fake.published)
    body = event_body(slack.fake.app_home_opened_event(user), f"EvHome{before}")
    status, _ = await slack.post(body)
    assert status == 200
    await until(lambda: len(slack.fake.published) > before, 20)
    return slack.fake.home_view(user)


async def _press(slack: HttpSlack, user: str, action: str, value: str | None = None) -> None:
    before = len(slack.fake.published)
    status, seconds = await slack.post(slack.fake.block_actions_body(user, action, value))
    assert status == 200 and seconds < 1.0  # acknowledged at once
    await until(lambda: len(slack.fake.published) > before, 20)  # and the tab redrawn


async def _active_version(app: App, ref: ChannelRef) -> None:
    info = ModelVersionInfo(
        ref,
        1,
        "scratch:tiny",
        "full",
        "/nowhere/v1",
        VersionStatus.CANDIDATE,
        T0,
        eval_bits_per_char=2.31,
        markov_bits_per_char=3.52,
    )
    await app.registry.add(info)
    await app.registry.activate(ref, 1, actor="test")


async def test_the_home_tab_shows_the_viewers_channels_and_state(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    fake = fake_slack
    fake.add_channel(SECRET, "secret", is_private=True)
    fake.add_channel(UNSEEN, "unseen")
    fake.channel_members[SECRET] = {"UADMIN"}
    async with serving(with_slack(local_settings, fake)) as app:
        slack = HttpSlack(app, fake)
        general = ChannelRef("slack", TEAM, GENERAL)
        await app.channels.ensure(general, "general")
        await app.channels.ensure(ChannelRef("slack", TEAM, SECRET), "secret")
        await app.channels.set_training(general, True, actor="test")
        await _active_version(app, general)
        await slack_command(slack, "voice on", "UMEMBER")

        view = await _open_home(slack, "UMEMBER")
        log.info("slack home view (opted in): %s", _texts(view))
        shown = _texts(view)
        assert f"<#{GENERAL}>" in shown and "training on" in shown
        assert "version 1: 2.31 bits/char (its Markov chain: 3.52)" in shown
        assert f"<#{SECRET}>" not in shown  # not a channel this member can see
        assert f"<#{UNSEEN}>" not in shown  # one the bot keeps nothing of
        assert "Your voice is lent in" in shown
        buttons = [
            e
            for b in view["blocks"]  # type: ignore[attr-defined]
            for e in ([b["accessory"]] if "accessory" in b else b.get("elements", []))
            if e.get("type") == "button"
        ]
        actions = {b["action_id"]: b for b in buttons}
        assert actions["home_voice_off"]["value"] == GENERAL
        assert actions["home_opt_out"]["confirm"]["confirm"]["text"] == "Opt out"  # asked twice

        await _press(slack, "UMEMBER", "home_voice_off", GENERAL)
        assert not await app.core.ingest.replies.stores.users.has_voice(general, "UMEMBER")
        assert "You lent your voice nowhere" in _texts(fake.home_view("UMEMBER"))

        await _press(slack, "UMEMBER", "home_opt_out")
        assert await app.core.ingest.replies.stores.users.is_opted_out("slack", TEAM, "UMEMBER")
        view = fake.home_view("UMEMBER")
        log.info("slack home view (opted out): %s", _texts(view))
        assert "You opted out" in _texts(view) and "home_opt_in" in _texts(view)

        # An admin in the private channel sees it too.
        assert f"<#{SECRET}>" in _texts(await _open_home(slack, "UADMIN"))
