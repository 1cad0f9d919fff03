"""Token healing: a prompt that ends inside a word goes on with the word.

Japanese has no spaces, so most prompts end in the middle of a token: "織田信" is
"織田" + "信", while the channel's text always had "織田" + "信長". After "信" the
model has almost never seen anything (in training "信" was nearly always inside
"信長"), so it ends the word there: "織田信。". So the prompt's last token is taken back
off, and the first generated tokens may only be those that spell what was taken off
(and then go on as they like): "信長" is allowed, and so is "信" followed by "長".

This works on the tokens' bytes, so it is the same for byte-level BPE (GPT-2, scratch
models: a token may be part of a character) and SentencePiece ("▁" for a space,
"<0xE3>" byte pieces).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# How far back a prompt's end is taken: the last word (Japanese has no spaces: the run
# of letters at the end), at most this many characters of it, in at most this many
# tokens. A longer back-off lets the model choose how to spell more of the word (the
# channel's text may have "織田信長" as one token, the prompt "織田信" as five
# byte-level ones), at the cost of a decode step per token taken.
MAX_BACKOFF_CHARS = 4
MAX_BACKOFF = 8


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character each byte is written as."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    parts = [backend.pre_tokenizer, backend.decoder]
    return any("ByteLevel" in repr(p) for p in parts if p is not None)


class TokenBytes:
    """Every token's bytes, sorted, to find the tokens that fit a text's start."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        special = set(tokenizer.all_special_ids)
        decoder = _byte_decoder() if _is_byte_level(tokenizer) else None
        self.bytes: list[bytes] = []
        for token, piece in enumerate(pieces):
            self.bytes.append(b"" if token in special or piece is None else _bytes(piece, decoder))
        order = sorted((b, t) for t, b in enumerate(self.bytes) if b)
        self._sorted = [b for b, _ in order]
        self._ids = [t for _, t in order]
        self._exact: dict[bytes, list[int]] = {}
        for b, t in order:
            self._exact.setdefault(b, []).append(t)

    def fitting(self, tail: bytes) -> list[int]:
        """Tokens that spell `tail`'s start (more may follow) or begin with all of it."""
        lo = bisect.bisect_left(self._sorted, tail)
        hi = bisect.bisect_left(self._sorted, _after_prefix(tail)) if tail else len(self._sorted)
        tokens = self._ids[lo:hi]
        for n in range(1, len(tail)):
            tokens += self._exact.get(tail[:n], [])
        return tokens


def _bytes(piece: str, decoder: dict[str, int] | None) -> bytes:
    if decoder is not None:
        try:
            return bytes(decoder[c] for c in piece)
        except KeyError:
            return piece.encode("utf-8")
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return bytes([int(piece[3:5], 16)])  # a SentencePiece byte-fallback piece
    return piece.replace("▁", " ").encode("utf-8")


def _after_prefix(prefix: bytes) -> bytes:
    """The smallest bytes greater than every bytes that starts with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\xff" * (len(prefix) + 1)
    return stripped[:-1] + bytes([stripped[-1] + 1])


_TABLES: dict[int, tuple[PreTrainedTokenizerBase, TokenBytes]] = {}


def token_bytes(tokenizer: PreTrainedTokenizerBase) -> TokenBytes:
    """The table of a tokenizer, built once (on the device thread: no lock needed)."""
    entry = _TABLES.get(id(tokenizer))
    if entry is None or entry[0] is not tokenizer:
        entry = (tokenizer, TokenBytes(tokenizer))
        _TABLES[id(tokenizer)] = entry
        while len(_TABLES) > 16:
            _TABLES.pop(next(iter(_TABLES)))
    return entry[1]


@dataclass(frozen=True)
class Healed:
    ids: list[int]  # the prompt without its last token(s)
    tail: bytes  # what they spelled: the first generated tokens must spell it again


def back_off(table: TokenBytes, ids: list[int], keep: int = 1) -> Healed:
    """Takes the prompt's last word (or its last MAX_BACKOFF_CHARS characters) off, in
    whole tokens and whole characters, never the first `keep` ids (the boundary)."""
    cut, tail = len(ids), b""
    while cut > keep and len(ids) - cut < MAX_BACKOFF:
        piece = table.bytes[ids[cut - 1]]
        if not piece:
            break  # a special token: the word starts after it
        cut, tail = cut - 1, piece + tail
        if _continues_a_character(tail):
            continue  # inside a character: it must come off whole
        text = tail.decode("utf-8", errors="ignore")
        before = table.bytes[ids[cut - 1]] if cut > keep else b""
        starts_word = not text[:1].isalnum()  # a space or punctuation opens it
        if len(text) >= MAX_BACKOFF_CHARS or starts_word or not _ends_a_word(before):
            break
    if not tail or _continues_a_character(tail):
        return Healed(ids, b"")  # nothing to take, or no character boundary in reach
    return Healed(ids[:cut], tail)


def _ends_a_word(piece: bytes) -> bool:
    """Whether a token ends inside a word: its last character a letter or a digit (or
    a character it only begins: the word goes on into the next token)."""
    if not piece:
        return False
    text = piece.decode("utf-8", errors="replace")
    last = text[-1]
    return last == "\ufffd" or last.isalnum()


def _continues_a_character(data: bytes) -> bool:
    """Whether `data` starts inside a UTF-8 character (a continuation byte)."""
    return bool(data) and 0x80 <= data[0] < 0xC0


def advance(tail: bytes, token_piece: bytes) -> bytes:
    """What is left of `tail` to spell after a token with these bytes."""
    return tail[len(token_piece) :] if len(token_piece) < len(tail) else b""
