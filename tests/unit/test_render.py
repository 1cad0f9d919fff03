from __future__ import annotations

import pytest

from adapters.render import (
    DISCORD_LIMIT,
    SLACK_LIMIT,
    render_console,
    render_discord,
    render_slack,
    split_message,
)

PINGS = "@everyone @here <@123> <@!456> <@&789> hello"


def test_discord_mentions_are_neutralised_but_readable() -> None:
    (text,) = render_discord(PINGS)
    for ping in ("@everyone", "@here", "<@123>", "<@!456>", "<@&789>"):
        assert ping not in text
    assert text.replace("\u200b", "") == PINGS


def test_discord_mass_mentions_are_caught_in_any_case() -> None:
    (text,) = render_discord("@EveryOne and @HERE")
    assert "@EveryOne" not in text and "@HERE" not in text


def test_slack_control_sequences_are_escaped() -> None:
    (text,) = render_slack("<!channel> <!here> <@U123> <https://x|y> & co")
    assert "<" not in text and ">" not in text
    assert text == "&lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt; &lt;https://x|y&gt; &amp; co"


@pytest.mark.parametrize(
    "render,limit", [(render_discord, DISCORD_LIMIT), (render_slack, SLACK_LIMIT)]
)
def test_long_output_is_split_within_the_limit_without_losing_text(render, limit) -> None:  # type: ignore[no-untyped-def]
    text = ("織田信長は、尾張の大名である。" * 200) + ("word " * 500)
    pieces = render(text)
    assert len(pieces) > 1
    assert all(0 < len(p) <= limit for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_japanese_splits_after_a_sentence_end() -> None:
    text = "あ" * 1500 + "。" + "い" * 1000
    first, second = split_message(text, DISCORD_LIMIT)
    assert first.endswith("。") and second == "い" * 1000


def test_slack_split_never_cuts_an_escape() -> None:
    pieces = render_slack("<" * 5000 + "&" * 3)
    for piece in pieces:
        assert piece.replace("&lt;", "").replace("&amp;", "") == ""


def test_text_without_breaks_is_cut_hard() -> None:
    pieces = split_message("x" * 4500, 2000)
    assert [len(p) for p in pieces] == [2000, 2000, 500]


def test_console_strips_terminal_escapes() -> None:
    assert render_console("a\x1b[2J\x1b[31mred\x07\tb\nc") == ["ared\tb\nc"]
