"""A Hugging Face hub cache built in a test, with tiny models shaped like the real bases.

The cache has the layout huggingface_hub writes (`models--org--name/blobs/<sha>`,
`snapshots/<commit>/<file>` links into the blobs, `refs/main` naming the commit), so
loading by hub id goes through exactly the code a real pre-downloaded cache does.

The models are tiny GPT-2s (2 layers, width 32) with the tokenizers the real bases
ship:

- rinna-style (`rinna/japanese-gpt2-xsmall`): a SentencePiece unigram model loaded as
  `T5Tokenizer`, no tokenizer.json, `do_lower_case`, bos = eos = `</s>`, pad `[PAD]`;
  SentencePiece turns "\\n" into "▁" and starts every text with a lone "▁" piece.
- colorfulscoop-style (`colorfulscoop/gpt2-small-ja`): SentencePiece loaded as
  `BertGenerationTokenizer` (the Python sentencepiece backend), with its own
  `<s>`, `</s>`, `<pad>`, `<sep>`, `<cls>` specials.
- English GPT-2 style (`gpt2`): byte-level BPE with `<|endoftext|>` and no pad token.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import string
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache_env(root: Path) -> dict[str, str]:
    """Environment variables that make huggingface_hub (and Tsuzuki) use `root`'s cache
    and never reach the network: offline mode, and an endpoint on a closed local port
    for anything that would try anyway."""
    return {
        "HF_HOME": str(root),
        "HF_HUB_CACHE": str(root / "hub"),
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }


def add_to_cache(cache: Path, repo_id: str, files: Path, commit: str = COMMIT) -> Path:
    """Puts the files of directory `files` into `cache` as repo `repo_id` at `commit`
    (the blobs/snapshots/refs layout); returns the snapshot directory."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in sorted(files.iterdir()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path.name
        try:
            link.symlink_to(os.path.relpath(blob, snapshot))
        except OSError:  # no symlinks here: huggingface_hub then stores copies
            shutil.copyfile(blob, link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot


def _tiny_gpt2(directory: Path, vocab_size: int, **token_ids: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=128, n_embd=32, n_layer=2, n_head=2, **token_ids
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(directory)


# A real base's vocabulary, trained on web text, spells every ASCII character.
ASCII = " ".join(string.ascii_letters + string.digits + string.punctuation)


def _sentencepiece(texts: Iterable[str], lower: bool = False, **options: Any) -> bytes:
    import sentencepiece as spm

    lines = [*texts, ASCII, ASCII]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line.lower() for line in lines] if lower else lines),
        model_writer=model,
        vocab_size=400,
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=1.0,
        minloglevel=2,
        **options,
    )
    return model.getvalue()


def save_rinna_like(directory: Path, texts: Iterable[str]) -> None:
    """rinna/japanese-gpt2-*: SentencePiece as T5Tokenizer, lower-cased, bos = eos."""
    directory.mkdir(parents=True)
    model = _sentencepiece(
        texts,
        lower=True,  # trained on lower-cased text, like rinna's
        pad_id=0,
        pad_piece="[PAD]",
        unk_id=1,
        unk_piece="<unk>",
        bos_id=-1,
        eos_id=2,
        eos_piece="</s>",
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
    )
    (directory / "spiece.model").write_bytes(model)
    specials = {
        "bos_token": "</s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    }
    _write_json(directory / "special_tokens_map.json", specials)
    _write_json(
        directory / "tokenizer_config.json",
        {
            **specials,
            "do_lower_case": True,
            "extra_ids": 0,
            "additional_special_tokens": [],
            "tokenizer_class": "T5Tokenizer",
        },
    )
    _tiny_gpt2(directory, _piece_count(model), bos_token_id=2, eos_token_id=2, pad_token_id=0)


def save_colorfulscoop_like(directory: Path, texts: Iterable[str]) -> None:
    """colorfulscoop/gpt2-small-ja: SentencePiece as BertGenerationTokenizer."""
    directory.mkdir(parents=True)
    model = _sentencepiece(
        texts,
        pad_id=0,
        pad_piece="<pad>",
        unk_id=1,
        bos_id=2,
        eos_id=3,
        user_defined_symbols=["<sep>", "<cls>", "<mask>"],
    )
    (directory / "spiece.model").write_bytes(model)
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "sep_token": "<sep>",
        "cls_token": "<cls>",
        "mask_token": "<mask>",
    }
    _write_json(directory / "special_tokens_map.json", specials)
    _write_json(
        directory / "tokenizer_config.json",
        {**specials, "tokenizer_class": "BertGenerationTokenizer"},
    )
    _tiny_gpt2(directory, _piece_count(model), bos_token_id=2, eos_token_id=3, pad_token_id=0)


def save_gpt2_like(directory: Path, texts: Iterable[str]) -> None:
    """gpt2: byte-level BPE, `<|endoftext|>` for bos/eos/unk, no pad token."""
    from tokenizers import ByteLevelBPETokenizer

    directory.mkdir(parents=True)
    bpe = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=False)
    bpe.train_from_iterator(
        list(texts), vocab_size=600, min_frequency=2, special_tokens=["<|endoftext|>"]
    )
    bpe.save(str(directory / "tokenizer.json"))
    bpe.save_model(str(directory))  # vocab.json and merges.txt, as the real gpt2 has
    _write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "GPT2Tokenizer",
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "add_prefix_space": False,
            "model_max_length": 1024,
        },
    )
    eot = bpe.token_to_id("<|endoftext|>")
    _tiny_gpt2(directory, bpe.get_vocab_size(), bos_token_id=eot, eos_token_id=eot)


BASES: dict[str, Callable[[Path, Iterable[str]], None]] = {
    "rinna": save_rinna_like,
    "colorfulscoop": save_colorfulscoop_like,
    "gpt2": save_gpt2_like,
}


def _piece_count(model: bytes) -> int:
    import sentencepiece as spm

    return int(spm.SentencePieceProcessor(model_proto=model).get_piece_size())


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2), encoding="utf-8")
