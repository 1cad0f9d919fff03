"""How well a version writes as each member who lent the channel their voice, measured
on that member's held-out messages: with their voice tag (what `/continue … as:@them`
does) against the same model without it (the channel's voice).

The tagged figure charges the model for the tag's tokens too (−log p(tag, text) rather
than −log p(text | tag)), so it can only overstate the cost of the voice: where it is
lower than the channel's figure, the voice is better by at least that much.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.domain import VOICE_TAG
from bot.training.evaluation import EvalResult

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
    texts: list[str], evaluate: Callable[[list[str]], EvalResult]
) -> dict[str, VoiceFigure]:
    """Figures per voice tag among the held-out `texts` (`evaluate` scores texts with
    the version, as its held-out figure is scored)."""
    figures = {}
    for tag, tagged in by_voice(texts).items():
        if len(tagged) < MIN_MESSAGES:
            continue
        plain = [t[len(tag) :] for t in tagged]
        as_channel = evaluate(plain)
        as_voice = evaluate(tagged)
        # Per character of the member's text alone (each boundary counts one, as in
        # every held-out figure), so both figures divide by the same count.
        chars = sum(len(t) + 1 for t in plain)
        figures[tag] = VoiceFigure(
            len(tagged), as_voice.nats / chars / math.log(2), as_channel.bits_per_char
        )
    return figures


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
