"""How well a version writes as each member who lent the channel their voice, measured
on that member's held-out messages: given their voice tag (what `/continue … as:@them`
does), −log p(text | tag), against the same model without it (the channel's voice),
−log p(text), both per character of the member's text.

The tag's own tokens are not scored: nobody asks the model to guess whose turn it is.
Where a text's tokens do not start with the tag's (a tokenizer merged across the
boundary), the tag is scored with it, which can only overstate the voice's cost.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bot.domain import VOICE_TAG
from bot.training.evaluation import eval_stream, evaluate_texts, token_probs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from bot.generation.ngram import Mixture

# Fewer held-out messages than this say too little about one member to show a figure.
MIN_MESSAGES = 3
METADATA = "metadata.json"


@dataclass(frozen=True)
class VoiceFigure:
    messages: int  # the member's held-out messages
    bits_as_voice: float  # bits per character with their tag
    bits_as_channel: float  # the same messages, the same model, no tag


def by_voice(texts: list[str]) -> dict[str, list[str]]:
    """Held-out texts grouped by the voice tag they open with."""
    groups: dict[str, list[str]] = defaultdict(list)
    for text in texts:
        if (match := VOICE_TAG.match(text)) is not None:
            groups[match.group(0)].append(text)
    return dict(groups)


def measure(
    texts: list[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    mixture: Mixture | None = None,
) -> dict[str, VoiceFigure]:
    """Figures per voice tag among the held-out `texts`, scored as the version's own
    held-out figure is (in blocks, with its n-gram mixture)."""
    figures = {}
    for tag, tagged in by_voice(texts).items():
        if len(tagged) < MIN_MESSAGES:
            continue
        plain = [t[len(tag) :] for t in tagged]
        as_channel = evaluate_texts(model, tokenizer, plain, block_size, mixture=mixture)
        nats = _nats_after_tag(model, tokenizer, tag, tagged, block_size, mixture)
        # Per character of the member's text alone (each boundary counts one, as in
        # every held-out figure), so both figures divide by the same count.
        chars = sum(len(t) + 1 for t in plain)
        figures[tag] = VoiceFigure(
            len(tagged), nats / chars / math.log(2), as_channel.bits_per_char
        )
    return figures


def _nats_after_tag(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tag: str,
    tagged: list[str],
    block_size: int,
    mixture: Mixture | None,
) -> float:
    """−log p(text | tag) summed over the texts: the stream as the model sees it
    (end-of-text, tag and text, end-of-text, …), every token but the tag's scored."""
    stream = eval_stream(tokenizer, tagged)
    probs = token_probs(model, stream, block_size)
    if mixture is not None:
        probs = mixture.mix(probs, mixture.ngram.stream_probs(stream))
    tag_ids = list(tokenizer(tag, add_special_tokens=False)["input_ids"])
    rows = tokenizer(tagged, add_special_tokens=False)["input_ids"]
    scored = np.ones(len(probs), dtype=bool)
    start = 1  # the stream opens with end-of-text; probs[i] predicts stream[i + 1]
    for row in rows:
        if list(row[: len(tag_ids)]) == tag_ids:
            scored[start - 1 : start - 1 + len(tag_ids)] = False
        start += len(row) + 1
    return float(-np.log(np.maximum(probs[scored], 1e-300)).sum())


def as_metadata(figures: dict[str, VoiceFigure]) -> dict[str, dict[str, float]]:
    return {tag: asdict(f) for tag, f in figures.items()}


def figure_of(version_dir: str, tag: str) -> VoiceFigure | None:
    """The figure a version recorded for a voice; None when it has none (the member
    lent their voice after it was trained, or has too few held-out messages)."""
    try:
        metadata = json.loads((Path(version_dir) / METADATA).read_text(encoding="utf-8"))
        return VoiceFigure(**metadata["voices"][tag])
    except (OSError, ValueError, KeyError, TypeError):
        return None
