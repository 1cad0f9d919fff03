"""A channel's history → packed token blocks for training, and a held-out eval split.

The shape of the data is nanoGPT's: every message is tokenized, closed with the
tokenizer's end-of-text token and appended to one long stream of uint32 token ids on
disk (train.bin). Training cuts blocks of `block_size` tokens out of that stream, so no
compute goes to padding. The newest ~5% of messages are held out (eval.jsonl): the eval
then measures what the bot will face next, not a random sample of the past. The newest
~5% of the rest are validation messages (valid.jsonl), also kept out of train.bin: they
choose the best point of the run and the weight of the n-gram mixture, so the eval
messages decide nothing and their figure stays honest. Every training text (validation
included) is also kept as text (train.jsonl) for the channel's Markov chain.

Messages are read page by page and written out as they come, so a channel of a
million messages never sits in memory as one list.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bot.generation.chat_text import clean_message, model_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TOKEN_DTYPE = np.uint32

# How far back a repeated line counts as spam (the same text again within this many
# messages), rather than a common phrase like "lol" said again later.
SPAM_WINDOW = 5


@dataclass(frozen=True)
class DatasetOptions:
    eval_fraction: float = 0.05  # share of the newest messages held out for evaluation
    valid_fraction: float = 0.05  # share of the rest held out for validation
    author_prefix: bool = False  # train on "name: text" so the model learns who talks
    page_size: int = 5000  # messages read from the database per query


@dataclass(frozen=True)
class DatasetInfo:
    messages: int  # messages used (after clean-up)
    skipped: int  # empty or spam lines left out
    train_messages: int
    eval_messages: int
    train_tokens: int
    eval_tokens: int
    max_message_id: int  # the newest message read: what "new since" counts from
    valid_messages: int = 0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> DatasetInfo:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


class SpamFilter:
    """Drops empty lines and a text repeated within the last few messages."""

    def __init__(self, window: int = SPAM_WINDOW) -> None:
        self.recent: deque[str] = deque(maxlen=window)

    def keep(self, text: str) -> bool:
        if not text or text in self.recent:
            return False
        self.recent.append(text)
        return True


def eval_count(total: int, fraction: float) -> int:
    """How many of the newest messages to hold out: at least one once there are two."""
    if total < 2:
        return 0
    return min(total - 1, max(1, math.ceil(total * fraction)))


def tokenize_messages(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> np.ndarray:
    """Token ids of the messages, each followed by end-of-text, as one flat array."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no end-of-text token to separate messages")
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    flat = [token for ids in encoded for token in (*ids, eos)]
    return np.asarray(flat, dtype=TOKEN_DTYPE)


async def build_dataset(
    pages: AsyncIterator[list[tuple[str, str, str]]],
    total: int,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    max_message_id: int,
    options: DatasetOptions = DatasetOptions(),
) -> DatasetInfo:
    """Writes out_dir/train.bin (token stream) and out_dir/eval.jsonl (held-out texts)
    from pages of (author, text, voice tag or "") oldest first; `total` is how many the
    pages hold, up to message `max_message_id`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n_eval = eval_count(total, options.eval_fraction)
    n_train_target = total - n_eval
    # Validation only once there is enough to spare: a tiny channel trains on all.
    n_valid = eval_count(n_train_target, options.valid_fraction) if n_train_target >= 20 else 0
    n_fit_target = n_train_target - n_valid
    spam = SpamFilter()
    seen = kept = skipped = train_messages = eval_messages = train_tokens = eval_tokens = 0
    valid_messages = 0
    with (
        (out_dir / "train.bin").open("wb") as train_f,
        (out_dir / "train.jsonl").open("w", encoding="utf-8") as texts_f,
        (out_dir / "valid.jsonl").open("w", encoding="utf-8") as valid_f,
        (out_dir / "eval.jsonl").open("w", encoding="utf-8") as eval_f,
    ):
        async for page in pages:
            train_texts: list[str] = []
            for author, raw, voice in page:
                seen += 1
                text = clean_message(raw)
                if not spam.keep(text):
                    skipped += 1
                    continue
                kept += 1
                text = model_text(text, author, voice, options.author_prefix)
                if seen <= n_fit_target:
                    train_texts.append(text)
                    texts_f.write(json.dumps(text, ensure_ascii=False) + "\n")
                elif seen <= n_train_target:
                    texts_f.write(json.dumps(text, ensure_ascii=False) + "\n")
                    valid_f.write(json.dumps(text, ensure_ascii=False) + "\n")
                    valid_messages += 1
                else:
                    eval_f.write(json.dumps(text, ensure_ascii=False) + "\n")
                    eval_messages += 1
            if train_texts:
                # Tokenizing is CPU work in Rust; keep it off the event loop.
                ids = await asyncio.to_thread(tokenize_messages, tokenizer, train_texts)
                train_f.write(ids.tobytes())
                train_messages += len(train_texts)
                train_tokens += len(ids)
    eval_tokens = sum(len(ids) for ids in _eval_token_lists(tokenizer, read_eval_texts(out_dir)))
    info = DatasetInfo(
        kept,
        skipped,
        train_messages,
        eval_messages,
        train_tokens,
        eval_tokens,
        max_message_id,
        valid_messages,
    )
    info.save(out_dir / "dataset.json")
    return info


def read_eval_texts(out_dir: Path, name: str = "eval") -> list[str]:
    """The held-out texts of a dataset: "eval", "valid" or "train" (all training text)."""
    path = out_dir / f"{name}.jsonl"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _eval_token_lists(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> list[list[int]]:
    texts = list(texts)
    if not texts:
        return []
    eos = tokenizer.eos_token_id
    return [[*ids, eos] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def load_tokens(path: Path) -> np.ndarray:
    """The token stream, memory-mapped: pages in as training reads it."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
