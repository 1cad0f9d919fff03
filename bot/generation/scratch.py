"""`scratch` models: a GPT-2 built from its config plus a byte-level BPE tokenizer trained
on the channel's own history. Needs no network, so tests and first runs work anywhere.

Byte-level BPE falls back to raw bytes for anything it has not learned, so Japanese,
emoji and any other Unicode round-trip even when the history never showed them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bot.generation.spec import ScratchSize

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EOT = "<|endoftext|>"  # GPT-2's end-of-text token: the boundary between messages


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerBase:
    """A byte-level BPE fitted to `texts`, wrapped as a transformers fast tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=False)
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT], show_progress=False
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        pad_token=EOT,
        model_max_length=None,
    )


def build_scratch_model(
    size: ScratchSize, vocab_size: int, eot_id: int, seed: int = 0
) -> PreTrainedModel:
    """A randomly initialised GPT-2 of the given shape (seeded: same seed, same weights)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=size.n_positions,
        n_embd=size.n_embd,
        n_layer=size.n_layer,
        n_head=size.n_head,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        pad_token_id=eot_id,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


def create_scratch(directory: Path, size: ScratchSize, texts: Iterable[str]) -> None:
    """Writes a scratch model and its tokenizer to `directory` (atomically: a crash
    half-way never leaves a directory that looks complete)."""
    tokenizer = train_tokenizer(texts, size.vocab_size)
    eot_id = tokenizer.convert_tokens_to_ids(EOT)
    model = build_scratch_model(size, len(tokenizer), eot_id)
    tmp = directory.with_name(directory.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(directory)
