"""Prompt building: text → token ids that fit the model's context.

Training data is "message<eos>message<eos>…", so an end-of-message token before a prompt
tells the model a new message starts here, and a reply is generated after the channel's
last messages, each closed by <eos>. Prompts longer than the context are cut from the
left: the words nearest to where generation starts matter most. A continued prompt's
last token is taken back off, to be spelled again by the first generated tokens
(bot/generation/healing.py), so a prompt that ends inside a word goes on with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.generation.healing import TokenBytes, back_off

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class PreparedPrompt:
    input_ids: list[int]
    max_new_tokens: int  # may be lowered so prompt + output fit the context
    truncated: bool  # True when the start of the prompt had to be cut
    # Token healing: the bytes of the prompt's end that were taken off, to be spelled
    # by the first new tokens, and the ids that spelled them.
    tail: bytes = b""
    tail_ids: tuple[int, ...] = ()


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    # No special tokens: some tokenizers (rinna's T5Tokenizer) would append </s>,
    # which would end the message before it starts.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def fit_to_context(ids: list[int], context_length: int, max_new_tokens: int) -> PreparedPrompt:
    """Keeps the newest tokens so that prompt + generated tokens fit the context."""
    max_new = max(1, min(max_new_tokens, context_length - 1))
    keep = context_length - max_new
    if len(ids) <= keep:
        return PreparedPrompt(ids, max_new, truncated=False)
    return PreparedPrompt(ids[-keep:], max_new, truncated=True)


def continue_prompt(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    eos_id: int | None,
    context_length: int,
    max_new_tokens: int,
    healing: TokenBytes | None = None,
) -> PreparedPrompt:
    head = [eos_id] if eos_id is not None else []
    ids = head + encode(tokenizer, text)
    fitted = fit_to_context(ids, context_length, max_new_tokens)
    if healing is None:
        return fitted
    healed = back_off(healing, fitted.input_ids)
    if not healed.tail:
        return fitted
    # The tokens taken off are written again: they do not count against the budget.
    return PreparedPrompt(
        healed.ids,
        fitted.max_new_tokens + len(fitted.input_ids) - len(healed.ids),
        fitted.truncated,
        healed.tail,
        tuple(fitted.input_ids[len(healed.ids) :]),
    )


def reply_prompt(
    tokenizer: PreTrainedTokenizerBase,
    context: Sequence[str],
    eos_id: int | None,
    context_length: int,
    max_new_tokens: int,
) -> PreparedPrompt:
    boundary = [eos_id] if eos_id is not None else encode(tokenizer, "\n")
    ids: list[int] = list(boundary)
    for message in context:
        ids += encode(tokenizer, message) + boundary
    return fit_to_context(ids, context_length, max_new_tokens)
