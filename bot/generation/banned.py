"""Banned words: words a channel's admins never want posted (`banned_words`).

A row's text is checked as it grows, like the leak guard (verbatim.py): a token that
would complete a banned word is turned down and another picked in its place; a row that
finds none is cut there. The core cuts a finished text before any banned word as well,
so no engine, however it samples, posts one.

Words match case aside and NFKC-normalised (a full-width "ＡＢＣ" is "abc"). A word that
starts or ends with a Latin letter or digit matches only as a whole word there ("ass"
is not in "class"); others (Japanese) match anywhere. While a text is growing a word at
its very end counts as whole: the guard would rather turn down "ass" than wait for
"assignment".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from bot.generation.row_check import RowCheck

_WORDISH = re.compile(r"[0-9a-z]")


def _folded(text: str) -> tuple[str, list[int]]:
    """`text` normalised and case-folded one character at a time, and for each folded
    character the index of the character of `text` it came from."""
    out: list[str] = []
    owners: list[int] = []
    for i, ch in enumerate(text):
        folded = unicodedata.normalize("NFKC", ch).casefold()
        out.append(folded)
        owners.extend([i] * len(folded))
    return "".join(out), owners


def _pattern(word: str) -> str:
    before = r"(?<![0-9a-z])" if _WORDISH.match(word[0]) else ""
    after = r"(?![0-9a-z])" if _WORDISH.match(word[-1]) else ""
    return before + re.escape(word) + after


class BannedWords:
    def __init__(self, words: Sequence[str]) -> None:
        folded = {f for w in words if (f := _folded(w.strip())[0])}
        # Longest first: where two words start at one place, the longer one is found.
        ordered = sorted(folded, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(_pattern, ordered))) if ordered else None
        # How far back from a text's end a word that ends there can start (folding can
        # make one character several).
        self.reach = 2 * max(map(len, ordered), default=0) + 8

    def __bool__(self) -> bool:
        return self.pattern is not None

    def first(self, text: str, since: int = 0) -> int | None:
        """Where in `text` the first banned word starts, looking at words that end
        after character `since`; None when there is none."""
        if self.pattern is None:
            return None
        start = max(0, since - self.reach)
        folded, owners = _folded(text[start:])
        for match in self.pattern.finditer(folded):
            if start + owners[match.end() - 1] >= since:
                return start + owners[match.start()]
        return None

    def cut(self, text: str) -> str:
        """`text` up to its first banned word, trailing space trimmed."""
        at = self.first(text)
        return text if at is None else text[:at].rstrip()


class BannedGuard(RowCheck):
    """One row's banned-words check (row_check.py); the prompt is the member's own text
    and is not looked at."""

    def __init__(self, words: BannedWords, prompt: str) -> None:
        super().__init__(prompt)
        self.words = words

    def refuses(self, text: str, since: int) -> bool:
        return self.words.first(text, since) is not None
