"""Streamed replies end to end: what a user on Discord, on Slack and at the console sees
of a generation while it is written. The real clients talk to the fakes in tests/fakes,
which record every version of every message; the scratch model writes enough tokens,
and hands over every one (stream_interval_ms=0), to stream for several edits, and the
adapters edit at most every 20 ms. No assertion depends on timing: each checks what
was shown, and in which order."""

from __future__ import annotations

import asyncio
import io
import itertools
import re
from collections.abc import Callable

import pytest

from adapters.console_adapter import ConsoleAdapter
from adapters.render import render_console, render_discord, render_slack
from bot.app import App, running_app
from bot.config import Settings
from bot.domain import ChannelRef, GenerationRequest, GenerationResult
from bot.ports import TextGenerator, TextListener
from tests.e2e.serving import serving, until, with_discord, with_slack
from tests.e2e.test_slack import CHANNEL as SLACK_CHANNEL
from tests.e2e.test_slack import HttpSlack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_server import FakeSlack

pytestmark = pytest.mark.usefixtures("ml_libraries")

GUILD, CHANNEL, MEMBER = "111", "222", "1002"
PROMPT = "織田信長は、"
PINGS = "やあ @everyone と <@123> と <@&45> と @here、<#6> &amp; <!channel> <https://x|y> です"
DISCORD_PINGS = re.compile(r"@(everyone|here)|<(@[!&]?|#)\d+>", re.IGNORECASE)


def streaming(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "stream_interval_ms": 0,  # every token reaches the adapter
            "max_new_tokens": 48,
            "seed": 7,
            "discord_edit_interval_s": 0.02,
            "slack_update_interval_s": 0.02,
        }
    )


class Recorder:
    """The app's own generator, noting each partial text it hands on and each result."""

    def __init__(self, inner: TextGenerator) -> None:
        self.inner = inner
        self.partials: list[str] = []
        self.results: list[GenerationResult] = []

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        def heard(text: str) -> None:
            self.partials.append(text)
            assert on_text is not None
            on_text(text)

        result = await self.inner.generate(request, None if on_text is None else heard)
        self.results.append(result)
        return result


def recording(app: App) -> Recorder:
    recorder = Recorder(app.commands.replies.generator)
    app.commands.replies.generator = recorder
    return recorder


class Typist:
    """A generation the test controls: a fixed text full of pings (no model says those
    on cue), written a character at a time, each partial text handed on."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.written: list[str] = []  # each complete text, as the reply carries it

    async def generate(
        self, request: GenerationRequest, on_text: TextListener | None = None
    ) -> GenerationResult:
        head = request.prompt if request.mode == "continue" else ""
        text = head + self.text
        for end in range(len(head) + 1, len(text) + 1):
            if on_text is not None:
                on_text(text[:end])
            await asyncio.sleep(0.002)  # the device thread's pace, roughly
        self.written.append(text)
        return GenerationResult((text,), "typist", 0, 1, 0.0)


def assert_grew_into(versions: list[str], complete: str, pings: re.Pattern[str]) -> None:
    """A message's versions: at least one partial text before the complete one, each an
    earlier state of the complete text (so never a neutralisation half done), none
    pinging, and the complete text last."""
    assert len(versions) >= 2, versions
    assert versions[-1] == complete
    for earlier, later in itertools.pairwise(versions):
        assert later.startswith(earlier), (earlier, later)
    for version in versions:
        assert not pings.search(version), version


# --- Discord -------------------------------------------------------------------------------


async def test_discord_continue_grows_in_its_deferred_answer(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    async with serving(with_discord(streaming(local_settings), fake_discord)) as app:
        recorder = recording(app)
        payload = await fake_discord.slash_command(CHANNEL, MEMBER, "continue", {"prompt": PROMPT})
        await until(lambda: bool(recorder.results))
        pieces = render_discord(recorder.results[0].texts[0])

        def shown() -> list[str]:
            return [v for v in fake_discord.original_versions(payload["token"]) if v]

        await until(lambda: shown()[-1:] == pieces[:1])
        await asyncio.sleep(0.1)  # nothing comes after the complete text
        versions = shown()
    assert len(recorder.partials) >= 10  # the model wrote for a while
    assert versions[0].startswith(PROMPT)
    assert_grew_into(versions, pieces[0], DISCORD_PINGS)
    edits = [r for r in fake_discord.requests if r.matches("PATCH", "/messages/@original")]
    assert len(edits) == len(versions)
    assert all(r.json["allowed_mentions"] == {"parse": []} for r in edits)
    assert fake_discord.interaction(payload["token"]).followups == []


async def test_discord_pings_never_show_while_the_text_grows(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    settings = with_discord(streaming(local_settings), fake_discord)
    typist = Typist(PINGS)
    async with serving(settings, generator=typist):
        payload = await fake_discord.slash_command(CHANNEL, MEMBER, "continue", {"prompt": "hi"})
        await until(lambda: bool(typist.written))
        (complete,) = render_discord(typist.written[0])

        def shown() -> list[str]:
            return [v for v in fake_discord.original_versions(payload["token"]) if v]

        await until(lambda: shown()[-1:] == [complete])
        versions = shown()
    assert_grew_into(versions, complete, DISCORD_PINGS)


async def test_discord_reply_to_a_mention_grows_in_one_message(
    local_settings: Settings, fake_discord: FakeDiscord
) -> None:
    settings = with_discord(streaming(local_settings), fake_discord)
    async with serving(settings, generator=Typist(PINGS)):
        await fake_discord.send_message(CHANNEL, MEMBER, "what next?", mentions_bot=True)
        first = await fake_discord.wait_for_request(
            method="POST", path=f"/channels/{CHANNEL}/messages"
        )
        message_id = first.response["id"]
        (complete,) = render_discord(PINGS)
        await until(lambda: fake_discord.versions_of(message_id)[-1:] == [complete])
        versions = fake_discord.versions_of(message_id)
    assert_grew_into(versions, complete, DISCORD_PINGS)
    posts = [r for r in fake_discord.requests if r.matches("POST", f"/channels/{CHANNEL}/messages")]
    assert len(posts) == 1  # one reply, edited, not a message per partial text


# --- Slack ---------------------------------------------------------------------------------

SLACK_CONTROL = re.compile(r"[<>]")


def slack_message(fake: FakeSlack, start: int = 0) -> Callable[[], list[str]]:
    """The versions of the bot's first message in the channel from `start` on."""

    def versions() -> list[str]:
        for p in fake.posted[start:]:
            if p.method == "chat.postMessage" and p.channel == SLACK_CHANNEL:
                return fake.versions_of(SLACK_CHANNEL, p.ts)
        return []

    return versions


async def test_slack_continue_grows_in_one_message(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    async with serving(with_slack(streaming(local_settings), fake_slack)) as app:
        recorder = recording(app)
        name = await HttpSlack(app, fake_slack).command(PROMPT)
        await until(lambda: bool(recorder.results))
        pieces = render_slack(recorder.results[0].texts[0])
        shown = slack_message(fake_slack)
        await until(lambda: shown()[-1:] == pieces[:1])
        await asyncio.sleep(0.1)  # nothing comes after the complete text
        versions = shown()
    assert len(recorder.partials) >= 10
    assert versions[0].startswith(PROMPT)
    assert_grew_into(versions, pieces[0], SLACK_CONTROL)
    assert fake_slack.responses[name] == []  # answered in the channel, not by response_url
    assert all(p.params.get("unfurl_links") is False for p in fake_slack.posted[:1])


async def test_slack_pings_stay_escaped_while_the_text_grows(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    settings = with_slack(streaming(local_settings), fake_slack)
    typist = Typist(PINGS)
    async with serving(settings, generator=typist) as app:
        await HttpSlack(app, fake_slack).command("hi")
        await until(lambda: bool(typist.written))
        (complete,) = render_slack(typist.written[0])
        shown = slack_message(fake_slack)
        await until(lambda: shown()[-1:] == [complete])
        versions = shown()
    assert_grew_into(versions, complete, SLACK_CONTROL)


async def test_slack_continue_where_the_bot_may_not_post_is_answered_as_before(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    """No chat.postMessage in a conversation the bot is not in: the first partial text
    cannot be posted, so the complete one goes to the command's response_url."""
    fake_slack.fail_next("chat.postMessage", "not_in_channel")
    settings = with_slack(streaming(local_settings), fake_slack)
    typist = Typist(PINGS)
    async with serving(settings, generator=typist) as app:
        name = await HttpSlack(app, fake_slack).command("hi")
        answer = await fake_slack.wait_for_response(name, timeout=20)
    assert answer.json["text"] == render_slack(typist.written[0])[0]
    assert answer.json["response_type"] == "in_channel"
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert fake_slack.calls_to("chat.update") == []


async def test_slack_reply_to_a_mention_grows_in_one_message(
    local_settings: Settings, fake_slack: FakeSlack
) -> None:
    settings = with_slack(streaming(local_settings), fake_slack)
    async with serving(settings, generator=Typist(PINGS)) as app:
        await HttpSlack(app, fake_slack).event(
            fake_slack.app_mention_event("what next?", ts="1700000001.000100"), "EvStream"
        )
        (complete,) = render_slack(PINGS)
        shown = slack_message(fake_slack)
        await until(lambda: shown()[-1:] == [complete])
        versions = shown()
    assert_grew_into(versions, complete, SLACK_CONTROL)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


# --- console -------------------------------------------------------------------------------


class Terminal(io.StringIO):
    """A terminal that remembers each write: text printed as it came, piece by piece."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


async def console(app: App, script: str) -> tuple[Terminal, Terminal]:
    out, err = Terminal(), Terminal()
    ref = ChannelRef.parse("console:general")
    adapter = ConsoleAdapter(app.core, ref, stdin=io.StringIO(script), stdout=out, stderr=err)
    await adapter.run()
    return out, err


async def test_the_console_prints_tokens_as_they_come(local_settings: Settings) -> None:
    async with running_app(streaming(local_settings)) as app:
        recorder = recording(app)
        out, err = await console(app, f"/continue {PROMPT}\n")
    (result,) = recorder.results
    (complete,) = render_console(result.texts[0])
    assert out.getvalue() == complete + "\n" and err.getvalue() == ""
    # The line was written a piece at a time, the prompt first, before it ended.
    assert len(out.writes) >= 3, out.writes
    assert out.writes[0].startswith(PROMPT) and out.writes[-1].endswith("\n")
    assert "".join(out.writes[:-1]) == "".join(out.writes).removesuffix(out.writes[-1])


async def test_the_console_prints_a_reply_whole_when_it_does_not_extend_the_line(
    local_settings: Settings,
) -> None:
    """A terminal cannot take back what it printed: when the complete text is not the
    printed text's end (here a retried generation starts over), it follows in full."""

    class StartsOver:
        async def generate(
            self, request: GenerationRequest, on_text: TextListener | None = None
        ) -> GenerationResult:
            if on_text is not None:
                on_text(request.prompt + " first try")
            await asyncio.sleep(0)
            return GenerationResult((request.prompt + " second",), "scripted", 0, 1, 0.0)

    async with running_app(local_settings, generator=StartsOver()) as app:
        out, _ = await console(app, "/continue hello\n")
    assert out.getvalue() == "hello first try\nhello second\n"


async def test_the_console_prints_a_reply_to_a_mention_as_it_comes(
    local_settings: Settings,
) -> None:
    typist = Typist("続きはこうです。")
    async with running_app(local_settings, generator=typist) as app:
        out, _ = await console(app, "@tsuzuki what next?\n")
    assert out.getvalue() == "続きはこうです。\n"
    assert len(out.writes) >= 3, out.writes
