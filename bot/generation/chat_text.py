"""A message's text as models learn it: platform markup (links, user and channel ids,
custom emoji) becomes placeholders, so no model learns or repeats an id.

Training data and a scratch base's tokenizer both read messages through here.
"""

from __future__ import annotations

import re

from bot.domain import disarm_tags

# Chat markup the model should not learn ids from; each becomes a placeholder.
_CLEANUP: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"<(https?://[^>|\s]+)(?:\|[^>]*)?>"), "<url>"),  # Slack links
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"<a?:(\w+):\d+>"), r":\1:"),  # Discord custom emoji → :name:
    (re.compile(r"<@&\d+>"), "<role>"),
    (re.compile(r"<@!?\d+>|<@[UW][A-Z0-9]+(?:\|[^>]*)?>"), "<user>"),
    (re.compile(r"<#[A-Z0-9]+(?:\|[^>]*)?>|<#\d+>"), "<channel>"),
    (re.compile(r"<!(?:here|channel|everyone)(?:\|[^>]*)?>"), "<everyone>"),
)


def clean_message(text: str) -> str:
    for pattern, placeholder in _CLEANUP:
        text = pattern.sub(placeholder, text)
    return text.strip()


def model_text(text: str, author: str, voice_tag: str, author_prefix: bool) -> str:
    """A cleaned message as a model learns it: "name: " ahead when the channel trains
    with authors, and the member's voice tag (bot/domain.py voice_tag) first when they
    lent their voice, so the model learns how they write and `/continue … as:` asks
    for it. A tag-shaped run the member typed is disarmed: only the tag added here
    tags a voice."""
    if author_prefix and author:
        text = f"{author}: {text}"
    return voice_tag + disarm_tags(text)
