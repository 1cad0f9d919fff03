"""The streaming throttle (adapters/streaming.py) with hand-fed partial texts: what a
user would see of a message, edit by edit. No test here measures time: a clock the test
moves stands in for it where an interval matters."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from adapters.render import partial_discord, partial_slack, render_discord, render_slack
from adapters.streaming import EditBudget, LiveMessage, describe


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Platform:
    """A message on a platform: records each text it was shown, in order, and how many
    edits were in flight at once. `gate`, when set, holds each edit until released."""

    def __init__(self, fail: set[int] | None = None) -> None:
        self.shown: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail = fail or set()  # the calls (0-based) that fail
        self.calls = 0

    async def show(self, text: str) -> None:
        call, self.calls = self.calls, self.calls + 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if call in self.fail:
                raise RuntimeError(f"refused: {text}")
            self.shown.append(text)
        finally:
            self.in_flight -= 1


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def identity(text: str) -> str:
    return text


async def test_texts_that_come_during_an_edit_are_coalesced_into_the_newest() -> None:
    platform = Platform()
    platform.gate = asyncio.Event()
    live = LiveMessage(platform.show, identity, interval_s=0)
    live("a")
    await platform.started.wait()
    for text in ("ab", "abc", "abcd"):
        live(text)  # the first edit is still in flight
    platform.gate.set()
    await settle()
    assert await live.finish("abcde")
    assert platform.shown == ["a", "abcd", "abcde"]
    assert platform.most_in_flight == 1


async def test_finish_waits_for_the_edit_in_flight_then_shows_the_complete_text() -> None:
    platform = Platform()
    platform.gate = asyncio.Event()
    live = LiveMessage(platform.show, identity, interval_s=0)
    live("partial")
    await platform.started.wait()
    finishing = asyncio.create_task(live.finish("partial and complete"))
    await settle()
    assert platform.shown == [] and not finishing.done()  # never two edits at once
    platform.gate.set()
    assert await finishing
    assert platform.shown == ["partial", "partial and complete"]
    assert platform.most_in_flight == 1


async def test_at_most_one_edit_per_interval_and_the_complete_text_goes_last() -> None:
    clock = Clock()
    platform = Platform()
    live = LiveMessage(platform.show, identity, interval_s=1.0, clock=clock)
    live("one")
    await settle()
    live("one two")
    live("one two three")
    await settle()
    assert platform.shown == ["one"]  # the interval has not passed on the clock
    clock.now += 1.0
    assert await live.finish("one two three four")
    assert platform.shown == ["one", "one two three four"]


async def test_nothing_shown_means_the_adapter_replies_as_before() -> None:
    platform = Platform()
    live = LiveMessage(platform.show, partial_discord, interval_s=0)
    live("@ever")  # nothing settled yet
    await settle()
    assert not await live.finish("@everyone")
    assert platform.shown == []


async def test_a_message_that_cannot_be_posted_stops_the_stream() -> None:
    platform = Platform(fail={0})
    live = LiveMessage(platform.show, identity, interval_s=0)
    live("a")
    await settle()
    live("ab")
    await settle()
    assert not await live.finish("abc")  # the adapter posts the reply itself
    assert platform.calls == 1


async def test_a_failed_edit_is_logged_without_the_text_and_the_reply_still_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform = Platform(fail={1})
    live = LiveMessage(platform.show, identity, interval_s=0, what="test: reply")
    caplog.set_level(logging.DEBUG)
    live("secret one")
    await settle()
    live("secret one two")
    await settle()
    assert await live.finish("secret one two three")
    assert platform.shown == ["secret one", "secret one two three"]
    assert "test: reply" in caplog.text and "RuntimeError" in caplog.text
    assert "secret" not in caplog.text


async def test_an_unchanged_complete_text_costs_no_edit() -> None:
    platform = Platform()
    live = LiveMessage(platform.show, identity, interval_s=0)
    live("done")
    await settle()
    assert await live.finish("done")
    assert platform.shown == ["done"]


async def test_texts_after_the_end_are_ignored() -> None:
    platform = Platform()
    live = LiveMessage(platform.show, identity, interval_s=0)
    live("a")
    await settle()
    assert await live.finish("ab")
    live("abc")
    await settle()
    assert platform.shown == ["a", "ab"]


async def test_leaving_the_block_with_an_error_drops_the_pending_edit() -> None:
    clock = Clock()
    platform = Platform()
    with pytest.raises(RuntimeError):
        async with LiveMessage(platform.show, identity, interval_s=5, clock=clock) as live:
            live("a")
            await settle()
            live("ab")  # waits for the interval
            raise RuntimeError("the reply is not coming")
    await settle()
    assert platform.shown == ["a"]


async def test_a_shared_budget_holds_back_edits_but_never_the_complete_text() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=60, burst=1, clock=clock)
    first, second = Platform(), Platform()
    a = LiveMessage(first.show, identity, interval_s=0, budget=budget, clock=clock)
    b = LiveMessage(second.show, identity, interval_s=0, budget=budget, clock=clock)
    a("a")
    await settle()
    b("b")  # the budget is spent: waits
    await settle()
    assert (first.shown, second.shown) == (["a"], [])
    assert not await b.finish("b done")  # nothing of b was shown: the adapter posts it
    assert await a.finish("a done")
    assert first.shown == ["a", "a done"]


def test_the_budget_refills_with_time() -> None:
    clock = Clock()
    budget = EditBudget(per_minute=30, burst=2, clock=clock)
    assert budget.take() and budget.take() and not budget.take()
    assert budget.wait_s() == pytest.approx(2.0)
    clock.now += 2.0
    assert budget.wait_s() == 0 and budget.take() and not budget.take()


HOSTILE = "hi @everyone <@123> <@&45> @here <#6> &amp; <!channel> <https://x|y> 続き"
# What would ping, or form markup, if it reached each platform as it is.
DISCORD_PINGS = re.compile(r"@(everyone|here)|<(@[!&]?|#)\d+>", re.IGNORECASE)
SLACK_CONTROL = re.compile(r"[<>]")


@pytest.mark.parametrize(
    "partial,render,pings",
    [
        (partial_discord, render_discord, DISCORD_PINGS),
        (partial_slack, render_slack, SLACK_CONTROL),
    ],
)
async def test_hand_fed_pings_never_show_half_neutralised(partial, render, pings) -> None:  # type: ignore[no-untyped-def]
    """Every partial text a generation could pass through, fed one character at a time:
    each text the message shows is the start of the complete rendered text (so never a
    mention that the complete text neutralises), none pings, and the complete text is
    the last thing shown."""
    platform = Platform()
    live = LiveMessage(platform.show, partial, interval_s=0)
    for i in range(1, len(HOSTILE) + 1):
        live(HOSTILE[:i])
        await settle()
    (complete,) = render(HOSTILE)
    assert await live.finish(complete)
    assert len(platform.shown) > 10 and platform.shown[-1] == complete
    for shown in platform.shown:
        assert complete.startswith(shown)
        assert not pings.search(shown)


def test_an_error_is_described_without_its_message() -> None:
    """Platform clients put the platform's answer (which can quote the text) in their
    exceptions' messages: the log gets the kind, status, code and error name only."""

    class ApiError(Exception):
        status, code = 400, 50035

        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.response = {"ok": False, "error": "msg_too_long", "text": "secret"}

    assert describe(ApiError("the server said: secret")) == "ApiError 400 code 50035 msg_too_long"
    assert describe(RuntimeError("secret")) == "RuntimeError"
