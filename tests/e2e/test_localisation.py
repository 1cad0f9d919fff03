"""Commands in the user's language: the Discord commands sync with Japanese names,
descriptions and option names, and a Japanese client is answered in Japanese; `/help`
on Discord and `/tsuzuki help` on Slack list the commands the caller may use, in their
language (Slack's users.info locale)."""

from __future__ import annotations

import json
import logging

import pytest

from bot.config import Settings
from tests.e2e.serving import serving, with_discord, with_slack
from tests.e2e.test_notices import slack_command
from tests.e2e.test_slack import HttpSlack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack

pytestmark = pytest.mark.usefixtures("ml_libraries")
log = logging.getLogger("payloads")

GUILD, CHANNEL, ADMIN, MEMBER = "111", "222", "1001", "1002"


async def _help(fake: FakeDiscord, user: str, locale: str) -> str:
    payload = await fake.slash_command(CHANNEL, user, "help", locale=locale)
    path = f"/webhooks/{fake.app_id}/{payload['token']}"
    answer = await fake.wait_for_request(method="POST", path=path)
    assert answer.json.get("flags", 0) & 64  # the asker's alone
    return str(answer.json["content"])


async def test_discord_speaks_japanese_to_a_japanese_client(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    async with serving(with_discord(local_settings, fake)):
        synced = {c["name"]: c for c in fake.commands[GUILD]}
        continue_ = synced["continue"]
        log.info("discord localised /continue: %s", json.dumps(continue_, ensure_ascii=False))
        assert continue_["name_localizations"]["ja"] == "続き"
        assert continue_["description_localizations"]["ja"].startswith("あなたの文の続き")
        prompt = next(o for o in continue_["options"] if o["name"] == "prompt")
        assert prompt["name_localizations"]["ja"] == "書き出し"
        settings = synced["settings"]
        assert settings["name_localizations"]["ja"] == "設定"
        show = next(o for o in settings["options"] if o["name"] == "show")
        assert show["description_localizations"]["ja"] == "設定を表示します"
        menu = synced["Continue this message"]
        assert menu["name_localizations"]["ja"] == "このメッセージの続きを書く"

        said = await _help(fake, MEMBER, "ja")
        assert said.startswith("ここでできること") and "/voice on|off" in said
        assert "/settings" not in said and "/training" not in said  # not a member's
        said = await _help(fake, ADMIN, "en-US")
        assert said.startswith("What you can do here") and "/settings set KEY VALUE" in said

        # Any answer follows the client: an error too.
        payload = await fake.slash_command(
            CHANNEL, MEMBER, "continue", {"prompt": " "}, locale="ja"
        )
        path = f"/webhooks/{fake.app_id}/{payload['token']}"
        answer = await fake.wait_for_request(method="POST", path=path)
        assert answer.json["content"].startswith("続きを書く文の書き出し")


async def test_slack_help_lists_what_the_caller_may_use_in_their_language(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    fake_slack.add_user("UHANAKO", "hanako", locale="ja-JP")
    async with serving(with_slack(local_settings, fake_slack)) as app:
        slack = HttpSlack(app, fake_slack)
        said = str((await slack_command(slack, "help", "UHANAKO"))["text"])
        assert said.startswith("ここでできること")
        assert "/tsuzuki voice on|off" in said and "/tsuzuki settings show" in said
        assert "/tsuzuki settings set" not in said and "/continue TEXT" in said
        said = str((await slack_command(slack, "", "UADMIN"))["text"])  # /tsuzuki alone
        assert said.startswith("What you can do here")
        assert "/tsuzuki settings set KEY VALUE · /tsuzuki settings reset KEY" in said
