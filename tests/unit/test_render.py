from __future__ import annotations

import re

import pytest

from adapters.render import (
    DISCORD_LIMIT,
    SLACK_LIMIT,
    partial_console,
    partial_discord,
    partial_slack,
    render_console,
    render_discord,
    render_slack,
    settled,
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


# --- partial texts (streaming) ----------------------------------------------------------

GROWING = [
    "hello @everyone and @here, <@123> <@!456> <@&789> <#42> end",
    "@EveryOne@HERE<@1><#2>",
    "Tom & Jerry &amp; <!channel> <https://x.example|click> &#60;",
    "red\x1b[31mtext\x1b[0m and \x1b]0;title\x07 done",
    "織田信長は、尾張の大名である。@ever then @evening <@12 <a> 3 < 4",
]


@pytest.mark.parametrize(
    "text,shown",
    [
        ("abc @", "abc "),
        ("abc @ever", "abc "),
        ("abc @HER", "abc "),
        ("abc @everyone", "abc @everyone"),  # complete: more text cannot change it
        ("abc @evening", "abc @evening"),  # can no longer become a mass mention
        ("x<", "x"),
        ("x<@", "x"),
        ("x<@!12", "x"),
        ("x<@&", "x"),
        ("x<#7", "x"),
        ("x<@12>", "x<@12>"),
        ("x<a", "x<a"),
        ("a &", "a "),
        ("a &am", "a "),
        ("a &#6", "a "),
        ("a &amp;", "a &amp;"),
        ("a\x1b", "a"),
        ("a\x1b[3", "a"),
        ("日本語\ufffd\ufffd", "日本語"),
        ("@ev<@1", "@ev"),  # only the very end is still open
    ],
)
def test_the_settled_part_holds_back_only_what_could_still_change(text: str, shown: str) -> None:
    assert settled(text) == shown


def test_japanese_is_shown_up_to_the_last_character() -> None:
    text = "織田信長は、尾張の大名である。今川義元を桶狭間で"
    assert all(settled(text[:i]) == text[:i] for i in range(len(text) + 1))


@pytest.mark.parametrize("render", [render_discord, render_slack, render_console])
@pytest.mark.parametrize("final", GROWING)
def test_each_partial_shows_the_start_of_what_the_complete_text_shows(render, final) -> None:  # type: ignore[no-untyped-def]
    """Char by char, as a generation grows: what is shown only ever grows towards the
    complete text's rendering, so no neutralisation is ever seen half done."""
    complete = "".join(render(final))
    for i in range(len(final) + 1):
        shown = "".join(render(settled(final[:i])))
        assert complete.startswith(shown), (final[:i], shown)


@pytest.mark.parametrize("final", GROWING)
def test_no_partial_ever_pings(final: str) -> None:
    for i in range(len(final) + 1):
        partial = final[:i]
        discord, slack = partial_discord(partial), partial_slack(partial)
        assert not re.search(r"@(everyone|here)|<(@[!&]?|#)\d+>", discord, re.IGNORECASE)
        assert "<" not in slack and ">" not in slack
        assert "\x1b" not in partial_console(partial)


def test_a_partial_past_the_limit_shows_the_first_message_only() -> None:
    text = "あ" * 1500 + "。" + "い" * 1000
    assert partial_discord(text) == render_discord(text)[0]
    assert len(partial_discord(text)) <= DISCORD_LIMIT
