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


class _DatasetWriter:
    """Writes the split files page by page. Every call does CPU or disk work (clean-up,
    spam filter, JSON, tokenizing, writes), so build_dataset runs each one in a
    thread: a channel of 100,000 messages would otherwise freeze the event loop, and
    every platform connection with it, for seconds."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, out_dir: Path, total: int, options: DatasetOptions
    ) -> None:
        self.tokenizer, self.out_dir, self.options = tokenizer, out_dir, options
        n_eval = eval_count(total, options.eval_fraction)
        self.n_train_target = total - n_eval
        # Validation only once there is enough to spare: a tiny channel trains on all.
        n_valid = (
            eval_count(self.n_train_target, options.valid_fraction)
            if self.n_train_target >= 20
            else 0
        )
        self.n_fit_target = self.n_train_target - n_valid
        self.spam = SpamFilter()
        self.seen = self.kept = self.skipped = 0
        self.train_messages = self.eval_messages = self.valid_messages = self.train_tokens = 0
        out_dir.mkdir(parents=True, exist_ok=True)
        self.train_f = (out_dir / "train.bin").open("wb")
        self.texts_f = (out_dir / "train.jsonl").open("w", encoding="utf-8")
        self.valid_f = (out_dir / "valid.jsonl").open("w", encoding="utf-8")
        self.eval_f = (out_dir / "eval.jsonl").open("w", encoding="utf-8")

    def add_page(self, page: list[tuple[str, str, str]]) -> None:
        train_texts: list[str] = []
        for author, raw, voice in page:
            self.seen += 1
            text = clean_message(raw)
            if not self.spam.keep(text):
                self.skipped += 1
                continue
            self.kept += 1
            text = model_text(text, author, voice, self.options.author_prefix)
            line = json.dumps(text, ensure_ascii=False) + "\n"
            if self.seen <= self.n_fit_target:
                train_texts.append(text)
                self.texts_f.write(line)
            elif self.seen <= self.n_train_target:
                self.texts_f.write(line)
                self.valid_f.write(line)
                self.valid_messages += 1
            else:
                self.eval_f.write(line)
                self.eval_messages += 1
        if train_texts:
            ids = tokenize_messages(self.tokenizer, train_texts)
            self.train_f.write(ids.tobytes())
            self.train_messages += len(train_texts)
            self.train_tokens += len(ids)

    def close(self) -> None:
        for f in (self.train_f, self.texts_f, self.valid_f, self.eval_f):
            f.close()

    def finish(self, max_message_id: int) -> DatasetInfo:
        self.close()
        eval_lists = _eval_token_lists(self.tokenizer, read_eval_texts(self.out_dir))
        info = DatasetInfo(
            self.kept,
            self.skipped,
            self.train_messages,
            self.eval_messages,
            self.train_tokens,
            sum(len(ids) for ids in eval_lists),
            max_message_id,
            self.valid_messages,
        )
        info.save(self.out_dir / "dataset.json")
        return info


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
    pages hold, up to message `max_message_id`. Only the reading of pages runs on the
    event loop; the work on each page runs in a thread."""
    writer = await asyncio.to_thread(_DatasetWriter, tokenizer, out_dir, total, options)
    try:
        async for page in pages:
            await asyncio.to_thread(writer.add_page, page)
    except BaseException:
        writer.close()
        raise
    return await asyncio.to_thread(writer.finish, max_message_id)


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
