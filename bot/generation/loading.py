"""Loading a causal LM and its own tokenizer from a directory: a local one, a hub
snapshot in the local cache (bot/generation/bases.py finds it), a version, a scratch
model. Nothing here goes to the network: `local_files_only` always.

Tokenizers always come from the model's own files through AutoTokenizer (SentencePiece
for rinna's T5Tokenizer, byte-level BPE for GPT-2 and scratch models), made fit for chat
by bot/generation/tokenizing.py. A model without a tokenizer is an error: a silent
fallback to the English GPT-2 tokenizer would turn Japanese into garbage that still
looks like it works.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot import messages as M
from bot.errors import UserError
from bot.generation.bases import ADAPTER_CONFIG, check_directory, locate
from bot.generation.tokenizing import prepare_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready to generate with, and what it needs to know about itself."""

    name: str  # shown to users: "scratch:tiny", "rinna/japanese-gpt2-xsmall", "v3"
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    context_length: int  # tokens the model can attend to (prompt + generated)
    eos_id: int | None  # the end-of-message token (every loaded tokenizer has one)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_directory(path: Path, name: str) -> LoadedModel:
    """A model saved with save_pretrained (model + tokenizer in one directory), or a
    LoRA version (its adapter merged into the base it names)."""
    check_directory(path)
    tokenizer = load_tokenizer(path, name)
    try:
        model = _model_from(path, merge=True)
    except (OSError, ValueError) as e:
        raise UserError(M.t("model_load_failed", spec=name, reason=_first_line(e))) from e
    model.to(pick_device()).eval()
    fuse_gelu(model)
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        context_length=context_length(model, tokenizer),
        eos_id=tokenizer.eos_token_id,
    )


def load_tokenizer(path: Path, name: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer saved in `path`, prepared for chat text (tokenizing.py)."""
    from transformers import AutoTokenizer

    name = name or str(path)
    check_directory(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(M.t("model_load_failed", spec=name, reason=_first_line(e))) from e
    if tokenizer is None or isinstance(tokenizer, bool):
        raise UserError(M.t("tokenizer_missing", spec=name))
    return prepare_tokenizer(tokenizer, name)


def load_trainable(source: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model to train further (a directory, or a spec `locate` resolves): a full
    model, or a base with its LoRA adapter left trainable (not merged)."""
    path = locate(source)
    tokenizer = load_tokenizer(path, source)
    try:
        model = _model_from(path, merge=False)
    except (OSError, ValueError) as e:
        raise UserError(M.t("model_load_failed", spec=source, reason=_first_line(e))) from e
    return model.to(pick_device()), tokenizer


def lora_base(path: Path) -> Path:
    """The directory of the base a LoRA version's adapter names (by spec: a hub id, a
    directory), resolved like any base."""
    from peft import PeftConfig

    return locate(PeftConfig.from_pretrained(str(path)).base_model_name_or_path)


def _model_from(path: Path, *, merge: bool) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    if not (path / ADAPTER_CONFIG).is_file():
        return AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, dtype=torch.float32
        )
    from peft import PeftModel

    base_dir = lora_base(path)
    base = AutoModelForCausalLM.from_pretrained(
        str(base_dir), local_files_only=True, dtype=torch.float32
    )
    if merge:
        # Evaluation and one-off loads: fold the adapter into the weights, so a forward
        # pass costs what the base costs. (Serving keeps adapters apart: generation/lora.py.)
        with warnings.catch_warnings():
            # peft >= 0.21 warns when a merge leaves the embeddings untied, comparing
            # storage pointers; our adapters never touch the embeddings (peft's GPT-2
            # targets are the attention projections), so there is nothing to tell anyone.
            warnings.filterwarnings("ignore", "Input and output embeddings are no longer tied")
            return PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    model = PeftModel.from_pretrained(base, str(path), is_trainable=True)
    # peft reads the base's config again when saving; point it at the directory found
    # here, or it would look the hub id up on the network. (The saved version names
    # its base by spec again: bot/training/version_files.py write_version.)
    for config in model.peft_config.values():
        config.base_model_name_or_path = str(base_dir)
    return model


def fuse_gelu(model: PreTrainedModel) -> None:
    """GPT-2's "gelu_new" is the tanh approximation of GELU written out in Python ops;
    torch's built-in GELU(approximate="tanh") computes the same function in one fused
    kernel. Swapped at load for serving (about a tenth of CPU decode time)."""
    import torch
    from transformers.activations import NewGELUActivation

    for module in model.modules():
        for name, child in list(module.named_children()):
            if isinstance(child, NewGELUActivation):
                setattr(module, name, torch.nn.GELU(approximate="tanh"))


def context_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    config = model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else 1024


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
