"""Output cleaning: decoded tokens → text fit to post (before per-platform rendering)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# C0/C1 control characters except tab and newline: terminal escape sequences and the like.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BLANK_RUNS = re.compile(r"\n{3,}")


def decode_new_text(
    tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int], new_ids: list[int]
) -> str:
    """The text the new tokens add after the prompt.

    Decoding the new tokens on their own can differ from how they read after the prompt
    (SentencePiece drops a leading space, byte-level BPE may join bytes across the
    boundary), so decode both and take the difference, as transformers' pipeline does.
    """
    head = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    full = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True)
    if full.startswith(head):
        return str(full[len(head) :])
    return str(tokenizer.decode(new_ids, skip_special_tokens=True))


def clean(text: str) -> str:
    # Byte-level models can emit byte sequences that are not valid UTF-8 (a generation
    # cut inside a multi-byte character, or an undertrained model), which decode to
    # U+FFFD; drop those rather than show broken glyphs.
    text = text.replace("\ufffd", "")
    text = _CONTROL.sub("", text)
    text = _BLANK_RUNS.sub("\n\n", text)
    return text.rstrip()
