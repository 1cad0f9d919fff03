"""What a row's text is checked by as it grows (the leak guard, banned words): each
check looks only at what is new since the text it last let through, and counts the
tokens it turned down. The decoding loop asks every check (`allows`) and, only when all
of them allow a token, moves each past it (`passed`): a token one check turns down
must not be skipped by the next check's look at the one picked instead."""

from __future__ import annotations


class RowCheck:
    def __init__(self, prompt: str) -> None:
        self.prompt = prompt  # what the member typed: never held against them
        self.checked = len(prompt)
        self.blocked = 0

    def refuses(self, text: str, since: int) -> bool:
        """Whether `text` (the prompt, then the new text) breaks the rule in what ends
        after character `since`."""
        raise NotImplementedError

    def allows(self, new_text: str) -> bool:
        # A byte-level model may stop inside a character: check only whole ones.
        if self.refuses(self._text(new_text), self.checked):
            self.blocked += 1
            return False
        return True

    def passed(self, new_text: str) -> None:
        """The row took `new_text` (every check allowed it): later checks start after it."""
        self.checked = len(self._text(new_text))

    def _text(self, new_text: str) -> str:
        return self.prompt + new_text.rstrip("\ufffd")
