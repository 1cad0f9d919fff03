"""Per-platform rendering of text the bot posts: no pings, no markup injection, within
each platform's length limit.

Generated text is the model's imitation of a channel, so it will contain things that
look like `@everyone`, `<@123>` or `<!channel>`. Rendering makes them inert text; the
Discord adapter also sends `AllowedMentions.none()`, so either layer alone is enough.
"""

from __future__ import annotations

import re

DISCORD_LIMIT = 2000
# chat.postMessage accepts more, but Slack truncates and folds long messages; 4000 is
# its documented recommendation for a readable message.
SLACK_LIMIT = 4000

ZWSP = "\u200b"  # zero-width space: invisible, but breaks the mention syntax

# @everyone/@here, and the <@id> <@!id> <@&role> mention markups.
_DISCORD_MASS = re.compile(r"@(everyone|here)", re.IGNORECASE)
_DISCORD_MARKUP = re.compile(r"<(@[!&]?|#)(\d+)>")
# Terminal control: ANSI escapes and other C0/C1 characters except tab and newline.
_TERMINAL_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# Tails of a growing text that more text could still turn into something rendered
# differently: the start of a mass mention (`@`, `@ever`, `@HE`), an unclosed mention
# markup (`<`, `<@`, `<@!12`, `<#3`), half an HTML entity (`&`, `&am`, `&#12`), half a
# terminal escape (`\x1b`, `\x1b[3`) and the U+FFFD of a character whose bytes have
# not all arrived. Each matches only at the very end, and only the few characters that
# are still open: never a whole word (Japanese has no spaces to stop at).
_OPEN_TAILS = (
    re.compile(r"@(?:e(?:v(?:e(?:r(?:y(?:o(?:n)?)?)?)?)?)?|h(?:e(?:r)?)?)?\Z", re.IGNORECASE),
    re.compile(r"<(?:(?:@[!&]?|#)\d*)?\Z"),
    re.compile(r"&#?[0-9A-Za-z]{0,8}\Z"),
    re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*)?\Z"),
    re.compile(r"\ufffd+\Z"),
)

# Where a long message may be split, best first: paragraph, line, sentence end
# (Japanese and Latin), clause, word.
_BREAKS = ("\n\n", "\n", "。", "！", "？", ". ", "! ", "? ", "、", ", ", " ")


def neutralise_discord(text: str) -> str:
    text = _DISCORD_MASS.sub(lambda m: "@" + ZWSP + m.group(1), text)
    return _DISCORD_MARKUP.sub(lambda m: "<" + m.group(1) + ZWSP + m.group(2) + ">", text)


def escape_slack(text: str) -> str:
    """Slack's three control characters; with them escaped no `<!channel>`, `<@U…>` or
    `<http://…|label>` can form."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def strip_terminal_control(text: str) -> str:
    return _TERMINAL_CONTROL.sub("", text)


_CONTROL_CHAR = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape_terminal_control(text: str) -> str:
    """Text for a terminal with every control character (ANSI escapes, bidi overrides
    included) written as its escape (`\\x1b`, `\\u202e`): shown, never obeyed. Line
    breaks and tabs stay."""
    return _CONTROL_CHAR.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def split_message(text: str, limit: int) -> list[str]:
    """Splits text into pieces of at most `limit` characters, at the most natural break
    inside the last half of each piece; a hard cut only when there is none."""
    if limit < 1:
        raise ValueError("limit must be positive")
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = 0
        for sep in _BREAKS:
            pos = window.rfind(sep)
            if pos >= limit // 2:
                cut = pos + len(sep)
                break
        if cut == 0:
            cut = limit
            # Never leave a zero-width joiner or variation selector at the start of the
            # next piece, away from the emoji it belongs to.
            while cut > 1 and rest[cut] in "\u200d\ufe0f":
                cut -= 1
            # Nor cut an escaped entity (&amp; &lt; &gt;) in two.
            amp = rest.rfind("&", max(0, cut - 4), cut)
            if amp > 0 and ";" in rest[cut : amp + 5]:
                cut = amp
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n")
    if rest.strip() or not pieces:
        pieces.append(rest)
    return [p for p in pieces if p] or [""]


def render_discord(text: str) -> list[str]:
    return split_message(neutralise_discord(text), DISCORD_LIMIT)


def render_slack(text: str, limit: int = SLACK_LIMIT) -> list[str]:
    return split_message(escape_slack(text), limit)


def render_console(text: str) -> list[str]:
    return [strip_terminal_control(text)]


def settled(text: str) -> str:
    """The part of a text still being generated that is safe to show now: all of it but
    a trailing piece that more text could still turn into a mention, markup, entity or
    escape (see _OPEN_TAILS). Rendering the settled part of each partial text therefore
    never shows a neutralisation half done, and what it shows is what the complete
    text renders to, up to where the partial text ends."""
    cut = len(text)
    for tail in _OPEN_TAILS:
        found = tail.search(text)
        if found is not None:
            cut = min(cut, found.start())
    return text[:cut]


# What a message shows of a text still being generated: the settled part, rendered,
# as much as fits in the first message (the rest follows when the text is complete).


def partial_discord(text: str) -> str:
    return render_discord(settled(text))[0]


def partial_slack(text: str) -> str:
    return render_slack(settled(text))[0]


def partial_console(text: str) -> str:
    return render_console(settled(text))[0]
