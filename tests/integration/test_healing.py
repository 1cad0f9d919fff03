"""Token healing: a prompt cut inside a word goes on with the word, whichever tokenizer
the base has (byte-level BPE, SentencePiece as rinna and colorfulscoop ship it).

The channel's counts decide here (the mixture's network share is 0, the network an
untrained tiny GPT-2), so what is measured is only how the prompt's end meets them:
without healing, the prompt's last token is one the channel's text never had there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.generation.batching import Row, decode_rows
from bot.generation.cleaning import decode_new_text
from bot.generation.healing import TokenBytes, back_off, token_bytes
from bot.generation.live_ngram import LiveNgram
from bot.generation.loading import load_directory
from bot.generation.ngram import Mixture
from bot.generation.prompt import continue_prompt
from bot.setting_specs import SamplingSettings
from tests.hubcache import BASES

LINES = [
    "織田信長は、尾張の大名だった。",
    "織田信長は、天下を目指した。",
    "今日の晩ごはんはカレーだった",
    "本能寺の変は有名だ",
    "the weekend tournament starts at noon",
    "our weekend plans are ramen",
] * 6
GREEDY = SamplingSettings(temperature=0, max_new_tokens=12, repetition_penalty=1.0)


def _continue(directory: Path, prompt: str, heal: bool) -> str:
    loaded = load_directory(directory, "base")
    tok = loaded.tokenizer
    assert loaded.eos_id is not None
    messages = [tok(line, add_special_tokens=False)["input_ids"] for line in LINES]
    counts = LiveNgram(len(tok), loaded.eos_id, messages, order=3)
    table = token_bytes(tok) if heal else None
    prepared = continue_prompt(tok, prompt, loaded.eos_id, 128, 12, healing=table)
    row = Row(
        prepared.input_ids,
        GREEDY,
        0,
        prepared.max_new_tokens,
        loaded.eos_id,
        mixture=Mixture(counts, 0.0),
        tail=prepared.tail,
        healing=table,
    )
    [new] = decode_rows(loaded.model, [row])
    text = decode_new_text(tok, prepared.input_ids, new)
    tail = decode_new_text(tok, prepared.input_ids, list(prepared.tail_ids))
    return prompt + text[len(tail) :] if text.startswith(tail) else prompt + text


@pytest.mark.parametrize("kind", ["rinna", "colorfulscoop", "gpt2"])
@pytest.mark.parametrize(
    ("prompt", "word"),
    [
        ("織田信", "織田信長は、"),
        ("本能", "本能寺"),
        ("今日の晩ごは", "今日の晩ごはん"),
        ("the week", "the weekend"),
    ],
)
def test_a_prompt_cut_inside_a_word_goes_on_with_the_word(
    tmp_path: Path, kind: str, prompt: str, word: str
) -> None:
    directory = tmp_path / kind
    BASES[kind](directory, LINES)
    healed = _continue(directory, prompt, heal=True)
    assert healed.startswith(word), healed


def test_without_healing_the_word_is_broken(tmp_path: Path) -> None:
    """The positive control: the same counts, the prompt's last token kept, for a
    byte-level tokenizer whose merges put "信長" in one token."""
    directory = tmp_path / "gpt2"
    BASES["gpt2"](directory, LINES)
    tok = load_directory(directory, "base").tokenizer
    assert len(tok("織田信長", add_special_tokens=False)["input_ids"]) < len(
        tok("織田信", add_special_tokens=False)["input_ids"]
    ) + len(tok("長", add_special_tokens=False)["input_ids"])
    assert not _continue(directory, "織田信", heal=False).startswith("織田信長")


def test_backing_off_takes_whole_characters_and_never_the_boundary(tmp_path: Path) -> None:
    directory = tmp_path / "gpt2"
    BASES["gpt2"](directory, LINES)
    tok = load_directory(directory, "base").tokenizer
    table = TokenBytes(tok)
    eos = tok.eos_token_id
    ids = [eos, *tok("信", add_special_tokens=False)["input_ids"]]
    healed = back_off(table, ids)
    assert healed.ids == [eos] and healed.tail == "信".encode()
    assert back_off(table, [eos]).tail == b""  # nothing but the boundary: nothing to heal
    # Every token that fits spells the tail's start or starts with the whole tail.
    for token in table.fitting("信".encode()):
        piece = table.bytes[token]
        assert piece.startswith("信".encode()) or "信".encode().startswith(piece)
